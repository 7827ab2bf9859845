"""The engine's shared fixtures. `sink` runs a loader test on SQLite and on a fresh schema of
the session's PostgreSQL (postgres.py); `database` and `pg_conninfo` give the SQL modules
a new database of the repo's test PostgreSQL (pg.py, databases.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from databases import database  # noqa: F401 (fixture)
from loading import Sink, postgres_sink
from pg import pg_conninfo, pg_server  # noqa: F401 (fixtures)
from postgres import PostgresServer, running_postgres


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def sink(request: pytest.FixtureRequest, tmp_path: Path) -> Sink:
    if request.param == "sqlite":
        database = tmp_path / "sink" / "warehouse.db"

        def query_sqlite(sql: str) -> list[tuple]:
            with sqlite3.connect(database) as connection:
                return connection.execute(sql).fetchall()

        return Sink(f"sqlite:///{database}", query_sqlite)
    return postgres_sink(request.getfixturevalue("postgres_server"))
