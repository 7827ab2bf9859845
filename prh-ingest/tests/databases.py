"""Both databases for the engine's SQL: `database` is a SQLAlchemy engine on a new SQLite
file, or on a new database of the session's PostgreSQL (pg.py), so one test runs on each."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from pg import PostgresServer


def explicit_begin(dbapi_connection: object, _record: object) -> None:
    """As the loader's SQLite engine: the driver never begins on its own, so DDL is part of
    the transaction and a rollback undoes it too."""
    dbapi_connection.isolation_level = None  # type: ignore[attr-defined]


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
        sa.event.listen(engine, "connect", explicit_begin)
        sa.event.listen(engine, "begin", lambda connection: connection.exec_driver_sql("BEGIN"))
    else:
        server: PostgresServer = request.getfixturevalue("pg_server")
        engine = sa.create_engine(server.url(server.create_database("engine")))
    try:
        yield engine
    finally:
        engine.dispose()
