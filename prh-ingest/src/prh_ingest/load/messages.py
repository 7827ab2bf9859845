"""Message formats: HL7 v2 batch files and FHIR Bulk Data NDJSON, each message or resource
split over tables of its parts (the readers are prh_ingest.formats.hl7 and .fhir).

Which files: `.hl7` is HL7 v2; `.ndjson` and `.ndjson.gz` are FHIR Bulk NDJSON; any name
loads as either with `<PREFIX>_<SOURCE>_FORMAT=hl7` or `fhir-ndjson`.

HL7: `<table>` gets one row per message (message_control_id, message_type, message_time,
sending_facility, segment_count); `<table>_<segment id lowercase>` one row per segment
(message_control_id, segment_index from 1, and `<seg>_<n>` for field n as sent; an empty
field is NULL). A segment table gains columns as later files send more fields.

FHIR: `<table>_<resource type lowercase>` gets one row per resource (id, last_updated from
meta.lastUpdated, resource: its JSON as sent; jsonb on PostgreSQL, text on SQLite).

Every table has `_load_id`, which points into `<table>_loads` as for any load. A load is one
transaction; the same bytes (SHA-256) again add nothing. HL7 loads in `append` mode, or
`merge` by message_control_id (HL7_MODES): the messages go to a staging table, numbered,
then a message sent again replaces the earlier one, whose row and segments (in every segment
table, those this file sends or not) go to their `_history` tables. FHIR
loads in `merge` mode on `id` (FHIR_MODES: a new table's default; `append` on request): the
file's resources go to a staging table each, numbered by line, then prh_ingest.load.merge
replaces each id's row and keeps the one it replaced in `<part table>_history`. A bad
message or line refuses the file in one line naming its number and a reason, never a value;
with BAD_ROWS=quarantine it goes to `<table>_rejects` (SetAside) up to MAX_BAD_ROWS.
On PostgreSQL
the rows go through COPY, in batches (memory stays bounded; HL7's are sent from a thread while
the file is read on); on SQLite through executemany.
"""

# ruff: noqa: S608 (SQL names only the loader's own tables and columns)

from __future__ import annotations

import codecs
import contextlib
import datetime as dt
import os
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from prh_ingest import naming
from prh_ingest.formats import BadRow, BadRowError, OnBad, fhir, hl7, refuse
from prh_ingest.load import merge, rejects
from prh_ingest.load.drift import LOAD_ID_COLUMN
from prh_ingest.load.modes import Loaded
from prh_ingest.load.readers import Sha256
from prh_ingest.load.rejects import BadRows
from prh_ingest.load.sinks import LOAD_ID_SETTING, load_id_default, loads_table, lock_key
from prh_ingest.settings import BadInput, Names, Settings

HL7, FHIR_NDJSON = "hl7", "fhir-ndjson"
SUFFIXES = {".hl7": HL7, ".ndjson": FHIR_NDJSON, ".ndjson.gz": FHIR_NDJSON}
MESSAGE_COLUMNS = ("message_control_id", "message_type", "message_time", "sending_facility")
BATCH_ROWS = 10_000  # rows held per table before they go to the database
HL7_HELD_LINES = 100_000  # HL7 on PostgreSQL: segment lines held, all tables (about 10 MB)


def message_format(
    source: Path, names: Names, environ: Mapping[str, str] = os.environ
) -> str | None:
    """The file's message format (FORMAT, else its suffix); None: a table file (readers)."""
    setting = environ.get(names.format_setting) or None
    if setting is not None:
        if setting not in (HL7, FHIR_NDJSON):
            raise BadInput(
                f"{names.format_setting}={setting}: {HL7} or {FHIR_NDJSON}, or unset (the "
                "file's suffix decides)"
            )
        return setting
    name = source.name.lower()
    return next((kind for suffix, kind in SUFFIXES.items() if name.endswith(suffix)), None)


def load(source: Path, sha256: Sha256, engine: sa.Engine, settings: Settings, kind: str) -> Loaded:
    """Load a message file into its tables in one transaction."""
    loader = load_hl7 if kind == HL7 else load_fhir
    try:
        return loader(source, sha256, engine, settings)
    except (BadInput, BadRowError, BadRows) as error:  # BadRows: merge's repeated ids
        raise BadInput(f"{settings.names.source_setting}={source}: {error}") from None


class Batches:
    """Rows held per table and written a batch at a time: COPY on PostgreSQL, executemany on
    SQLite. Every row gets the load's id; an empty value is NULL."""

    def __init__(self, connection: sa.Connection, load_id: int) -> None:
        self.connection, self.load_id = connection, load_id
        self.postgresql = connection.dialect.name == "postgresql"
        self.held: dict[tuple[str, tuple[str, ...]], list[list[object] | str]] = {}
        self.resources: dict[str, list[fhir.Resource]] = {}
        self.staged: set[str] = set()  # merge's staging tables: rows without _load_id
        self.behind: Future[None] | None = None  # send_behind()'s COPYs, while in flight
        self.sender: ThreadPoolExecutor | None = None

    def add(self, table: str, columns: tuple[str, ...], row: list[object]) -> None:
        """*row*: its values (on PostgreSQL they become a COPY text line here)."""
        held = self.held.setdefault((table, columns), [])
        tail = "\n" if table in self.staged else f"\t{self.load_id}\n"
        held.append(copy_line(row) + tail if self.postgresql else row)
        if len(held) < BATCH_ROWS:
            return
        if self.postgresql:  # never two COPYs at once: this one goes behind the one in flight
            self.send_behind()
        else:
            self.write(table, columns, held)
            held.clear()

    def lines(self, table: str, columns: tuple[str, ...]) -> list[list[object] | str]:
        """PostgreSQL: the list of *table*'s held COPY text lines (each with _load_id and its
        line end), for the caller to append to; flush() writes and empties it in place."""
        return self.held.setdefault((table, columns), [])

    def add_resource(self, table: str, resource: fhir.Resource) -> None:
        """A FHIR resource for PostgreSQL: its JSON goes to COPY as sent (fhir.copy_chunks)."""
        held = self.resources.setdefault(table, [])
        held.append(resource)
        if len(held) >= BATCH_ROWS:
            self.copy_resources(table, held)
            held.clear()

    def copy_resources(self, table: str, held: list[fhir.Resource]) -> None:
        if not held:
            return
        staged = table in self.staged  # with each resource's line number as its row number
        columns = ", ".join([*fhir.COPY_COLUMNS, *([merge.ROW_NUMBER] if staged else [])])
        cursor = self.connection.connection.cursor()
        with cursor.copy(f"COPY {table} ({columns}) FROM STDIN WITH {fhir.COPY_OPTIONS}") as copy:
            for chunk in fhir.copy_chunks(held, held[0].resource_type, numbered=staged):
                copy.write(chunk)

    def send_behind(self) -> None:
        """PostgreSQL: the held lines' COPYs go to the server from a thread while the caller
        reads on (a COPY waits on the server without holding the GIL, so the server's parse
        overlaps the reading). One batch is in flight at a time: this waits for the one
        before. flush() waits for it too, so no COPY is open while a table changes."""
        self.drain()
        jobs = [
            (table, ", ".join([*columns, LOAD_ID_COLUMN]), "".join(held).encode())  # type: ignore[arg-type]
            for (table, columns), held in self.held.items()
            if held
        ]
        for held in self.held.values():
            held.clear()  # in place: lines() handed the list out
        if self.sender is None:
            self.sender = ThreadPoolExecutor(1, thread_name_prefix="prh-ingest-copy")
        self.behind = self.sender.submit(self.copy_texts, jobs)

    def copy_texts(self, jobs: list[tuple[str, str, bytes]]) -> None:
        cursor = self.connection.connection.cursor()
        for table, names, text in jobs:
            with cursor.copy(f"COPY {table} ({names}) FROM STDIN WITH (NULL '')") as copy:
                copy.write(text)

    def drain(self) -> None:
        """Wait for the COPYs sent behind; their error is raised here."""
        if self.behind is not None:
            behind, self.behind = self.behind, None
            behind.result()

    def abandon(self) -> None:
        """The load failed: wait for the COPYs in flight (the transaction is rolled back after
        them), dropping their error for the load's own."""
        with contextlib.suppress(Exception):
            self.drain()
        self.close()

    def close(self) -> None:
        if self.sender is not None:
            self.sender.shutdown()
            self.sender = None

    def flush(self) -> None:
        self.drain()
        for (table, columns), held in self.held.items():
            self.write(table, columns, held)
            held.clear()  # in place: lines() handed the list out
        for table, resources in self.resources.items():
            self.copy_resources(table, resources)
        self.resources.clear()

    def write(self, table: str, columns: tuple[str, ...], rows: list[list[object] | str]) -> None:
        if not rows:
            return
        load_id = [] if table in self.staged else [self.load_id]
        names = ", ".join([*columns, *([LOAD_ID_COLUMN] if load_id else [])])
        cursor = self.connection.connection.cursor()
        if self.postgresql:  # COPY's text format, lines built by add(): an empty value is NULL
            with cursor.copy(f"COPY {table} ({names}) FROM STDIN WITH (NULL '')") as copy:
                copy.write("".join(rows).encode())  # type: ignore[arg-type]
        else:
            values = (
                [*(value if value != "" else None for value in row), *load_id] for row in rows
            )
            marks = ", ".join(["?"] * (len(columns) + len(load_id)))
            cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", values)


COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_line(row: list[object]) -> str:
    """A row in COPY's text format (no line end): tab-separated, backslash escapes."""
    return "\t".join(
        [
            value.translate(COPY_ESCAPES)
            if type(value) is str
            else ("" if value is None else str(value))
            for value in row
        ]
    )


def segment_key_columns() -> list[sa.Column]:
    return [sa.Column("message_control_id", sa.Text), sa.Column("segment_index", sa.Integer)]


def copy_text(value: str) -> str:
    """A value in COPY's text format. HL7 values hold backslashes (its own escapes, MSH-2)
    and almost never a tab; line ends cannot be in them (they end segments)."""
    if "\t" in value or "\n" in value or "\r" in value:
        return value.translate(COPY_ESCAPES)
    return value.replace("\\", "\\\\") if "\\" in value else value


def hl7_line(control_id: str, segment: hl7.Segment, width: int, load_id: int) -> str:
    """A segment's row as a COPY text line (control_id already in COPY's text): its fields
    joined by tabs and escaped at once, unless a field holds a tab (then field by field)."""
    fields = segment.fields
    body = "\t".join(fields)
    if body.count("\t") == len(fields) - 1:
        body = body.replace("\\", "\\\\") if "\\" in body else body
    else:
        body = "\t".join([value.translate(COPY_ESCAPES) for value in fields])
    padding = "\t" * (width - len(fields))
    return f"{control_id}\t{segment.segment_index}\t{body}{padding}\t{load_id}\n"


def part_table(
    connection: sa.Connection, name: str, fixed: Sequence[sa.Column], text: Sequence[str]
) -> None:
    """Create table *name* (the *fixed* columns, the *text* ones, _load_id), or add the
    *text* columns it lacks (a segment's fields grow)."""
    existing = sa.inspect(connection)
    if existing.has_table(name):
        have = {column["name"] for column in existing.get_columns(name)}
        for column in text:
            if column not in have:
                connection.exec_driver_sql(f"ALTER TABLE {name} ADD COLUMN {column} TEXT")
        return
    metadata = sa.MetaData()
    sa.Table(
        name,
        metadata,
        *fixed,
        *(sa.Column(column, sa.Text) for column in text),
        sa.Column(
            LOAD_ID_COLUMN,
            sa.Integer,
            nullable=False,
            server_default=load_id_default(connection),  # as the rows tables'
        ),
    )
    metadata.create_all(connection)


def start_load(
    connection: sa.Connection,
    settings: Settings,
    source: Path,
    sha256: str,
    modes: Sequence[str],
) -> tuple[sa.Table, int | Loaded, str]:
    """The loads table, this load's id and its mode; or, for bytes loaded already, what that
    load did. *modes*: the format's load modes, its default for a new table first (a table
    keeps the mode of its first load)."""
    names = settings.names
    metadata = sa.MetaData()
    loads = loads_table(metadata, names)
    metadata.create_all(connection)
    first = sa.select(loads.c.load_mode).order_by(loads.c.load_id).limit(1)
    mode = settings.load_mode or connection.execute(first).scalar() or modes[0]
    if mode not in modes:
        raise BadInput(
            f"{names.load_mode_setting}={mode}: this format loads in {' or '.join(modes)} mode"
        )
    if connection.dialect.name == "postgresql":  # loads of the same bytes, or merges, take turns
        turn = lock_key(f"{names.table}\n{sha256 if mode == 'append' else ''}")
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(turn)))
    current = loads.c.replaced_by.is_(None)
    same = sa.select(loads.c.load_id).where(current, loads.c.source_sha256 == sha256)
    if (same_as := connection.execute(same.limit(1)).scalar()) is not None:
        return loads, Loaded(mode, 0, sha256, same_as=same_as), mode
    load_id = connection.execute(
        loads.insert().values(
            source_file=str(source),
            source_sha256=sha256,
            loaded_at=dt.datetime.now(dt.UTC),
            load_mode=mode,
        )
    ).inserted_primary_key[0]
    return loads, load_id, mode


class SetAside:
    """BAD_ROWS=quarantine for a message file, its `on_bad`: each bad message (HL7) or line
    (FHIR) a reject, by its number and the reader's reason code, its bytes kept for
    `<table>_rejects` only; above MAX_BAD_ROWS the whole file is refused."""

    def __init__(self, settings: Settings) -> None:
        self.limit = rejects.parse_max_bad_rows(settings.max_bad_rows)
        self.rejects: list[rejects.Reject] = []

    def __call__(self, bad: BadRow) -> None:
        self.rejects.append(rejects.Reject(bad.number, bad.reason, bad.raw))


def on_bad_for(settings: Settings) -> OnBad:
    """The readers' `on_bad`: refuse the file (BAD_ROWS unset), or set the bad ones aside."""
    return SetAside(settings) if settings.quarantine else refuse


def load_parts(
    source: Path,
    sha256: Sha256,
    engine: sa.Engine,
    settings: Settings,
    write: Callable[[sa.Connection, Batches, str], int],
    modes: Sequence[str] = ("append",),
    on_bad: OnBad = refuse,
) -> Loaded:
    """One load of a message file: *write* puts its rows in the batches (in the load's mode)
    and counts them; the bad messages or lines *on_bad* set aside (a SetAside) are recorded."""
    digest = sha256.result()
    with engine.begin() as connection:  # SQLite: BEGIN IMMEDIATE, loads take turns
        loads, started, mode = start_load(connection, settings, source, digest, modes)
        if isinstance(started, Loaded):
            return started
        if connection.dialect.name == "postgresql":  # for this transaction only
            connection.execute(sa.select(sa.func.set_config(LOAD_ID_SETTING, str(started), True)))
        batches = Batches(connection, started)
        try:
            count = write(connection, batches, mode)
            batches.flush()
        except BaseException:
            batches.abandon()
            raise
        batches.close()
        set_aside = on_bad.rejects if isinstance(on_bad, SetAside) else None
        if isinstance(on_bad, SetAside):  # above MAX_BAD_ROWS: the whole file, rolled back
            on_bad.limit.check(on_bad.rejects, count + len(on_bad.rejects))
            rejects.record(connection, settings.names.table, started, digest, on_bad.rejects)
        done = loads.update().where(loads.c.load_id == started).values(row_count=count)
        connection.execute(done)
    if set_aside is None:
        return Loaded(mode, count, digest)
    numbers = [reject.row_number for reject in set_aside]
    return Loaded(mode, count, digest, rejected=len(set_aside), rejected_rows=numbers)


def load_hl7(source: Path, sha256: Sha256, engine: sa.Engine, settings: Settings) -> Loaded:
    """`<table>` a row per message, `<table>_<segment>` a row per segment (see the module)."""
    names, encoding = settings.names, settings.encoding
    if codecs.lookup(encoding).name == "utf-8-sig":  # the reader drops a BOM itself
        encoding = "utf-8"  # the C decoder, not utf-8-sig's Python wrapper

    message_columns = (*MESSAGE_COLUMNS, "segment_count")

    def write(connection: sa.Connection, batches: Batches, mode: str) -> int:
        part_table(
            connection,
            names.table,
            [sa.Column(name, sa.Text) for name in MESSAGE_COLUMNS]
            + [sa.Column("segment_count", sa.Integer)],
            [],
        )
        messages_into = names.table
        if mode == "merge":  # the messages to a staging table, numbered; segments go straight
            refuse_last(settings)
            messages_into = merge.create_staging(
                connection, names.table, message_columns, 1, {"segment_count": "INTEGER"}
            )
            batches.staged.add(messages_into)
        widths = hl7.SegmentTables()
        segments: dict[str, tuple[str, tuple[str, ...], int, list]] = {}
        postgresql, load_id = batches.postgresql, batches.load_id
        count = held = 0
        for message in hl7.read_path(source, encoding=encoding, on_bad=on_bad):
            count += 1
            if grown := widths.add(message):  # new segments or fields: their columns first
                batches.flush()  # no COPY open while a table changes
                held = 0
                for key in grown:
                    segment_id, fields = key.upper(), widths.columns(key)
                    table = names.part_table(segment_id)
                    part_table(connection, table, segment_key_columns(), fields)
                    columns = ("message_control_id", "segment_index", *fields)
                    lines = batches.lines(table, columns)
                    segments[segment_id] = (table, columns, len(fields), lines)
            control_id = message.message_control_id
            parts = (message.message_type, message.message_time, message.sending_facility)
            row = [control_id, *parts, message.segment_count]
            if mode == "merge":
                batches.add(messages_into, (*message_columns, merge.ROW_NUMBER),
                            [*row, message.number])  # fmt: skip
            else:
                batches.add(names.table, message_columns, row)
            if postgresql:  # the segments' COPY lines, held until a batch is full
                copy_id = copy_text(control_id)
                for segment in message.segments:
                    _, _, width, lines = segments[segment.segment_id]
                    lines.append(hl7_line(copy_id, segment, width, load_id))
                held += message.segment_count
                if held >= HL7_HELD_LINES:
                    batches.send_behind()
                    held = 0
                continue
            for segment in message.segments:
                table, columns, width, _ = segments[segment.segment_id]
                padding = [None] * (width - len(segment.fields))
                batches.add(
                    table, columns, [control_id, segment.segment_index, *segment.fields, *padding]
                )
        if mode == "merge":
            batches.flush()
            merge_messages(connection, names.table, messages_into, batches.load_id)
        return count

    on_bad = on_bad_for(settings)  # a bad message refuses the file, or is set aside
    return load_parts(source, sha256, engine, settings, write, HL7_MODES, on_bad)


HL7_MODES = ("append", "merge")  # merge by message_control_id, a message at a time
CONTROL_ID = "message_control_id"


def refuse_last(settings: Settings) -> None:
    """HL7 merges refuse a control id twice in one file: MSH-10 names one message."""
    if merge.parse_duplicate_keys(settings.duplicate_keys) == "last":
        setting = naming.duplicate_keys_setting(settings.names.project, settings.names.source)
        raise BadInput(
            f"{setting}=last: an HL7 message control id names one message, so a merge refuses "
            "one sent twice in a file"
        )


def merge_messages(connection: sa.Connection, table: str, staging: str, load_id: int) -> None:
    """A message sent again replaces the earlier one: its row in *table* and its segments in
    every segment table (those this file sent too) go to their history tables."""
    merge.merge(connection, table, staging, [CONTROL_ID], load_id, "refuse", "messages", False)
    part = re.compile(rf"{re.escape(table)}_[a-z0-9]{{3}}")
    for name in sorted(sa.inspect(connection).get_table_names()):
        if part.fullmatch(name):
            merge.ensure_history(connection, name)
            merge.move_to_history(connection, name, staging, [CONTROL_ID], load_id, True)


FHIR_MODES = ("merge", "append")  # merge on id by default (the loader's merge, with history)


def load_fhir(source: Path, sha256: Sha256, engine: sa.Engine, settings: Settings) -> Loaded:
    """`<table>_<resource type>` a row per resource (see the module): merged on id (its
    history in `<table>_<resource type>_history`), or appended."""
    names = settings.names
    duplicates = merge.parse_duplicate_keys(settings.duplicate_keys)

    def write(connection: sa.Connection, batches: Batches, mode: str) -> int:
        postgresql = connection.dialect.name == "postgresql"
        kind = JSONB if postgresql else sa.Text
        into: dict[str, tuple[str, str]] = {}  # resource type -> (its table, where rows go)
        columns = ("id", "last_updated", "resource")
        count = 0
        with fhir.open_ndjson(source) as stream:
            for resource in fhir.read_resources(stream, on_bad=on_bad):
                count += 1
                if resource.resource_type not in into:
                    table = names.part_table(resource.resource_type)
                    fixed = [
                        sa.Column("id", sa.Text, nullable=False),
                        sa.Column("last_updated", sa.Text),
                        sa.Column("resource", kind, nullable=False),
                    ]
                    batches.flush()  # no COPY open while a table is created
                    part_table(connection, table, fixed, [])
                    target = table
                    if mode == "merge":  # the file's resources first go to a staging table
                        types = {"resource": "JSONB"} if postgresql else None
                        target = merge.create_staging(connection, table, columns, 1, types)
                        batches.staged.add(target)
                    into[resource.resource_type] = (table, target)
                target = into[resource.resource_type][1]
                if postgresql:
                    batches.add_resource(target, resource)
                elif target in batches.staged:  # numbered: a repeated id's rows are named
                    row = [resource.id, resource.last_updated, resource.raw.decode()]
                    batches.add(target, (*columns, merge.ROW_NUMBER), [*row, resource.line_number])
                else:
                    row = [resource.id, resource.last_updated, resource.raw.decode()]
                    batches.add(target, columns, row)
        if mode != "merge":
            return count
        batches.flush()
        load_id = batches.load_id
        return sum(  # by id: each earlier row of an id the file brings goes to the history
            merge.merge(connection, table, staging, ["id"], load_id, duplicates, "lines").rows
            for table, staging in into.values()
        )

    on_bad = on_bad_for(settings)  # a bad line refuses the file, or is set aside
    return load_parts(source, sha256, engine, settings, write, FHIR_MODES, on_bad)
