"""The engine's fixtures: both databases (pg.py)."""

from pg import database, engine_postgres_server  # noqa: F401 (fixtures)
