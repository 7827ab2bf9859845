"""Both databases for the engine's in-process tests: `database` is a SQLAlchemy engine on a
new SQLite file, or on a new database of one PostgreSQL per session (the repo's
tests/support/services.py starts it on 127.0.0.1 on a free port and stops it at the end)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

REPO_TESTS = Path(__file__).resolve().parents[2] / "tests"
if str(REPO_TESTS) not in sys.path:
    sys.path.append(str(REPO_TESTS))

from support.services import PostgresServer, running_postgres  # noqa: E402


def explicit_begin(dbapi_connection: object, _record: object) -> None:
    """As the loader's SQLite engine: the driver never begins on its own, so DDL is part of
    the transaction and a rollback undoes it too."""
    dbapi_connection.isolation_level = None  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def engine_postgres_server() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
        sa.event.listen(engine, "connect", explicit_begin)
        sa.event.listen(engine, "begin", lambda connection: connection.exec_driver_sql("BEGIN"))
    else:
        server: PostgresServer = request.getfixturevalue("engine_postgres_server")
        engine = sa.create_engine(server.url(server.create_database("engine")))
    try:
        yield engine
    finally:
        engine.dispose()
