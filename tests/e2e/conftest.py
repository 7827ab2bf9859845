"""Fixtures of the end-to-end tests (the live server and S3 come from tests/conftest.py)."""

from support.site import site  # noqa: F401 (fixture)
