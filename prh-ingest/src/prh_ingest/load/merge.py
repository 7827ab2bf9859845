"""LOAD_MODE=merge: the table holds one current row per key, and `<table>_history` every row a
merge replaced.

On PostgreSQL a delimited file's rows are COPYed straight into the table as load N, as an
append's are; then merge_copied() checks their keys in one pass (check_copied_keys) and, when
they are sound, moves the earlier rows of those keys to the history in one statement. An
empty or repeated key rolls that back to the staging path, which names the rows, or applies
DUPLICATE_KEYS=last. Writing the rows once, where the staging path writes them twice, is
most of a merge's time (benchmarks/merge.py). SQLite, HL7 and FHIR always stage.

On the staging path a load's rows go first into a staging table (create_staging: the file's
columns plus `_row_number`, the row's number in the file), through COPY on PostgreSQL or
executemany on SQLite. Then merge(), in the load's transaction:

1. checks the keys: an empty key value, or a key repeated within the file, refuses the load
   (BadKeys, naming the key columns and row numbers, never a value); with
   DUPLICATE_KEYS=last the later row of a repeated key wins instead;
2. moves the table's rows whose keys the file carries into the history table, each with
   the load that brought it (`_load_id`) and the one that replaced it (`_replaced_by_load_id`);
3. inserts the staged rows.

All of it is set-based: a few statements whatever the file's size, never row by row. The
staging table gets a unique index on the key (building it is how a repeated key is found);
the table gets none: a B-tree there would make every merge's insert, and an append's COPY,
two to three times slower, and the join with the staged rows hashes them instead.

The history table has the table's columns, `_load_id` and `_replaced_by_load_id`. A column
NEW_COLUMNS=add gives the table is added to the history too; rows replaced before it existed
have it NULL, as they had it in the table. What the table said after load N is AS_OF:
the current rows loaded by N, and the history rows loaded by N that a later load replaced.
"""

# ruff: noqa: S608 (SQL names only tables and columns identifier() checked)

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from prh_ingest import naming
from prh_ingest.load import rejects
from prh_ingest.load.rejects import BadRows, identifier

LOAD_ID = "_load_id"
REPLACED_BY = "_replaced_by_load_id"
ROW_NUMBER = "_row_number"  # the staging table's: a row's number in the file
DUPLICATE_KEYS = ("refuse", "last")  # DUPLICATE_KEYS: the default first
SHOWN_ROWS = 10  # row numbers an error names at most

# What the table said after load N (:load_id): {columns} are the table's, comma-separated.
AS_OF = (
    "SELECT {columns}, _load_id FROM {table} WHERE _load_id <= :load_id\n"
    "UNION ALL\n"
    "SELECT {columns}, _load_id FROM {history} "
    "WHERE _load_id <= :load_id AND _replaced_by_load_id > :load_id"
)


class BadKeys(BadRows):
    """Empty or repeated key values in a file (exit 65): row numbers only, never a value."""


@dataclass
class Merged:
    """What a merge did."""

    rows: int  # rows the file put in the table
    replaced: int  # of the table's rows, those the file's replaced (now in the history)
    dropped: int = 0  # DUPLICATE_KEYS=last: earlier rows of a repeated key, not loaded
    superseded_rejects: int = 0  # earlier loads' open rejects of keys this load brought

    @property
    def new_keys(self) -> int:
        return self.rows - self.replaced


# --- Settings --------------------------------------------------------------------------------


def parse_key(value: str | None) -> list[str]:
    """KEY: header names, comma-separated, as the file spells them."""
    names = [name.strip() for name in (value or "").split(",")]
    if not any(names):
        raise BadRows("KEY is not set: LOAD_MODE=merge needs the key's header names")
    if not all(names) or len(set(names)) < len(names):
        raise BadRows(f"KEY={value}: header names, comma-separated, each once")
    return names


def parse_duplicate_keys(value: str | None) -> str:
    """DUPLICATE_KEYS: `refuse` (unset) or `last`."""
    choice = (value or DUPLICATE_KEYS[0]).strip().lower()
    if choice not in DUPLICATE_KEYS:
        raise BadRows(f"DUPLICATE_KEYS={value}: one of {', '.join(DUPLICATE_KEYS)}")
    return choice


def key_columns(key: Sequence[str], header: Sequence[str], columns: Sequence[str]) -> list[str]:
    """The table's columns of the key's header names: `header` is the file's header cells as
    spelled and `columns` the column each became. A name may also be the column's own."""
    spelled = {title.strip(): column for title, column in zip(header, columns, strict=True)}
    found = [spelled.get(name) or (name if name in columns else None) for name in key]
    missing = [name for name, column in zip(key, found, strict=True) if column is None]
    if missing:
        raise BadRows(f"KEY names {', '.join(missing)}, not in the file's header")
    return [column for column in found if column is not None]


# --- Staging ---------------------------------------------------------------------------------


def staging_name(table: str) -> str:
    return f"{identifier(table)}_staging"


def create_staging(
    connection: sa.Connection,
    table: str,
    columns: Sequence[str],
    first_row: int = 1,
    types: Mapping[str, str] | None = None,
) -> str:
    """A temporary table for the file's rows: its columns (text, or the SQL type *types*
    gives one, as the table has it) and `_row_number`, which numbers the rows as they are
    inserted from `first_row` on (or takes the number given). PostgreSQL drops it at commit.
    Returns its name: COPY or INSERT into it the file's columns."""
    name = staging_name(table)
    kinds = types or {}
    values = ", ".join(f"{identifier(column)} {kinds.get(column, 'TEXT')}" for column in columns)
    postgresql = connection.dialect.name == "postgresql"
    # An earlier load's on this connection (SQLite keeps it); never a table of the same name.
    connection.exec_driver_sql(f"DROP TABLE IF EXISTS {'pg_temp' if postgresql else 'temp'}.{name}")
    if postgresql:
        tune_postgresql(connection)
        numbered = f"bigint GENERATED BY DEFAULT AS IDENTITY (START WITH {int(first_row)})"
        connection.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {name} ({values}, {ROW_NUMBER} {numbered}) ON COMMIT DROP"
        )
    else:
        connection.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {name} "
            f"({ROW_NUMBER} INTEGER PRIMARY KEY AUTOINCREMENT, {values})"
        )
        connection.exec_driver_sql(
            "INSERT INTO temp.sqlite_sequence (name, seq) VALUES (?, ?)", (name, int(first_row) - 1)
        )
    return name


# PostgreSQL, for the load's transaction only: room to hash a million keys in memory (the
# default 4 MB sorts them on disk), and the staging table's pages in memory (temp tables
# have their own buffers, 8 MB by default; settable only before a session's first one).
WORK_MEM = "256MB"
TEMP_BUFFERS = "512MB"


def tune_postgresql(connection: sa.Connection) -> None:
    connection.exec_driver_sql(f"SET LOCAL work_mem = '{WORK_MEM}'")
    try:  # a session that used another size of temp buffers keeps it
        with connection.begin_nested():  # SET LOCAL outlives the savepoint's release
            connection.exec_driver_sql(f"SET LOCAL temp_buffers = '{TEMP_BUFFERS}'")
    except sa.exc.DBAPIError:
        pass


def staged_columns(connection: sa.Connection, staging: str) -> list[str]:
    result = connection.exec_driver_sql(f"SELECT * FROM {identifier(staging)} WHERE 1 = 0")
    return [name for name in result.keys() if name != ROW_NUMBER]


# --- Checking the keys -----------------------------------------------------------------------


def rows_named(numbers: Sequence[int], total: int) -> str:
    shown = ", ".join(str(number) for number in numbers[:SHOWN_ROWS])
    more = f" and {total - SHOWN_ROWS} more" if total > SHOWN_ROWS else ""
    return f"row{'s' if total > 1 else ''} {shown}{more}"


def check_empty_keys(connection: sa.Connection, staging: str, keys: Sequence[str]) -> None:
    empty = " OR ".join(f"{k} IS NULL OR trim({k}) = ''" for k in map(identifier, keys))
    found = connection.exec_driver_sql(
        f"SELECT {ROW_NUMBER}, count(*) OVER () FROM {staging} WHERE {empty} "
        f"ORDER BY {ROW_NUMBER} LIMIT {SHOWN_ROWS}"
    ).all()
    if found:
        raise BadKeys(
            f"key ({', '.join(keys)}) is empty in {rows_named([r[0] for r in found], found[0][1])}"
        )


def repeated_keys(connection: sa.Connection, staging: str, keys: Sequence[str]) -> bool:
    """Whether a key repeats within the file: a unique index on the staging table's keys
    cannot be built then (sorting the keys once is the cheapest way to tell)."""
    unique = f"CREATE UNIQUE INDEX ix_{staging}_key ON {staging} ({', '.join(keys)})"
    try:
        with connection.begin_nested():
            connection.exec_driver_sql(unique)
        return False
    except sa.exc.IntegrityError:
        return True


def refuse_repeated_keys(
    connection: sa.Connection,
    staging: str,
    keys: Sequence[str],
    rows_are: str = "rows",
    last_hint: bool = True,
) -> None:
    """BadKeys naming the rows of the first repeated keys, in the file's order (*rows_are*:
    what the numbers count, `lines` of FHIR NDJSON, `messages` of HL7; *last_hint*: say that
    DUPLICATE_KEYS=last would take the later one)."""
    by_key = ", ".join(map(identifier, keys))
    repeated = connection.exec_driver_sql(
        f"SELECT {ROW_NUMBER}, first, rows, count(*) OVER () FROM ("
        f"SELECT {ROW_NUMBER}, min({ROW_NUMBER}) OVER (PARTITION BY {by_key}) AS first, "
        f"count(*) OVER (PARTITION BY {by_key}) AS rows FROM {staging}) AS numbered "
        f"WHERE rows > 1 ORDER BY first, {ROW_NUMBER} LIMIT 200"
    ).all()
    groups: dict[int, list[int]] = {}
    for number, first, _rows, _total in repeated:
        groups.setdefault(first, []).append(number)
    shown = "; ".join(" and ".join(map(str, rows)) for rows in list(groups.values())[:5])
    hint = " (DUPLICATE_KEYS=last lets the later row win)" if last_hint else ""
    raise BadKeys(
        f"key ({', '.join(keys)}) repeats within the file ({repeated[0][3]} {rows_are}): "
        f"{rows_are} {shown}{'; ...' if len(groups) > 5 else ''}{hint}"
    )


def drop_earlier_duplicates(connection: sa.Connection, staging: str, keys: Sequence[str]) -> int:
    """DUPLICATE_KEYS=last: each key's last row stays."""
    by_key = ", ".join(map(identifier, keys))
    return connection.exec_driver_sql(
        f"DELETE FROM {staging} WHERE {ROW_NUMBER} NOT IN ("
        f"SELECT max({ROW_NUMBER}) FROM {staging} GROUP BY {by_key})"
    ).rowcount


# --- The history table -----------------------------------------------------------------------


def table_columns(connection: sa.Connection, table: str) -> list[str]:
    return [column["name"] for column in sa.inspect(connection).get_columns(identifier(table))]


def column_types(connection: sa.Connection, table: str) -> dict[str, str]:
    """Each column's SQL type as the database spells it (TEXT; JSONB for a FHIR resource)."""
    return {
        column["name"]: column["type"].compile(dialect=connection.dialect)
        for column in sa.inspect(connection).get_columns(identifier(table))
    }


def ensure_history(connection: sa.Connection, table: str) -> list[str]:
    """The history table with every column the table has, of the same type (added as the
    table gains them). Returns the table's data columns."""
    history = naming.history_table(identifier(table))
    types = column_types(connection, table)
    columns = [name for name in types if name != LOAD_ID]
    inspector = sa.inspect(connection)
    if not inspector.has_table(history):
        values = ", ".join(f"{column} {types[column]}" for column in columns)
        connection.exec_driver_sql(
            f"CREATE TABLE {history} ({values}, {LOAD_ID} INTEGER NOT NULL, "
            f"{REPLACED_BY} INTEGER NOT NULL)"
        )
        # As of a load: rows replaced after it. A merge's replaced rows are contiguous.
        using = " USING brin" if connection.dialect.name == "postgresql" else ""
        connection.exec_driver_sql(
            f"CREATE INDEX ix_{history}_replaced ON {history}{using} ({REPLACED_BY})"
        )
        return columns
    have = {column["name"] for column in inspector.get_columns(history)}
    for column in columns:
        if column not in have:
            connection.exec_driver_sql(f"ALTER TABLE {history} ADD COLUMN {column} {types[column]}")
    return columns


# --- The merge -------------------------------------------------------------------------------


def merge(
    connection: sa.Connection,
    table: str,
    staging: str,
    keys: Sequence[str],
    load_id: int,
    duplicates: str = "refuse",
    rows_are: str = "rows",
    last_hint: bool = True,
) -> Merged:
    """Merge the staged rows into `table` by `keys` (its column names), as load `load_id`, in
    the connection's open transaction. The table exists with every staged column (the loader's
    drift step adds new ones first). Raises BadKeys for empty or (unless `last`) repeated keys."""
    for name in (table, staging, *keys):
        identifier(name)
    columns = staged_columns(connection, staging)
    if missing := [key for key in keys if key not in columns]:
        raise BadKeys(f"key column(s) {', '.join(missing)} not in the file's columns")
    check_empty_keys(connection, staging, keys)
    dropped = 0
    if repeated_keys(connection, staging, keys):
        if duplicates != "last":
            refuse_repeated_keys(connection, staging, keys, rows_are, last_hint)
        dropped = drop_earlier_duplicates(connection, staging, keys)
    ensure_history(connection, table)
    replaced = move_to_history(connection, table, staging, keys, load_id)
    listed = ", ".join(columns)
    loaded = connection.execute(
        sa.text(
            f"INSERT INTO {table} ({listed}, {LOAD_ID}) SELECT {listed}, :load_id FROM {staging}"
        ),
        {"load_id": load_id},
    ).rowcount
    superseded = rejects.supersede_keys(connection, table, staging, keys, load_id)
    return Merged(loaded, replaced, dropped, superseded)


def move_to_history(
    connection: sa.Connection,
    table: str,
    staging: str,
    keys: Sequence[str],
    load_id: int,
    earlier_only: bool = False,
) -> int:
    """Delete the table's rows of the staged keys, keeping each in the history table.
    *earlier_only*: not the rows load *load_id* itself wrote (an HL7 message's segments,
    which go straight to their tables)."""
    earlier = f" AND t.{LOAD_ID} <> :load_id" if earlier_only else ""
    if connection.dialect.name == "postgresql":
        return delete_into_history(connection, table, f"{staging} AS s", keys, load_id, earlier)
    history = naming.history_table(table)
    kept = kept_columns(connection, table)
    by_key = ", ".join(keys)
    staged = f"({by_key}) IN (SELECT {by_key} FROM {staging}){earlier.replace('t.', '')}"
    copied = connection.execute(
        sa.text(
            f"INSERT INTO {history} ({kept}, {REPLACED_BY}) "
            f"SELECT {kept}, :load_id FROM {table} WHERE {staged}"
        ),
        {"load_id": load_id},
    ).rowcount
    deleted = connection.execute(
        sa.text(f"DELETE FROM {table} WHERE {staged}"), {"load_id": load_id}
    ).rowcount
    assert deleted == copied, "the rows kept in the history are the rows deleted"
    return copied


def kept_columns(connection: sa.Connection, table: str) -> str:
    """The columns a history row takes from the table: its data columns, then `_load_id`."""
    return ", ".join([*(c for c in table_columns(connection, table) if c != LOAD_ID), LOAD_ID])


def delete_into_history(
    connection: sa.Connection, table: str, rows: str, keys: Sequence[str], load_id: int, where: str
) -> int:
    """PostgreSQL: delete the table's rows (`t`) whose keys the rows *rows* (`s`, a FROM item)
    carry, and *where*, keeping each in the history; one statement, one pass over the table."""
    history = naming.history_table(table)
    kept = kept_columns(connection, table)
    same_key = " AND ".join(f"t.{key} = s.{key}" for key in keys)
    moved = (
        f"WITH gone AS (DELETE FROM {table} AS t USING {rows} "
        f"WHERE {same_key}{where} RETURNING t.*) "
        f"INSERT INTO {history} ({kept}, {REPLACED_BY}) SELECT {kept}, :load_id FROM gone"
    )
    return connection.execute(sa.text(moved), {"load_id": load_id}).rowcount


# --- Merging rows COPYed straight into the table (PostgreSQL) --------------------------------


def check_copied_keys(
    connection: sa.Connection, table: str, keys: Sequence[str], load_id: int
) -> bool:
    """Whether the keys of load *load_id*'s rows are sound: none empty, none twice. One
    grouping pass over the load's rows; the groups' test runs once per key, not per row (a
    key's first character is looked at before trim() is paid)."""
    for name in (table, *keys):
        identifier(name)
    empty = " OR ".join(f"{k} IS NULL OR ascii({k}) <= 32 AND trim({k}) = ''" for k in keys)
    unsound = connection.exec_driver_sql(
        f"SELECT EXISTS (SELECT FROM {table} WHERE {LOAD_ID} = %(load_id)s "
        f"GROUP BY {', '.join(keys)} HAVING count(*) > 1 OR {empty})",
        {"load_id": load_id},
    ).scalar()
    return not unsound


def merge_copied(
    connection: sa.Connection, table: str, keys: Sequence[str], load_id: int, rows: int
) -> Merged | None:
    """PostgreSQL: merge the *rows* rows load *load_id* COPYed into the table, in the load's
    transaction, when their keys are sound: the earlier rows of their keys go to the history.
    None when a key is empty or repeated: roll the COPY back and take the staging path, which
    names the rows (or, with DUPLICATE_KEYS=last, keeps each key's last)."""
    if not check_copied_keys(connection, table, keys, load_id):
        return None
    ensure_history(connection, table)
    this_load = f"(SELECT * FROM {table} WHERE {LOAD_ID} = :load_id) AS s"
    replaced = delete_into_history(
        connection, table, this_load, keys, load_id, f" AND t.{LOAD_ID} <> :load_id"
    )
    superseded = rejects.supersede_keys(connection, table, table, keys, load_id, copied=True)
    return Merged(rows, replaced, 0, superseded)


# --- As of a load ----------------------------------------------------------------------------


def as_of_query(connection: sa.Connection, table: str) -> sa.TextClause:
    """AS_OF for `table`'s columns now (bind :load_id)."""
    columns = [name for name in table_columns(connection, table) if name != LOAD_ID]
    return sa.text(
        AS_OF.format(columns=", ".join(columns), table=table, history=naming.history_table(table))
    )


def as_of(connection: sa.Connection, table: str, load_id: int) -> list[sa.Row]:
    """The rows the table held right after load `load_id`, each with the `_load_id` that
    brought it."""
    return list(connection.execute(as_of_query(connection, table), {"load_id": load_id}))
