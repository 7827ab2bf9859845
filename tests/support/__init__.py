"""Test helpers shared by the whole suite (fixtures, baking, live services)."""
