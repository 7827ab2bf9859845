"""Load a source's export into the warehouse: `python ingest.py [SOURCE]` (default: {{ cookiecutter.source_name }}).

The names below are {{ cookiecutter.source_name }}'s; another source (a flow per source, in prefect/) has its
own: its setting `<PREFIX>_<SOURCE>_SOURCE_FILE` and its table `<slug>_<source>`.

Source: the file named by {{ cookiecutter | source_setting }}, read by its suffix: delimited text
        (`.csv` `.txt` `.tsv` `.psv` `.dat`) or a workbook (`.xlsx` `.xlsm` `.xls` `.xlsb`
        `.ods`, through calamine). Optional settings (names below): the sheet (default: the
        first visible one), the header's row number as Excel shows it (default: the first
        non-empty row), how many trailing rows to drop (control totals; default 0) and, for
        text, its encoding (default utf-8-sig; Windows exports are often cp1252), delimiter
        (default: the one of `,` `|` `^` tab `;` giving the header the most fields; ties: `,`)
        and text qualifier (default `"`; `none`: every character is data). Empty rows above
        the header and empty columns left of it are skipped.
Sink:   table `{{ cookiecutter | table_name }}` at the SQLAlchemy URL in {{ cookiecutter | sink_setting }}: SQLite
        (`sqlite:///path.db`) or PostgreSQL (`postgresql+psycopg://user@host/db`). Each row has
        the header's columns, as text exactly as in the file (empty cells are NULL), plus
        `_load_id`, which points into `{{ cookiecutter | table_name }}_loads`: one row per load with the
        file's absolute path, SHA-256, load time, row count, load mode and the later load
        that replaced its rows (kept after that too).

The load is
- fast: PostgreSQL gets the file through COPY (the server parses plain delimited text
  itself; a file it would read otherwise than the csv reader, such as one with a `"` inside
  a value, goes row by row); SQLite gets the csv reader straight into executemany. Memory stays flat for
  text; a sheet is read whole by calamine (about 0.8 KB per row of 8 columns, so a sheet
  of Excel's maximum 1,048,576 rows needs about 800 MB);
- explicit about history ({{ cookiecutter | source_key }}_LOAD_MODE, see LOAD_MODES): `append` keys a
  load by the file's SHA-256 (the same bytes again add nothing), `file` by its path (a
  re-sent file replaces its earlier load), `snapshot` replaces the table; two loads of one
  file at once leave one copy (they take turns);
- atomic: one transaction, so a failure half-way leaves the table as it was.

This file is the template's (updates change it); your own changes to the rows (renames,
type fixes, filters) go in transform.py, which updates never touch.

Output: a line saying what was loaded, then one JSON summary line (SUMMARY_KIND) that the
flow turns into the run's table artifact (ingest.py, a shell subprocess, has no run context).

Exit codes: 0 loaded; 65 bad input (missing, unreadable or malformed file, bad setting),
printed as one line on stderr; 69 cannot start (a module missing from the Python that runs
it), one line too; the flow retries neither. Anything else is another failure (e.g. the
database is down), which the flow retries.
"""

from __future__ import annotations

import codecs
import collections
import csv
import datetime as dt
import hashlib
import io
import json
import os
import re
import sqlite3
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

try:  # a module missing here is a broken install: one line, and the flow does not retry it
    import sqlalchemy as sa

    import transform
except ImportError as missing:
    print(f"error: ingest.py cannot start: {missing} (install requirements.txt into {sys.executable})", file=sys.stderr)
    sys.exit(69)  # EX_UNAVAILABLE: the flow does not retry it

if TYPE_CHECKING:  # the readers and the driver are imported only where they are used
    import psycopg
    from python_calamine import CalamineWorkbook

# This source's names. All derive from <PREFIX>_<SOURCE> and the table (the naming contract).
# The source is the argument (`python ingest.py cerner`); without one, the project's first.
SOURCE = sys.argv[1] if __name__ == "__main__" and len(sys.argv) > 1 else "{{ cookiecutter.source_name }}"
SOURCE_NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")  # as the template's answers
SOURCE_KEY = "{{ cookiecutter | env_prefix }}_" + SOURCE.upper().replace("-", "_")  # <PREFIX>_<SOURCE>
TABLE = "{{ cookiecutter.project_slug | replace('-', '_') }}_" + SOURCE.replace("-", "_")
SOURCE_SETTING = f"{SOURCE_KEY}_SOURCE_FILE"
SHEET_SETTING = f"{SOURCE_KEY}_SHEET"
HEADER_ROW_SETTING = f"{SOURCE_KEY}_HEADER_ROW"
ENCODING_SETTING = f"{SOURCE_KEY}_ENCODING"
DELIMITER_SETTING = f"{SOURCE_KEY}_DELIMITER"
QUOTE_SETTING = f"{SOURCE_KEY}_QUOTE"
FOOTER_ROWS_SETTING = f"{SOURCE_KEY}_FOOTER_ROWS"
LOAD_MODE_SETTING = f"{SOURCE_KEY}_LOAD_MODE"
NEW_COLUMNS_SETTING = f"{SOURCE_KEY}_NEW_COLUMNS"
SINK_SETTING = "{{ cookiecutter | sink_setting }}"

LOADS_TABLE = f"{TABLE}_loads"
# What a load does to the rows already there: `append` adds a file's rows unless the same
# bytes (SHA-256) are loaded already; `file` replaces those of the earlier load of the same
# path; `snapshot` replaces the whole table. Unset, a table keeps the mode of its first
# load: `append` for a new table, `file` for one loaded before LOAD_MODE existed (its loads
# are recorded as `file`, what ingest.py did then), so a template update changes nothing.
LOAD_MODES = ("append", "file", "snapshot")
DEFAULT_LOAD_MODE = "append"
EARLIER_LOAD_MODE = "file"  # what ingest.py did before LOAD_MODE (recorded for such loads)
LOAD_ID_COLUMN = "_load_id"
DEFAULT_ENCODING = "utf-8-sig"
TEXT_SUFFIXES = (".csv", ".txt", ".tsv", ".psv", ".dat")
WORKBOOK_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".xlsb", ".ods")
DELIMITERS = (",", "|", "^", "\t", ";")  # detected in this order: a tie goes to the first
DEFAULT_QUOTE = '"'
# COPY's CSV format always has a text qualifier: with QUOTE=none it is this byte, and a file
# that holds it goes through Python's reader instead.
NO_QUOTE_STANDIN = "\x01"
SUMMARY_KIND = "prh-ingest-load"  # the JSON summary line's "summary" (the flow looks for it)
BAD_INPUT_EXIT_CODE = 65  # EX_DATAERR: no tool in the shell step uses it (uv and pipenv use 1 and 2)
SQLITE_BUSY_SECONDS = 3600  # a second load waits this long for the first (the flow's timeout)
# PostgreSQL: COPY fills _load_id from this transaction-local setting (SET LOCAL).
LOAD_ID_SETTING = "prh_ingest.load_id"
COPY_CHUNK_BYTES = 1 << 20

Row = list[str | None]
COLUMN_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class BadInput(Exception):
    """The source file or a setting is missing, unreadable or malformed (exit code 65)."""


# --- Reading the source ----------------------------------------------------------------------


@dataclass
class Settings:
    sheet: str | None
    header_row: int | None
    encoding: str
    delimiter: str | None  # None: detected from the header line
    quote: str | None  # None: no text qualifier (QUOTE=none)
    footer_rows: int
    load_mode: str | None = None  # None: the table's default (see LOAD_MODES)
    add_columns: bool = False  # NEW_COLUMNS=add: a file's new columns are added to the table


@dataclass
class CsvLayout:
    """Where a text file's data rows are (byte offsets), how they are delimited and which of
    their values are the table."""

    offset: int
    end: int  # where the footer rows start (the file's size without them)
    encoding: str
    delimiter: str
    quote: str | None
    width: int  # values per row, as many as the header row has
    first: int  # the table's values are [first, last)
    last: int

    def reader_options(self) -> dict[str, object]:
        if self.quote is None:
            return {"delimiter": self.delimiter, "quoting": csv.QUOTE_NONE}
        return {"delimiter": self.delimiter, "quotechar": self.quote}

    @property
    def plain(self) -> bool:
        """Header from the first value to the last: the rows need no cutting."""
        return self.first == 0 and self.last == self.width


@dataclass
class Table:
    """The table found in the source file.

    `rows` are the data rows. For a plain CSV they come straight from the csv reader,
    unchecked, so a database may parse the file's bytes itself: a row that does not fit
    fails the insert, and `find_bad_row()` then names it. Otherwise the rows are checked
    and cut to the header's columns as they are read."""

    columns: list[str]
    first_row: int  # the row number of the first data row, as Excel shows it
    rows: Iterable[Row]
    csv: CsvLayout | None = None

    @property
    def plain_csv(self) -> bool:
        return self.csv is not None and self.csv.plain


def column_letter(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA (as Excel names columns)."""
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters


def column_names(header: Row, first_column: int, row_number: int) -> list[str]:
    """Turn the header cells into unique lowercase column names (`Visit Type` -> `visit_type`)."""
    names = []
    for position, title in enumerate(header, start=first_column):
        cell = f"{column_letter(position)}{row_number}"
        name = re.sub(r"[^a-z0-9]+", "_", (title or "").strip().lower()).strip("_")
        if not name:
            raise BadInput(f"header cell {cell} is empty")
        if name[0].isdigit():
            name = f"c_{name}"
        if name in names or name.startswith("_"):
            raise BadInput(f"header cell {cell} {title!r} repeats or clashes with {name!r}")
        names.append(name)
    return names


def header_span(header: Row) -> tuple[int, int]:
    """The first and one past the last non-empty cell of the header row."""
    filled = [index for index, value in enumerate(header) if value not in (None, "")]
    return filled[0], filled[-1] + 1


def find_header(rows: Iterator[Row], header_row: int | None) -> tuple[int, Row]:
    """The header's row number and cells: the row the setting names, else the first
    non-empty one."""
    for number, row in enumerate(rows, start=1):
        if header_row is None and any(value not in (None, "") for value in row):
            return number, row
        if number == header_row:
            if not any(value not in (None, "") for value in row):
                raise BadInput(f"header row {number} is empty ({HEADER_ROW_SETTING})")
            return number, row
    if header_row is None:
        raise BadInput("file is empty (no header row)")
    raise BadInput(f"the file has no row {header_row} ({HEADER_ROW_SETTING})")


def check_rows(rows: Iterable[Row], width: int, first: int, last: int, row: int) -> Iterator[Row]:
    """Each row cut to the header's columns [first, last), once it is known to fit: as many
    values as the header row, none outside the header's columns."""
    cut = first > 0 or last < width
    for number, values in enumerate(rows, start=row):
        if len(values) != width:
            raise BadInput(f"row {number} has {len(values)} values, the header has {width}")
        if cut:
            outside = [i for i, value in enumerate(values) if value and not first <= i < last]
            if outside:
                raise BadInput(
                    f"cell {column_letter(outside[0])}{number} has a value outside the "
                    f"header's columns {column_letter(first)} to {column_letter(last - 1)}; "
                    f"if the header is on another row, set {HEADER_ROW_SETTING}"
                )
            values = values[first:last]
        yield values


def without_footer(rows: Iterable[Row], footer_rows: int) -> Iterator[Row]:
    """The rows but the last `footer_rows` (trailer or control-total rows)."""
    if not footer_rows:
        yield from rows
        return
    held: collections.deque[Row] = collections.deque()
    for row in rows:
        held.append(row)
        if len(held) > footer_rows:
            yield held.popleft()


def footer_start(path: Path, footer_rows: int) -> int:
    """The byte offset where the file's last `footer_rows` lines start (its size for none).
    Line ends after the last line (and blank lines there) do not count as lines."""
    size = path.stat().st_size
    if not footer_rows:
        return size
    with path.open("rb") as file:
        data = file.read() if size <= 1 << 24 else tail(file, size)
    base = size - len(data)
    end = len(data.rstrip(b"\r\n"))
    for _ in range(footer_rows):
        end = data.rfind(b"\n", 0, end)
        if end < 0:
            return base  # fewer lines than footer rows: no data rows left
    return base + end + 1


def tail(file: io.BufferedReader, size: int, blocks: int = 1 << 20) -> bytes:
    """The file's last MB (footers are a few short lines)."""
    file.seek(max(0, size - blocks))
    return file.read()


class Span(io.RawIOBase):
    """Bytes [start, end) of a file, as a readable stream."""

    def __init__(self, path: Path, start: int, end: int) -> None:
        self.file = path.open("rb")
        self.file.seek(start)
        self.left = max(0, end - start)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        count = self.file.readinto(memoryview(buffer)[: self.left])
        self.left -= count
        return count

    def close(self) -> None:
        self.file.close()
        super().close()


def detect_delimiter(header_line: str, quote: str | None) -> str:
    """The delimiter giving the header line the most fields (a tie, or one field: `,`)."""
    options = {"quoting": csv.QUOTE_NONE} if quote is None else {"quotechar": quote}
    fields = {
        delimiter: len(next(csv.reader([header_line], delimiter=delimiter, **options), []))
        for delimiter in DELIMITERS
    }
    return max(DELIMITERS, key=lambda delimiter: fields[delimiter])  # max keeps the first of a tie


def delimiter_name(delimiter: str) -> str:
    return "tab" if delimiter == "\t" else repr(delimiter)


class CountedLines:
    """The file's lines decoded, counting the bytes read (the csv reader reads whole lines)."""

    def __init__(self, file: io.BufferedReader, encoding: str) -> None:
        self.file, self.encoding, self.consumed, self.number = file, encoding, 0, 0

    def __iter__(self) -> CountedLines:
        return self

    def __next__(self) -> str:
        line = self.file.readline()
        if not line:
            raise StopIteration
        self.consumed += len(line)
        self.number += 1
        try:
            return line.decode(self.encoding)
        except UnicodeDecodeError as error:
            raise BadInput(not_encoded_as(self.encoding, self.number, error)) from None


def not_encoded_as(encoding: str, line: int, error: UnicodeDecodeError) -> str:
    return (
        f"line {line} is not {encoding} (byte {error.object[error.start:error.start + 1]!r}); "
        f"set {ENCODING_SETTING} to the file's encoding, e.g. cp1252"
    )


def csv_body(path: Path, layout: CsvLayout) -> Iterator[list[str]]:
    """The csv reader over the file's data rows (from the header to the footer)."""
    binary = io.BufferedReader(Span(path, layout.offset, layout.end), COPY_CHUNK_BYTES)
    encoding = layout.encoding
    if layout.offset and codecs.lookup(encoding).name == "utf-8-sig":
        encoding = "utf-8"  # past the BOM: the C decoder, not utf-8-sig's Python wrapper
    text = io.TextIOWrapper(binary, encoding=encoding, newline="")
    return csv.reader(text, strict=True, **layout.reader_options())


def header_line(path: Path, settings: Settings) -> str:
    """The line the delimiter is detected from: the header row's, else the first non-empty."""
    with path.open("rb") as file:
        lines = CountedLines(file, settings.encoding)
        for line in lines:
            if lines.number == settings.header_row or (
                settings.header_row is None and line.strip(" \t\r\n,|^;")
            ):
                return line
    return ""


def read_text(path: Path, settings: Settings) -> Table:
    delimiter = settings.delimiter
    if delimiter is None:
        delimiter = detect_delimiter(header_line(path, settings), settings.quote)
        print(
            f"delimiter {delimiter_name(delimiter)} (detected from the header line; "
            f"set {DELIMITER_SETTING} to choose)"
        )
    options = CsvLayout(0, 0, "", delimiter, settings.quote, 0, 0, 0).reader_options()
    with path.open("rb") as file:
        lines = CountedLines(file, settings.encoding)
        try:
            header_rows = csv.reader(lines, strict=True, **options)
            number, header = find_header(header_rows, settings.header_row)
        except csv.Error as error:
            raise BadInput(f"line {lines.number} is not valid delimited text ({error})") from None
    first, last = header_span(header)
    columns = column_names(header[first:last], first, number)
    end = max(lines.consumed, footer_start(path, settings.footer_rows))
    layout = CsvLayout(
        lines.consumed, end, settings.encoding, delimiter, settings.quote, len(header), first, last
    )
    body = csv_body(path, layout)
    if layout.plain:
        return Table(columns, number + 1, body, layout)
    return Table(columns, number + 1, check_rows(body, len(header), first, last, number + 1), layout)


def cell_text(value: object) -> str | None:
    """Store every cell as text: whole numbers without `.0`, dates in ISO 8601."""
    if type(value) is str:  # the common case first: this runs once per cell
        return value or None
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    if isinstance(value, dt.date | dt.time):  # datetime is a date
        return value.isoformat()
    return None if value is None else str(value)


def sheet_name(workbook: CalamineWorkbook, wanted: str | None) -> str:
    """The sheet the setting names, else the first visible one."""
    from python_calamine import SheetVisibleEnum

    sheets = workbook.sheets_metadata
    if wanted is None:
        visible = [s.name for s in sheets if s.visible == SheetVisibleEnum.Visible]
        if not visible:
            raise BadInput("the workbook has no visible sheet")
        return visible[0]
    if wanted not in workbook.sheet_names:
        there = ", ".join(
            repr(s.name) + ("" if s.visible == SheetVisibleEnum.Visible else " (hidden)")
            for s in sheets
        )
        raise BadInput(f"no sheet {wanted!r} ({SHEET_SETTING}); the workbook has {there}")
    return wanted


def read_workbook(path: Path, settings: Settings) -> Table:
    from python_calamine import CalamineError, CalamineWorkbook  # needed only for workbooks

    try:
        workbook = CalamineWorkbook.from_path(str(path))
        name = sheet_name(workbook, settings.sheet)
        sheet = workbook.get_sheet_by_name(name)
    except CalamineError as error:
        raise BadInput(f"not a readable {path.suffix.lower()} workbook ({error})") from None
    if sheet.start is None:
        raise BadInput(f"sheet {name!r} is empty")
    # iter_rows yields every row from row 1, each from the sheet's first used column on.
    left = sheet.start[1]
    rows = (list(map(cell_text, row)) for row in sheet.iter_rows())
    number, header = find_header(rows, settings.header_row)
    first, last = header_span(header)
    columns = column_names(header[first:last], left + first, number)
    body = without_footer(rows, settings.footer_rows)
    checked = check_rows(body, len(header), first, last, number + 1)
    return Table(columns, number + 1, checked)


def read_table(path: Path, settings: Settings) -> Table:
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return read_text(path, settings)
    if suffix in WORKBOOK_SUFFIXES:
        return read_workbook(path, settings)
    known = " ".join(TEXT_SUFFIXES + WORKBOOK_SUFFIXES)
    raise BadInput(f"cannot read a {suffix or 'suffix-less'} file: the source must be one of {known}")


def read_settings() -> Settings:
    """The optional reader settings, checked."""
    header_row = os.environ.get(HEADER_ROW_SETTING) or None
    if header_row is not None and not (header_row.isdigit() and int(header_row) >= 1):
        raise BadInput(f"{HEADER_ROW_SETTING}={header_row}: not a row number (1, 2, ...)")
    footer_rows = os.environ.get(FOOTER_ROWS_SETTING) or "0"
    if not footer_rows.isdigit():
        raise BadInput(f"{FOOTER_ROWS_SETTING}={footer_rows}: not a number of rows (0, 1, ...)")
    encoding = os.environ.get(ENCODING_SETTING) or DEFAULT_ENCODING
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise BadInput(f"{ENCODING_SETTING}={encoding}: unknown encoding") from None
    quote = text_character(QUOTE_SETTING, os.environ.get(QUOTE_SETTING) or DEFAULT_QUOTE, "none")
    load_mode = os.environ.get(LOAD_MODE_SETTING) or None
    if load_mode is not None and load_mode not in LOAD_MODES:
        raise BadInput(f"{LOAD_MODE_SETTING}={load_mode}: one of {', '.join(LOAD_MODES)}")
    new_columns = os.environ.get(NEW_COLUMNS_SETTING) or None
    if new_columns not in (None, "add"):
        raise BadInput(f"{NEW_COLUMNS_SETTING}={new_columns}: add, or unset (a new column is refused)")
    delimiter = os.environ.get(DELIMITER_SETTING) or None
    if delimiter is not None:
        delimiter = text_character(DELIMITER_SETTING, delimiter, "tab")
        if delimiter in ('"', "'", quote):
            raise BadInput(f"{DELIMITER_SETTING}={delimiter}: a quote character, not a delimiter")
    return Settings(
        os.environ.get(SHEET_SETTING) or None,
        header_row and int(header_row),
        encoding,
        delimiter,
        quote,
        int(footer_rows),
        load_mode,
        new_columns == "add",
    )


def text_character(setting: str, value: str, word: str) -> str | None:
    """A delimiter or quote setting: one character that is not a letter, digit or line end,
    or its word (`tab` is a tab, `none` no character)."""
    if value.lower() == word:
        return {"tab": "\t", "none": None}[word]
    if len(value) != 1 or value.isalnum() or value in "\r\n":
        raise BadInput(f"{setting}={value}: one character (not a letter or digit) or {word}")
    return value


# --- Writing to the database -----------------------------------------------------------------


class Sha256(threading.Thread):
    """A file's SHA-256, hashed while ingest.py opens the sink (hashlib and reading let go
    of the GIL, so it takes no time off the load on a second core)."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)  # a load that fails before it is needed does not wait
        self.path, self.digest, self.error = path, "", None
        self.start()

    def run(self) -> None:
        digest = hashlib.sha256()
        try:
            with self.path.open("rb") as file:
                for block in iter(lambda: file.read(1 << 20), b""):
                    digest.update(block)
        except OSError as error:
            self.error = error
        self.digest = digest.hexdigest()

    def result(self) -> str:
        self.join()
        if self.error is not None:
            raise self.error
        return self.digest


def open_source(setting: str | None) -> Path:
    """Check the source file exists and is readable; the error names the file."""
    if not setting:
        raise BadInput(f"{SOURCE_SETTING} is not set")
    path = Path(setting).absolute()
    if not path.is_file():
        raise BadInput(f"{SOURCE_SETTING}={setting}: file not found")
    if not os.access(path, os.R_OK):
        raise BadInput(f"{SOURCE_SETTING}={setting}: file is not readable (permission denied)")
    return path


def open_sink(setting: str | None) -> sa.Engine:
    if not setting:
        raise BadInput(f"{SINK_SETTING} is not set")
    try:
        url = sa.make_url(setting)
    except sa.exc.ArgumentError as error:
        raise BadInput(f"{SINK_SETTING} is not a SQLAlchemy URL") from error
    if url.get_backend_name() == "postgresql":
        return sa.create_engine(url)
    if url.get_backend_name() != "sqlite":
        raise BadInput(f"{SINK_SETTING}: the database must be sqlite or postgresql")
    if url.database in (None, "", ":memory:"):
        raise BadInput(f"{SINK_SETTING}: a SQLite sink must be a file (sqlite:///path.db)")
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
    connection: sa.Connection, columns: list[str], add_columns: bool
) -> tuple[sa.Table, sa.Table, list[str]]:
    """The rows table and its loads table, created on the first load, and the columns added
    to it. A later file must have the same columns; with NEW_COLUMNS=add its new ones are
    added (text; earlier rows NULL there) and the table's columns it lacks load as NULL."""
    postgresql = connection.dialect.name == "postgresql"
    metadata = sa.MetaData()
    loads = sa.Table(
        LOADS_TABLE,
        metadata,
        sa.Column("load_id", sa.Integer, primary_key=True),
        sa.Column("source_file", sa.Text, nullable=False, index=True),
        sa.Column("source_sha256", sa.String(64), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("row_count", sa.Integer),
        *LOAD_RECORD_COLUMNS(),
    )
    load_id_default = sa.text(f"current_setting('{LOAD_ID_SETTING}')::integer")
    rows = sa.Table(
        TABLE,
        metadata,
        *(sa.Column(name, sa.Text) for name in columns),
        sa.Column(
            LOAD_ID_COLUMN,
            sa.Integer,
            nullable=False,
            server_default=load_id_default if postgresql else None,
        ),
    )
    # Finds an earlier load's rows. A load's rows are contiguous on PostgreSQL, where a BRIN
    # index costs COPY almost nothing (a B-tree halves its speed); SQLite ignores `using`.
    sa.Index(f"ix_{TABLE}_{LOAD_ID_COLUMN}", rows.c[LOAD_ID_COLUMN], postgresql_using="brin")
    if postgresql and not tables_current(sa.inspect(connection)):
        # Two first loads at once: one creates (or upgrades) the tables, the other waits.
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(lock_key(TABLE))))
    existing = sa.inspect(connection)
    if existing.has_table(LOADS_TABLE):
        upgrade_loads(connection, existing)
    added = []
    if existing.has_table(TABLE):
        have = [c["name"] for c in existing.get_columns(TABLE) if c["name"] != LOAD_ID_COLUMN]
        added = [name for name in columns if name not in have]
        if not add_columns and have != columns:
            missing = [name for name in have if name not in columns]
            raise BadInput(
                f"columns {columns} differ from table {TABLE}'s {have} (new: "
                f"{', '.join(added) or 'none'}; missing: {', '.join(missing) or 'none'}); "
                f"set {NEW_COLUMNS_SETTING}=add to add new columns"
            )
        # PostgreSQL: two loads adding a column take turns on the table's lock (SQLite's
        # loads always do); the second finds it there.
        if_new = "IF NOT EXISTS " if postgresql else ""
        for name in added:
            connection.exec_driver_sql(f"ALTER TABLE {TABLE} ADD COLUMN {if_new}{name} TEXT")
    metadata.create_all(connection)  # creates only what is missing
    return rows, loads, added


def LOAD_RECORD_COLUMNS() -> list[sa.Column]:  # noqa: N802 (fresh columns for each table)
    """The loads table's columns added with LOAD_MODE: the mode, and the later load that
    replaced this one's rows (NULL while they are in the table)."""
    return [sa.Column("load_mode", sa.Text), sa.Column("replaced_by", sa.Integer)]


def tables_current(existing: sa.Inspector) -> bool:
    """Both tables there, the loads table with every column this ingest.py records."""
    if not existing.has_table(TABLE) or not existing.has_table(LOADS_TABLE):
        return False
    have = {column["name"] for column in existing.get_columns(LOADS_TABLE)}
    return {column.name for column in LOAD_RECORD_COLUMNS()} <= have


def upgrade_loads(connection: sa.Connection, existing: sa.Inspector) -> None:
    """A loads table from before LOAD_MODE gets its columns; its loads are recorded as the
    mode they were made in, which stays the table's default (an update changes nothing)."""
    have = {column["name"] for column in existing.get_columns(LOADS_TABLE)}
    for column in LOAD_RECORD_COLUMNS():
        if column.name not in have:
            kind = column.type.compile(connection.dialect)
            connection.exec_driver_sql(f"ALTER TABLE {LOADS_TABLE} ADD COLUMN {column.name} {kind}")
            if column.name == "load_mode":
                connection.exec_driver_sql(
                    f"UPDATE {LOADS_TABLE} SET load_mode = '{EARLIER_LOAD_MODE}'"  # noqa: S608
                )


def default_load_mode(connection: sa.Connection, loads: sa.Table) -> str:
    """Unset, a table keeps the mode of its first load; a new table's is `append`."""
    first = sa.select(loads.c.load_mode).order_by(loads.c.load_id).limit(1)
    return connection.execute(first).scalar() or DEFAULT_LOAD_MODE


def lock_key(name: str) -> int:
    """A 64-bit advisory lock key for a name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def insert_into_sqlite(
    connection: sa.Connection, source: Path, table: Table, load_id: int
) -> int:
    """The rows straight into executemany; empty cells become NULL in SQL."""
    values = ", ".join(["nullif(?, '')"] * len(table.columns))
    columns = ", ".join([*table.columns, LOAD_ID_COLUMN])
    insert = f"INSERT INTO {TABLE} ({columns}) VALUES ({values}, {load_id:d})"  # noqa: S608
    cursor = connection.connection.cursor()  # the driver's own, in the same transaction
    try:
        cursor.executemany(insert, table.rows)
    except (sqlite3.ProgrammingError, csv.Error, UnicodeDecodeError) as error:
        raise BadInput(find_bad_row(source, table, error)) from None
    return cursor.rowcount


class NotAsCopyReadsIt(Exception):
    """COPY would read the file otherwise than the csv reader: a QUOTE=none file holds the
    byte COPY takes for its qualifier, or a value holds a qualifier after its first character
    (`5" laceration`, `12"`: data to the csv reader, the start of a quoted part to COPY)."""


def copy_into_postgresql(connection: sa.Connection, source: Path, table: Table) -> int:
    """COPY: plain delimited text's bytes for the server to parse, else the checked rows."""
    import psycopg  # the PostgreSQL driver: needed only here

    cursor = connection.connection.cursor()
    try:
        if table.plain_csv:
            try:
                with connection.begin_nested():  # undone, then row by row
                    return copy_text(cursor, source, table)
            except NotAsCopyReadsIt:
                table = checked(table)
        return copy_rows(cursor, table)
    except (psycopg.errors.DataError, csv.Error, UnicodeDecodeError) as error:
        raise BadInput(find_bad_row(source, table, error)) from None


def copy_rows(cursor: psycopg.Cursor, table: Table) -> int:
    columns = ", ".join(table.columns)
    with cursor.copy(f"COPY {TABLE} ({columns}) FROM STDIN") as copy:
        for row in table.rows:
            copy.write_row([value or None for value in row])
    return cursor.rowcount


def copy_text(cursor: psycopg.Cursor, source: Path, table: Table) -> int:
    """The file's data rows for the server to parse (COPY's CSV format with the file's
    delimiter and qualifier). Empty cells are NULL; quoted ones ("") too, as on SQLite
    (FORCE_NULL, which a file without a qualifier does not need)."""
    layout, columns = table.csv, ", ".join(table.columns)
    quote = NO_QUOTE_STANDIN if layout.quote is None else layout.quote
    force_null = "" if layout.quote is None else f", FORCE_NULL ({columns})"
    options = (
        f"FORMAT csv, DELIMITER {sql_character(layout.delimiter)}, "
        f"QUOTE {sql_character(quote)}{force_null}"
    )
    stand_in = NO_QUOTE_STANDIN.encode() if layout.quote is None else None
    qualifier, classes = quote.encode(), byte_classes(layout.delimiter, quote)
    inside = False  # the chunk starts inside a quoted value (one with a line end in it)
    with cursor.copy(f"COPY {TABLE} ({columns}) FROM STDIN ({options})") as copy:
        for chunk in end_markers_quoted(utf8_chunks(source, layout), qualifier):
            if stand_in is not None and stand_in in chunk:
                raise NotAsCopyReadsIt
            if stand_in is None and qualifier in chunk:
                if not read_alike(chunk.translate(classes), inside):
                    raise NotAsCopyReadsIt
                inside ^= chunk.count(qualifier) % 2 == 1
            copy.write(chunk)
    return cursor.rowcount


# Over a chunk's byte classes: outside a quoted value, a qualifier may open one only at a
# value's start (after a delimiter, a line end or another qualifier, or at the chunk's start,
# which is a line's). Anywhere else (`5" laceration`, `12"`, `a""b` unquoted) the csv reader
# keeps it as data where COPY would open a quoted part, and could join rows.
READ_ALIKE = re.compile(rb"(?:[^Q]*(?<![xR])Q[^Q]*Q)*(?:[^Q]*(?<![xR])Q)?[^Q]*")
INSIDE_TO_ITS_END = re.compile(rb"[^Q]*Q")


def read_alike(classes: bytes, inside: bool) -> bool:
    """Whether COPY reads the chunk's qualifiers as the csv reader does."""
    start = 0
    if inside and (closed := INSIDE_TO_ITS_END.match(classes)):
        start = closed.end()
    return READ_ALIKE.fullmatch(classes, start) is not None


def byte_classes(delimiter: str, quote: str) -> bytes:
    """A bytes.translate table: the qualifier to Q, the delimiter and line ends to D, N and
    R, any other byte to x (read by READ_ALIKE)."""
    table = bytearray(b"x" * 256)
    for character, name in ((delimiter, "D"), ("\n", "N"), ("\r", "R"), (quote, "Q")):
        for byte in character.encode():
            table[byte] = ord(name)
    return bytes(table)


# A line that is exactly `\.` ends COPY's data, in CSV format too, and the rows after it would
# be lost; quoted (`"\."`) it is the value `\.`.
END_MARKER = re.compile(rb"^\\\.(?=[\r\n]|\Z)", re.MULTILINE)


def end_markers_quoted(chunks: Iterable[bytes], quote: bytes) -> Iterator[bytes]:
    """The chunks cut at line ends, each line that is COPY's end marker quoted."""
    quotes = 0  # before the chunk: odd, it starts inside a quoted value
    for chunk in whole_lines(chunks):  # `in` a one-byte string is memchr: almost free
        if b"\\" in chunk and (chunk.startswith(b"\\.") or b"\n\\." in chunk):
            chunk = quote_markers(chunk, quote, quotes % 2 == 1)
        if quote in chunk:
            quotes += chunk.count(quote)
        yield chunk


def quote_markers(chunk: bytes, quote: bytes, inside: bool) -> bytes:
    """As in COPY, a line starts a row where the quotes before it are even (else it is
    inside a quoted value and stays as it is)."""
    parts, start = [], 0
    for marker in END_MARKER.finditer(chunk):
        inside ^= chunk.count(quote, start, marker.start()) % 2 == 1
        parts += [chunk[start : marker.start()], marker[0] if inside else quote + marker[0] + quote]
        start = marker.end()
    return b"".join([*parts, chunk[start:]])


def whole_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The same bytes, each chunk but the last ending with a line end."""
    rest: list[bytes] = []  # the start of a line the chunks so far end in
    for chunk in chunks:
        cut = chunk.rfind(b"\n") + 1
        if cut:
            yield b"".join([*rest, chunk[:cut]])
            rest = []
        rest.append(chunk[cut:])
    if last := b"".join(rest):
        yield last


def sql_character(character: str) -> str:
    """A one-character SQL string literal (E'\\x09' for a tab)."""
    if character.isprintable():
        return "'" + character.replace("'", "''") + "'"
    return f"E'\\x{ord(character):02x}'"


def utf8_chunks(path: Path, layout: CsvLayout) -> Iterator[bytes]:
    """The file's data rows, as UTF-8 (the connection's encoding)."""
    encoding = codecs.lookup(layout.encoding).name
    utf8 = encoding in ("utf-8", "utf-8-sig")  # sent as it is: the server checks it
    decoder = None if utf8 else codecs.getincrementaldecoder(encoding)()
    with Span(path, layout.offset, layout.end) as span, io.BufferedReader(span) as file:
        while chunk := file.read(COPY_CHUNK_BYTES):
            yield chunk if decoder is None else decoder.decode(chunk).encode()
        if decoder is not None:
            yield decoder.decode(b"", final=True).encode()


@dataclass
class Loaded:
    """What a load did: ingest.py prints it, and the flow shows it as an artifact."""

    mode: str
    rows: int
    sha256: str
    replaced: int = 0  # earlier loads whose rows this one replaced
    added: list[str] = field(default_factory=list)  # NEW_COLUMNS=add: columns added to the table
    same_as: int | None = None  # append: the earlier load of the same bytes (nothing added)


def load(source: Path, sha256: Sha256, engine: sa.Engine, settings: Settings) -> Loaded:
    """Load `source` into the table in one transaction, as its load mode says."""
    try:
        table = transformed(read_table(source, settings))
        return load_rows(source, sha256.result(), engine, table, settings)
    except BadInput as error:
        raise BadInput(f"{SOURCE_SETTING}={source}: {error}") from None


def transformed(table: Table) -> Table:
    """The table after transform.py (the team's code). When it hands the rows back as they
    came, the table is loaded as read (a plain CSV keeps its fast path)."""
    rows = checked(table).rows  # transform.py gets checked rows, as for any other file
    columns, new_rows = transform.transform(SOURCE, list(table.columns), rows)
    if new_rows is rows and columns == table.columns:
        return table
    for name in columns:
        if not COLUMN_NAME.fullmatch(name) or columns.count(name) > 1 or name == LOAD_ID_COLUMN:
            raise BadInput(f"transform.py returned column {name!r}: lowercase, _ and digits, unique")
    return Table(list(columns), table.first_row, fitted(new_rows, len(columns)))


def checked(table: Table) -> Table:
    """A plain text file's table with its rows checked as they are read (others are already)."""
    if not table.plain_csv:
        return table
    layout = table.csv
    rows = check_rows(table.rows, layout.width, layout.first, layout.last, table.first_row)
    return Table(table.columns, table.first_row, rows)


def fitted(rows: Iterable[Row], width: int) -> Iterator[Row]:
    for row in rows:
        if len(row) != width:
            raise BadInput(f"transform.py returned a row of {len(row)} values for {width} columns")
        yield row


def find_bad_row(source: Path, table: Table, error: Exception) -> str:
    """Why the database or the reader refused a CSV's rows: read them again, checking each.
    Returns the first bad row's message, or the database's own when every row fits (its
    `line N` counts from the first data row)."""
    if table.csv is None:
        raise error
    layout, encoding = table.csv, table.csv.encoding
    reader = csv_body(source, layout)
    try:
        for _ in check_rows(reader, layout.width, layout.first, layout.last, table.first_row):
            pass
    except BadInput as bad_row:
        return str(bad_row)
    except csv.Error as bad_csv:
        return f"row {table.first_row + reader.line_num - 1} is not valid CSV ({bad_csv})"
    except UnicodeDecodeError:
        return bad_line(source, encoding)
    if isinstance(error, UnicodeDecodeError):
        return bad_line(source, encoding)
    message = str(error).strip().splitlines()[0]
    line = re.search(r"line (\d+)", getattr(getattr(error, "diag", None), "context", "") or "")
    where = f"row {table.first_row + int(line.group(1)) - 1}: " if line else ""
    return f"{where}{message}"


def bad_line(path: Path, encoding: str) -> str:
    with path.open("rb") as file:
        for number, line in enumerate(file, start=1):
            try:
                line.decode(encoding)
            except UnicodeDecodeError as error:
                return not_encoded_as(encoding, number, error)
    return f"the file is not {encoding}"


def load_rows(
    source: Path, sha256: str, engine: sa.Engine, table: Table, settings: Settings
) -> Loaded:
    with engine.begin() as connection:  # SQLite: BEGIN IMMEDIATE, loads take turns
        postgresql = connection.dialect.name == "postgresql"
        rows, loads, added = sink_tables(connection, table.columns, settings.add_columns)
        mode = settings.load_mode or default_load_mode(connection, loads)
        if postgresql:  # loads of the same file take turns; other files load side by side
            key = {"append": sha256, "file": str(source), "snapshot": ""}[mode]
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(lock_key(f"{TABLE}\n{key}"))))
        current = loads.c.replaced_by.is_(None)
        if mode == "append":
            same = sa.select(loads.c.load_id).where(current, loads.c.source_sha256 == sha256)
            if (same_as := connection.execute(same.limit(1)).scalar()) is not None:
                return Loaded(mode, 0, sha256, same_as=same_as, added=added)
        replaced = [] if mode == "append" else connection.execute(
            sa.select(loads.c.load_id).where(current, *(
                [loads.c.source_file == str(source)] if mode == "file" else []
            ))
        ).scalars().all()
        load_id = connection.execute(
            loads.insert().values(
                source_file=str(source),
                source_sha256=sha256,
                loaded_at=dt.datetime.now(dt.timezone.utc),
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
        if postgresql:
            set_load_id = sa.select(sa.func.set_config(LOAD_ID_SETTING, str(load_id), True))
            connection.execute(set_load_id)  # true: for this transaction only
            loaded = copy_into_postgresql(connection, source, table)
        else:
            loaded = insert_into_sqlite(connection, source, table, load_id)
        connection.execute(
            loads.update().where(loads.c.load_id == load_id).values(row_count=loaded)
        )
    return Loaded(mode, loaded, sha256, replaced=len(replaced), added=added)


def print_summary(**fields: object) -> None:
    """The one JSON line the flow reads (no cell value is ever part of it)."""
    print(json.dumps({"summary": SUMMARY_KIND, "source": SOURCE, "table": TABLE, **fields}))


def main() -> int:
    started = time.monotonic()
    try:
        if not SOURCE_NAME.fullmatch(SOURCE):
            raise BadInput(f"source {SOURCE!r} is not a source name (lowercase words joined by -)")
        source = open_source(os.environ.get(SOURCE_SETTING))
        sha256 = Sha256(source)  # while the sink's driver is imported and the file read
        settings = read_settings()
        engine = open_sink(os.environ.get(SINK_SETTING))
        loaded = load(source, sha256, engine, settings)
    except BadInput as error:
        print(f"error: {error}", file=sys.stderr)
        print_summary(ok=False, error=str(error))
        return BAD_INPUT_EXIT_CODE
    except ImportError as missing:  # a reader or the driver, imported where used: as at the top
        hint = f"install requirements.txt into {sys.executable}"
        print(f"error: ingest.py cannot start: {missing} ({hint})", file=sys.stderr)
        return 69
    where = engine.url.render_as_string(hide_password=True)
    if loaded.same_as is not None:
        print(
            f"loaded 0 rows: {source} has the same bytes as load {loaded.same_as}, already in "
            f"table {TABLE} at {where} ({LOAD_MODE_SETTING}={loaded.mode})"
        )
    else:
        replaced = f", replacing the rows of {loaded.replaced} earlier load(s)" if loaded.replaced else ""
        print(
            f"loaded {loaded.rows} rows from {source} into table {TABLE} at {where} "
            f"({LOAD_MODE_SETTING}={loaded.mode}{replaced})"
        )
    print_summary(
        ok=True,
        file=source.name,
        path=str(source),
        size_bytes=source.stat().st_size,
        sha256=loaded.sha256,
        rows=loaded.rows,
        mode=loaded.mode,
        same_as_load=loaded.same_as,
        replaced_loads=loaded.replaced,
        columns_added=loaded.added,
        seconds=round(time.monotonic() - started, 3),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
