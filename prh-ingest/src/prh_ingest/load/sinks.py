"""SQLite and PostgreSQL: the rows table and its loads table, created on the first load,
and the SQLite insert (PostgreSQL's is prh_ingest.load.copy_feed).

Each row has the header's columns, as text exactly as in the file (empty cells are NULL),
plus `_load_id`, which points into `<table>_loads`: one row per load with the file's
absolute path, SHA-256, load time, row count, load mode and the later load that replaced its
rows (kept after that too).
"""

from __future__ import annotations

import csv
import hashlib
import sqlite3
from pathlib import Path

import sqlalchemy as sa

from prh_ingest import naming
from prh_ingest.load import drift
from prh_ingest.load.drift import LOAD_ID_COLUMN
from prh_ingest.load.readers import Table, find_bad_row
from prh_ingest.settings import EARLIER_LOAD_MODE, BadInput, Names, Settings

SQLITE_BUSY_SECONDS = 3600  # a second load waits this long for the first (the flow's timeout)
# PostgreSQL: COPY fills _load_id from this transaction-local setting (SET LOCAL), through
# LOAD_ID_FUNCTION, the column's default.
LOAD_ID_SETTING = "prh_ingest.load_id"
LOAD_ID_FUNCTION = "prh_ingest_load_id"
# IMMUTABLE on purpose: PostgreSQL calls an immutable function without arguments once, when
# it plans a statement, and COPY plans its column defaults once, at its start. So a COPY
# reads the setting once, not once per row (current_setting() per row cost about 0.09 s per
# 1M rows, a tenth of the COPY). The setting holds one value for a load's transaction, and a
# load's rows arrive by COPY, planned afresh each time; the loader's INSERTs name _load_id.
# A statement prepared in one transaction and run in a later one would keep the first value:
# an INSERT into these tables must name _load_id (the COMMENT says so to whoever looks).
LOAD_ID_FUNCTION_SQL = f"""CREATE FUNCTION {LOAD_ID_FUNCTION}() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT current_setting('{LOAD_ID_SETTING}')::integer $$"""
LOAD_ID_FUNCTION_GRANT = f"GRANT EXECUTE ON FUNCTION {LOAD_ID_FUNCTION}() TO PUBLIC"
LOAD_ID_FUNCTION_COMMENT = (
    f"COMMENT ON FUNCTION {LOAD_ID_FUNCTION}() IS 'prh-ingest: the _load_id of the rows a load"
    f" COPYs, from the setting {LOAD_ID_SETTING}. Immutable so that a COPY reads it once: use it"
    " only as that default; an INSERT must name _load_id (a prepared one would keep an old id).'"
)


def open_sink(setting: str | None, names: Names) -> sa.Engine:
    if not setting:
        raise BadInput(f"{names.sink_setting} is not set")
    try:
        url = sa.make_url(setting)
    except sa.exc.ArgumentError as error:
        raise BadInput(f"{names.sink_setting} is not a SQLAlchemy URL") from error
    if url.get_backend_name() == "postgresql":
        engine = sa.create_engine(url)
        make_load_id_function(engine)
        return engine
    if url.get_backend_name() != "sqlite":
        raise BadInput(f"{names.sink_setting}: the database must be sqlite or postgresql")
    if url.database in (None, "", ":memory:"):
        raise BadInput(f"{names.sink_setting}: a SQLite sink must be a file (sqlite:///path.db)")
    Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS})

    @sa.event.listens_for(engine, "connect")
    def _wal_and_explicit_begin(dbapi_connection, _record) -> None:  # noqa: ANN001
        dbapi_connection.isolation_level = None  # the driver must not BEGIN on its own
        dbapi_connection.execute("PRAGMA journal_mode=WAL")  # readers never block the load

    @sa.event.listens_for(engine, "begin")
    def _take_the_write_lock(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # a second load waits here

    return engine


def sink_tables(
    connection: sa.Connection, columns: list[str], settings: Settings
) -> tuple[sa.Table, sa.Table, list[str]]:
    """The rows table and its loads table, created on the first load, and the columns added
    to it. A later file must have the same columns; with NEW_COLUMNS=add its new ones are
    added (text; earlier rows NULL there) and the table's columns it lacks load as NULL."""
    names = settings.names
    postgresql = connection.dialect.name == "postgresql"
    if postgresql and not tables_current(sa.inspect(connection), names):
        # Two first loads at once: one creates (or upgrades) the tables, the other waits.
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(lock_key(names.table))))
    existing = sa.inspect(connection)
    metadata = sa.MetaData()
    loads = loads_table(metadata, names)
    new_table = not existing.has_table(names.table)
    rows = sa.Table(
        names.table,
        metadata,
        *(sa.Column(name, sa.Text) for name in columns),
        sa.Column(
            LOAD_ID_COLUMN,
            sa.Integer,
            nullable=False,
            server_default=load_id_default(connection) if new_table else None,
        ),
    )
    if existing.has_table(names.loads_table):
        upgrade_loads(connection, existing, names)
    added = drift.add_new_columns(connection, existing, columns, settings)
    metadata.create_all(connection)  # creates only what is missing
    return rows, loads, added


def make_load_id_function(engine: sa.Engine) -> None:
    """PostgreSQL: LOAD_ID_FUNCTION made in the schema when it lacks it and the role may
    create there, in a short transaction of its own, before the load's (so loads running
    meanwhile wait for this, not for a whole load). Made, a table made before it can switch
    to it (the package's CHANGELOG gives the statement)."""
    with engine.begin() as connection:
        make_load_id_function_in(connection)


def make_load_id_function_in(connection: sa.Connection) -> None:
    """make_load_id_function's work, in *connection*'s transaction (held until it ends)."""
    if connection.execute(LOAD_ID_FUNCTION_MADE).scalar():
        return
    if not connection.execute(MAY_CREATE).scalar():
        return  # someone else's schema: the tables there keep current_setting()
    # Two loads at once: one makes it, the other waits, then finds it.
    connection.execute(sa.select(sa.func.pg_advisory_xact_lock(lock_key(LOAD_ID_FUNCTION))))
    if connection.execute(LOAD_ID_FUNCTION_MADE).scalar():
        return
    try:
        with connection.begin_nested():
            connection.exec_driver_sql(LOAD_ID_FUNCTION_SQL)
            connection.exec_driver_sql(LOAD_ID_FUNCTION_GRANT)
            connection.exec_driver_sql(LOAD_ID_FUNCTION_COMMENT)
    except sa.exc.ProgrammingError as error:  # e.g. USAGE on LANGUAGE sql revoked
        if getattr(error.orig, "sqlstate", None) != INSUFFICIENT_PRIVILEGE:
            raise


def load_id_default(connection: sa.Connection) -> sa.TextClause | None:
    """A new table's `_load_id` default on PostgreSQL (None on SQLite, whose INSERT names
    it): LOAD_ID_FUNCTION where the schema has it (make_load_id_function), else
    `current_setting()`, read for every row."""
    if connection.dialect.name != "postgresql":
        return None
    if connection.execute(LOAD_ID_FUNCTION_MADE).scalar():
        return sa.text(f"{LOAD_ID_FUNCTION}()")
    return sa.text(f"current_setting('{LOAD_ID_SETTING}')::integer")


# pg_proc read as a query (a snapshot per statement): to_regprocedure() would keep the catalog
# as it was before the lock, and miss the function another load made meanwhile.
LOAD_ID_FUNCTION_MADE = sa.text(
    "SELECT EXISTS (SELECT FROM pg_proc JOIN pg_namespace ON pg_namespace.oid = pronamespace"
    " WHERE proname = :name AND pronargs = 0 AND nspname = ANY (current_schemas(true)))"
).bindparams(name=LOAD_ID_FUNCTION)
MAY_CREATE = sa.text("SELECT has_schema_privilege(current_schema(), 'CREATE')")
INSUFFICIENT_PRIVILEGE = "42501"


# The load modes that read rows by `_load_id`: `file` deletes a re-sent file's earlier load,
# `merge` finds the load's own rows and reads the table as of a load. Their tables index it.
# `append` and `snapshot` never do, so their COPY does not keep an index row by row (a BRIN
# costs PostgreSQL 15 about 0.2 s per 1M rows).
MODES_READING_BY_LOAD = ("file", "merge")


def index_load_ids(connection: sa.Connection, names: Names, mode: str) -> None:
    """In a mode that reads by `_load_id`, its index (made once, also for a table that an
    earlier mode made): BRIN on PostgreSQL, where a load's rows are contiguous (a B-tree
    halves COPY's speed), a B-tree on SQLite."""
    if mode not in MODES_READING_BY_LOAD:
        return
    index = naming.load_id_index(names.table)
    # Looked for before CREATE INDEX, which holds a lock on the table against other loads'
    # writes until commit even when the index is there.
    if sa.inspect(connection).has_index(names.table, index):
        return
    postgresql = connection.dialect.name == "postgresql"
    if postgresql:  # two loads making it at once: the second waits here, then finds it
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(lock_key(names.table))))
        if sa.inspect(connection).has_index(names.table, index):
            return
    using = " USING brin" if postgresql else ""
    connection.exec_driver_sql(
        f"CREATE INDEX IF NOT EXISTS {index} ON {names.table}{using} ({LOAD_ID_COLUMN})"
    )


def loads_table(metadata: sa.MetaData, names: Names) -> sa.Table:
    """`<table>_loads`: one row per load (a message format's loads too, load.messages)."""
    return sa.Table(
        names.loads_table,
        metadata,
        sa.Column("load_id", sa.Integer, primary_key=True),
        sa.Column("source_file", sa.Text, nullable=False, index=True),
        sa.Column("source_sha256", sa.String(64), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("row_count", sa.Integer),
        *LOAD_RECORD_COLUMNS(),
    )


def LOAD_RECORD_COLUMNS() -> list[sa.Column]:  # noqa: N802 (fresh columns for each table)
    """The loads table's columns added with LOAD_MODE: the mode, and the later load that
    replaced this one's rows (NULL while they are in the table)."""
    return [sa.Column("load_mode", sa.Text), sa.Column("replaced_by", sa.Integer)]


def tables_current(existing: sa.Inspector, names: Names) -> bool:
    """Both tables there, the loads table with every column this ingest.py records."""
    if not existing.has_table(names.table) or not existing.has_table(names.loads_table):
        return False
    have = {column["name"] for column in existing.get_columns(names.loads_table)}
    return {column.name for column in LOAD_RECORD_COLUMNS()} <= have


def upgrade_loads(connection: sa.Connection, existing: sa.Inspector, names: Names) -> None:
    """A loads table from before LOAD_MODE gets its columns; its loads are recorded as the
    mode they were made in, which stays the table's default (an update changes nothing)."""
    have = {column["name"] for column in existing.get_columns(names.loads_table)}
    for column in LOAD_RECORD_COLUMNS():
        if column.name not in have:
            kind = column.type.compile(connection.dialect)
            connection.exec_driver_sql(
                f"ALTER TABLE {names.loads_table} ADD COLUMN {column.name} {kind}"
            )
            if column.name == "load_mode":
                connection.exec_driver_sql(
                    f"UPDATE {names.loads_table} SET load_mode = '{EARLIER_LOAD_MODE}'"  # noqa: S608
                )


def lock_key(name: str) -> int:
    """A 64-bit advisory lock key for a name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def insert_into_sqlite(
    connection: sa.Connection,
    source: Path,
    table: Table,
    load_id: int | None,
    names: Names,
    into: str = "",
) -> int:
    """The rows straight into executemany; empty cells become NULL in SQL. Into the source's
    table as load *load_id*, or the table *into* (LOAD_MODE=merge's staging, no load id)."""
    values = ", ".join(["nullif(?, '')"] * len(table.columns))
    if load_id is None:
        insert = f"INSERT INTO {into} ({', '.join(table.columns)}) VALUES ({values})"  # noqa: S608
    else:
        columns = ", ".join([*table.columns, LOAD_ID_COLUMN])
        insert = f"INSERT INTO {names.table} ({columns}) VALUES ({values}, {load_id:d})"  # noqa: S608
    cursor = connection.connection.cursor()  # the driver's own, in the same transaction
    try:
        cursor.executemany(insert, table.rows)
    except (sqlite3.ProgrammingError, csv.Error, UnicodeDecodeError) as error:
        raise BadInput(find_bad_row(source, table, error, names)) from None
    return cursor.rowcount
