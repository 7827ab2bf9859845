"""PostgreSQL for the engine's tests: one throwaway server per session (the repo's
tests/support/services.py starts it on 127.0.0.1 on a free port and removes it at the end, also
after a failure), and a fresh database per test. conftest.py imports these fixtures."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_TESTS = Path(__file__).resolve().parents[2] / "tests"
if str(REPO_TESTS) not in sys.path:  # the repo's test helpers import as `support.*`
    sys.path.insert(0, str(REPO_TESTS))

from support.services import PostgresServer, running_postgres  # noqa: E402


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


@pytest.fixture
def pg_conninfo(pg_server: PostgresServer) -> str:
    """libpq connection string of a new, empty database."""
    return pg_server.conninfo(pg_server.create_database("engine"))
