"""Load the {{ cookiecutter.source_name }} export into the warehouse.

Source: the {{ cookiecutter.source_format }} file named by {{ cookiecutter.__source_setting }}.
Sink:   table `{{ cookiecutter.__table_name }}` at the SQLAlchemy URL in {{ cookiecutter.__sink_setting }}
        (a SQLite file by default). Each row has the source's columns, as text, plus
        `_load_id`, which points into `{{ cookiecutter.__table_name }}_loads`: one row per load
        with the file's absolute path, SHA-256, load time and row count.

The load is
- streamed: rows go to the database in batches, so memory stays flat on large files;
- idempotent: an earlier load of the same file (same absolute path) is replaced, so
  re-running a file never duplicates rows, while files in other folders or with other
  names add their rows;
- atomic: one transaction, so a failure half-way leaves the table as it was.

- memory: a CSV is read row by row; an xlsx sheet is read whole by calamine (about
  0.7 KB per row of 8 columns; a sheet holds at most 1,048,576 rows).

Exit codes: 0 loaded; 65 bad input (missing, unreadable or malformed file, bad setting),
printed as one line on stderr; anything else is another failure (e.g. the database is
down), which the flow retries.
"""

from __future__ import annotations

{% if cookiecutter.source_format == "csv" -%}
import csv
{% endif -%}
import datetime as dt
import hashlib
import os
import re
import sys
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

import sqlalchemy as sa
{% if cookiecutter.source_format == "xlsx" -%}
from python_calamine import CalamineError, CalamineWorkbook
{% endif %}
SOURCE_SETTING = "{{ cookiecutter.__source_setting }}"
SINK_SETTING = "{{ cookiecutter.__sink_setting }}"
TABLE = "{{ cookiecutter.__table_name }}"
LOADS_TABLE = f"{TABLE}_loads"
LOAD_ID_COLUMN = "_load_id"
BATCH_ROWS = 10_000
BAD_INPUT_EXIT_CODE = 65  # EX_DATAERR: no tool in the shell step uses it (uv and pipenv use 1 and 2)

Row = list[str | None]


class BadInput(Exception):
    """The source file or a setting is missing, unreadable or malformed (exit code 65)."""


def column_names(header: Row) -> list[str]:
    """Turn the header row into unique lowercase column names (`Visit Type` -> `visit_type`)."""
    names = []
    for position, title in enumerate(header, start=1):
        name = re.sub(r"[^a-z0-9]+", "_", (title or "").strip().lower()).strip("_")
        if not name:
            raise BadInput(f"header column {position} is empty")
        if name[0].isdigit():
            name = f"c_{name}"
        if name in names or name.startswith("_"):
            raise BadInput(f"header column {position} {title!r} repeats or clashes with {name!r}")
        names.append(name)
    return names
{% if cookiecutter.source_format == "csv" %}

def read_rows(path: Path) -> Iterator[Row]:
    """Yield the CSV's rows (header first) as text, empty cells as None."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            for row in csv.reader(file, strict=True):
                yield [value or None for value in row]
    except (csv.Error, UnicodeDecodeError) as error:
        raise BadInput(f"not a UTF-8 CSV file ({error})") from error
{% else %}

def cell_text(value: object) -> str | None:
    """Store every cell as text: whole numbers without `.0`, dates in ISO 8601."""
    if type(value) is str:  # the common case first: this runs once per cell
        return value or None
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    if isinstance(value, dt.date | dt.time):  # datetime is a date
        return value.isoformat()
    return None if value is None else str(value)


def read_rows(path: Path) -> Iterator[Row]:
    """Yield the first sheet's rows (header first) as text, empty cells as None."""
    try:
        sheet = CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0)
        for row in sheet.iter_rows():
            yield list(map(cell_text, row))
    except CalamineError as error:
        raise BadInput(f"not a readable xlsx workbook ({error})") from error
{% endif %}

def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    sqlite = url.get_backend_name() == "sqlite"
    if sqlite and url.database not in (None, "", ":memory:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    # Positional parameters let the driver's executemany take rows as plain tuples, several
    # times faster than SQLAlchemy building a dict per row.
    return sa.create_engine(url, paramstyle="qmark" if sqlite else "format")


def sink_tables(engine: sa.Engine, columns: list[str]) -> tuple[sa.Table, sa.Table]:
    """The rows table and its loads table, created on the first load. A later file must
    have the same columns."""
    metadata = sa.MetaData()
    loads = sa.Table(
        LOADS_TABLE,
        metadata,
        sa.Column("load_id", sa.Integer, primary_key=True),
        sa.Column("source_file", sa.Text, nullable=False, index=True),
        sa.Column("source_sha256", sa.String(64), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("row_count", sa.Integer),
    )
    rows = sa.Table(
        TABLE,
        metadata,
        *(sa.Column(name, sa.Text) for name in columns),
        sa.Column(LOAD_ID_COLUMN, sa.Integer, nullable=False, index=True),
    )
    existing = sa.inspect(engine)
    if existing.has_table(TABLE):
        have = [column["name"] for column in existing.get_columns(TABLE)]
        if have != [column.name for column in rows.columns]:
            raise BadInput(f"columns {columns} differ from table {TABLE}'s {have[:-1]}")
    metadata.create_all(engine)  # creates only what is missing
    return rows, loads


def checked_rows(rows: Iterable[Row], width: int, load_id: int) -> Iterator[tuple]:
    """Each row with its load id appended, once it is known to fit the header."""
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        if len(row) != width:
            raise BadInput(f"row {line} has {len(row)} values, the header has {width}")
        yield (*row, load_id)


def load(source: Path, engine: sa.Engine) -> int:
    """Replace the rows of `source` in the table, in one transaction. Returns rows loaded."""
    try:
        return load_rows(source, engine)
    except BadInput as error:
        raise BadInput(f"{SOURCE_SETTING}={source}: {error}") from None


def load_rows(source: Path, engine: sa.Engine) -> int:
    rows = read_rows(source)
    header = next(rows, None)
    if header is None:
        raise BadInput("file is empty (no header row)")
    columns = column_names(header)
    table, loads = sink_tables(engine, columns)
    insert = str(table.insert().compile(dialect=engine.dialect))  # every column, in order
    loaded = 0
    with engine.begin() as connection:
        earlier = sa.select(loads.c.load_id).where(loads.c.source_file == str(source))
        connection.execute(table.delete().where(table.c[LOAD_ID_COLUMN].in_(earlier)))
        connection.execute(loads.delete().where(loads.c.source_file == str(source)))
        load_id = connection.execute(
            loads.insert().values(
                source_file=str(source),
                source_sha256=sha256_of(source),
                loaded_at=dt.datetime.now(dt.timezone.utc),
            )
        ).inserted_primary_key[0]
        cursor = connection.connection.cursor()  # the driver's own, in the same transaction
        rows_to_insert = checked_rows(rows, len(columns), load_id)
        while batch := list(islice(rows_to_insert, BATCH_ROWS)):
            cursor.executemany(insert, batch)
            loaded += len(batch)
        connection.execute(
            loads.update().where(loads.c.load_id == load_id).values(row_count=loaded)
        )
    return loaded


def main() -> int:
    try:
        source = open_source(os.environ.get(SOURCE_SETTING))
        engine = open_sink(os.environ.get(SINK_SETTING))
        loaded = load(source, engine)
    except BadInput as error:
        print(f"error: {error}", file=sys.stderr)
        return BAD_INPUT_EXIT_CODE
    where = engine.url.render_as_string(hide_password=True)
    print(f"loaded {loaded} rows from {source} into table {TABLE} at {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
