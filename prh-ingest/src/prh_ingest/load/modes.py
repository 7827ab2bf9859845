"""What a load does to the rows already there (`<PREFIX>_<SOURCE>_LOAD_MODE`, see
prh_ingest.settings.LOAD_MODES): `append` keys a load by the file's SHA-256 (the same bytes
again add nothing), `file` by its path (a re-sent file replaces its earlier load),
`snapshot` replaces the table, `merge` replaces the rows of the keys a file carries (KEY;
the replaced ones kept in `<table>_history`, see merge), the same bytes again adding nothing
as in `append`; two loads of one file at once leave one copy (they take
turns). A load is one transaction, so a failure half-way leaves the table as it was.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from prh_ingest import naming
from prh_ingest.load import merge, rejects
from prh_ingest.load.checks import (
    HISTORY,
    RowCheck,
    RowCheckSettings,
    ShortLoad,
    check_rows,
    default_row_check,
)
from prh_ingest.load.copy_feed import copy_into_postgresql
from prh_ingest.load.drift import LOAD_ID_COLUMN
from prh_ingest.load.readers import (
    READ_BUFFER_BYTES,
    ChunkStream,
    Row,
    Sha256,
    Span,
    Table,
    checked,
    column_names,
    csv_body,
    read_table,
    text_table,
    whole_lines,
)
from prh_ingest.load.rejects import BadRows, Quarantine
from prh_ingest.load.sinks import (
    LOAD_ID_SETTING,
    index_load_ids,
    insert_into_sqlite,
    lock_key,
    sink_tables,
)
from prh_ingest.settings import DEFAULT_LOAD_MODE, BadInput, Names, Settings

COLUMN_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# The team's code (the project's transform.py): (source, columns, rows) -> (columns, rows).
Transform = Callable[[str, list[str], Iterable[Row]], tuple[list[str], Iterable[Row]]]


@dataclass
class Loaded:
    """What a load did: the loader prints it, and the flow shows it as an artifact."""

    mode: str
    rows: int
    sha256: str
    replaced: int = 0  # earlier loads whose rows this one replaced
    added: list[str] = field(default_factory=list)  # NEW_COLUMNS=add: columns added to the table
    same_as: int | None = None  # append: the earlier load of the same bytes (nothing added)
    check: RowCheck | None = None  # the row count against the source's history (checks)
    rejected: int | None = None  # BAD_ROWS=quarantine: the rows set aside in <table>_rejects
    rejected_rows: list[int] = field(default_factory=list)  # their row numbers


def load(
    source: Path, sha256: Sha256, engine: sa.Engine, settings: Settings, transform: Transform
) -> Loaded:
    """Load `source` into the table in one transaction, as its load mode says."""
    try:
        table, quarantine = read_table(source, settings), None
        if settings.quarantine and table.csv is not None:  # delimited text
            table, quarantine = quarantined(source, table, settings)
        table = transformed(table, settings.names, transform)
        return load_rows(source, sha256.result(), engine, table, settings, quarantine)
    except (BadInput, BadRows) as error:  # BadRows: bad keys, counts and row numbers only
        raise BadInput(f"{settings.names.source_setting}={source}: {error}") from None


def transformed(table: Table, names: Names, transform: Transform) -> Table:
    """The table after transform.py (the team's code). When it hands the rows back as they
    came, the table is loaded as read (a plain CSV keeps its fast path)."""
    rows = checked(table, names).rows  # transform.py gets checked rows, as for any other file
    columns, new_rows = transform(names.source, list(table.columns), rows)
    if new_rows is rows and columns == table.columns:
        return table
    for name in columns:
        if not COLUMN_NAME.fullmatch(name) or columns.count(name) > 1 or name == LOAD_ID_COLUMN:
            raise BadInput(
                f"transform.py returned column {name!r}: lowercase, _ and digits, unique"
            )
    return Table(list(columns), table.first_row, fitted(new_rows, len(columns)))


def fitted(rows: Iterable[Row], width: int) -> Iterator[Row]:
    for row in rows:
        if len(row) != width:
            raise BadInput(f"transform.py returned a row of {len(row)} values for {width} columns")
        yield row


def quarantined(source: Path, table: Table, settings: Settings) -> tuple[Table, Quarantine]:
    """BAD_ROWS=quarantine: the table of the file's readable records, whose bytes go on as a
    clean file's do (to COPY's own parse on PostgreSQL), and the Quarantine that sets the
    others aside on the way."""
    layout = table.csv
    assert layout is not None  # noqa: S101 (delimited text only)
    keys = merge_keys(table, settings) if settings.load_mode == "merge" else []
    positions = tuple(layout.first + table.columns.index(key) for key in keys)
    reader = rejects.RowReader(
        layout.encoding, layout.delimiter, layout.quote, layout.width, positions
    )
    limit = rejects.parse_max_bad_rows(settings.max_bad_rows)
    quarantine = Quarantine(reader, limit, table.first_row)

    def chunks() -> Iterator[bytes]:
        with Span(source, layout.offset, layout.end) as span:
            while chunk := span.read(READ_BUFFER_BYTES):
                yield chunk

    def readable() -> io.RawIOBase:  # each read of the data rows sorts them afresh
        return ChunkStream(quarantine.readable(whole_lines(chunks())))

    filtered = dataclasses.replace(layout, data=readable)
    header_setting = settings.names.header_row_setting
    return text_table(source, filtered, table.columns, table.first_row, header_setting), quarantine


def load_rows(
    source: Path,
    sha256: str,
    engine: sa.Engine,
    table: Table,
    settings: Settings,
    quarantine: Quarantine | None = None,
) -> Loaded:
    with engine.begin() as connection:  # SQLite: BEGIN IMMEDIATE, loads take turns
        postgresql = connection.dialect.name == "postgresql"
        rows, loads, added = sink_tables(connection, table.columns, settings)
        mode = settings.load_mode or default_load_mode(connection, loads)
        index_load_ids(connection, settings.names, mode)
        if postgresql:  # loads of the same file take turns; other files load side by side
            key = {"append": sha256, "merge": "", "file": str(source), "snapshot": ""}[mode]
            turn = lock_key(f"{settings.names.table}\n{key}")
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(turn)))
        current = loads.c.replaced_by.is_(None)
        if mode in ("append", "merge"):
            same = sa.select(loads.c.load_id).where(current, loads.c.source_sha256 == sha256)
            if (same_as := connection.execute(same.limit(1)).scalar()) is not None:
                return Loaded(mode, 0, sha256, same_as=same_as, added=added)
        replaced = (
            []
            if mode in ("append", "merge")
            else connection.execute(
                sa.select(loads.c.load_id).where(
                    current, *([loads.c.source_file == str(source)] if mode == "file" else [])
                )
            )
            .scalars()
            .all()
        )
        load_id = connection.execute(
            loads.insert().values(
                source_file=str(source),
                source_sha256=sha256,
                loaded_at=dt.datetime.now(dt.UTC),
                load_mode=mode,
            )
        ).inserted_primary_key[0]
        if mode == "snapshot":
            connection.execute(rows.delete())
        elif replaced:
            connection.execute(rows.delete().where(rows.c[LOAD_ID_COLUMN].in_(replaced)))
        if replaced:
            mark = loads.update().where(loads.c.load_id.in_(replaced)).values(replaced_by=load_id)
            connection.execute(mark)
        if mode == "merge":
            loaded = merged_rows(connection, source, table, load_id, settings)
        elif postgresql:
            set_load_id = sa.select(sa.func.set_config(LOAD_ID_SETTING, str(load_id), True))
            connection.execute(set_load_id)  # true: for this transaction only
            loaded = copy_into_postgresql(connection, source, table, settings.names)
        else:
            loaded = insert_into_sqlite(connection, source, table, load_id, settings.names)
        if quarantine is not None:  # above MAX_BAD_ROWS: the whole file refused, rolled back
            quarantine.check()
            rejects.record(connection, settings.names.table, load_id, sha256, quarantine.rejects)
        if mode == "file":  # a corrected file of the same path: its earlier rejects are moot
            rejects.supersede_loads(connection, settings.names.table, replaced, load_id)
        check = row_check(connection, loads, load_id, loaded, mode, settings)
        if check.verdict == "short-refuse":
            raise ShortLoad(check)  # leaving the block rolls the whole load back
        connection.execute(
            loads.update().where(loads.c.load_id == load_id).values(row_count=loaded)
        )
    set_aside = quarantine.rejects if quarantine is not None else []
    return Loaded(
        mode,
        loaded,
        sha256,
        replaced=len(replaced),
        added=added,
        check=check,
        rejected=None if quarantine is None else len(set_aside),
        rejected_rows=[reject.row_number for reject in set_aside],
    )


def merged_rows(
    connection: sa.Connection, source: Path, table: Table, load_id: int, settings: Settings
) -> int:
    """LOAD_MODE=merge: the file's rows into a staging table (COPY on PostgreSQL), then one
    set-based merge by KEY; returns the rows the file put in the table."""
    names = settings.names
    keys = merge_keys(table, settings)
    duplicates = merge.parse_duplicate_keys(settings.duplicate_keys)
    postgresql = connection.dialect.name == "postgresql"
    if postgresql and table.plain_csv:  # its rows can be read again if the keys need naming
        if merged := copied_and_merged(connection, source, table, load_id, keys, names):
            return merged.rows
        table = dataclasses.replace(table, rows=csv_body(source, table.csv))
    staging = merge.create_staging(connection, names.table, table.columns, table.first_row)
    if postgresql:
        copy_into_postgresql(connection, source, table, names, into=staging)
    else:
        insert_into_sqlite(connection, source, table, None, names, into=staging)
    return merge.merge(connection, names.table, staging, keys, load_id, duplicates).rows


class KeysToName(Exception):
    """merge_copied found an empty or repeated key: undo the COPY, take the staging path."""


def copied_and_merged(
    connection: sa.Connection,
    source: Path,
    table: Table,
    load_id: int,
    keys: list[str],
    names: Names,
) -> merge.Merged | None:
    """PostgreSQL: the file COPYed straight into the table as load *load_id*, then merged
    (merge.merge_copied); None, with nothing of it left, when a key is empty or repeated."""
    try:
        with connection.begin_nested():
            merge.tune_postgresql(connection)
            connection.execute(sa.select(sa.func.set_config(LOAD_ID_SETTING, str(load_id), True)))
            rows = copy_into_postgresql(connection, source, table, names)
            merged = merge.merge_copied(connection, names.table, keys, load_id, rows)
            if merged is None:
                raise KeysToName
            return merged
    except KeysToName:
        return None


def merge_keys(table: Table, settings: Settings) -> list[str]:
    """KEY's header names as the table's columns (the header's became them the same way)."""
    try:
        key = column_names(merge.parse_key(settings.key), 0, 1)
    except (BadInput, BadRows):
        key_name = naming.key_setting(settings.names.project, settings.names.source)
        raise BadInput(f"{key_name}={settings.key}: header names, comma-separated") from None
    return merge.key_columns(key, table.columns, table.columns)


def row_check(
    connection: sa.Connection,
    loads: sa.Table,
    load_id: int,
    rows: int,
    mode: str,
    settings: Settings,
) -> RowCheck:
    """*rows* against the row counts of the source's earlier accepted loads (a refused load
    rolls back, so every load recorded with a count was accepted), newest first. With the
    check off the history is not read: the load does what it did before the checks."""
    check = RowCheckSettings(settings.row_check or default_row_check(mode), settings.min_rows_ratio)
    if check.check == "off":
        return check_rows([], rows, check)
    earlier = (
        sa.select(loads.c.row_count)
        .where(loads.c.load_id != load_id, loads.c.row_count.is_not(None))
        .order_by(loads.c.load_id.desc())
        .limit(HISTORY)
    )
    history = list(connection.execute(earlier).scalars())
    return check_rows(history, rows, check, accept_short=settings.accept_short)


def default_load_mode(connection: sa.Connection, loads: sa.Table) -> str:
    """Unset, a table keeps the mode of its first load; a new table's is `append`."""
    first = sa.select(loads.c.load_mode).order_by(loads.c.load_id).limit(1)
    return connection.execute(first).scalar() or DEFAULT_LOAD_MODE
