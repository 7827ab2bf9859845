"""Fixtures of the booted-systemd tests (the booted system itself comes from tests/conftest.py)."""

from support.booted_worker import site_root, worker_site  # noqa: F401 (fixtures)
