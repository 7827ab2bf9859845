"""The package's fixtures: one PostgreSQL for the session, and `sink`, which runs a test on
SQLite and on a fresh PostgreSQL database."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from loading import Sink, postgres_sink
from pg import PostgresServer, running_postgres


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
