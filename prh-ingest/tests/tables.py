"""A source's table as the loader makes it (text columns and `_load_id`) and its rows staged
for a merge the way the loader stages them: COPY on PostgreSQL, executemany on SQLite."""

# ruff: noqa: S608 (the SQL names the tests' own tables)

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from prh_ingest.load.merge import create_staging

Row = Sequence[str | None]


def create_table(connection: sa.Connection, table: str, columns: Sequence[str]) -> None:
    values = ", ".join(f"{column} TEXT" for column in columns)
    connection.exec_driver_sql(f"CREATE TABLE {table} ({values}, _load_id INTEGER NOT NULL)")


def stage(
    connection: sa.Connection,
    table: str,
    columns: Sequence[str],
    rows: Sequence[Row],
    first_row: int = 2,
) -> str:
    """The rows in a new staging table, numbered from `first_row` (the header is row 1)."""
    staging = create_staging(connection, table, columns, first_row)
    listed = ", ".join(columns)
    cursor = connection.connection.cursor()
    if connection.dialect.name == "postgresql":
        with cursor.copy(f"COPY {staging} ({listed}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([value or None for value in row])
    else:
        marks = ", ".join(["nullif(?, '')"] * len(columns))
        cursor.executemany(f"INSERT INTO {staging} ({listed}) VALUES ({marks})", rows)
    return staging


def select_all(connection: sa.Connection, sql: str) -> list[tuple]:
    return [tuple(row) for row in connection.exec_driver_sql(sql)]
