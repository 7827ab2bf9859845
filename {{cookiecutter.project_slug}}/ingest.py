"""Load the {{ cookiecutter.source_name }} export into the warehouse.

Source: the {{ cookiecutter.source_format }} file named by {{ cookiecutter.__source_setting }}.
Sink:   table `{{ cookiecutter.__table_name }}` at the SQLAlchemy URL in {{ cookiecutter.__sink_setting }}
        (a SQLite file by default).

The load is
- streamed: rows go to the database in batches, so memory stays flat on large files;
- idempotent: rows from an earlier load of a file with the same name are replaced,
  so re-running a file never duplicates rows;
- atomic: one transaction, so a failure half-way leaves the table as it was.

Exit codes: 0 loaded; 2 bad input (missing, unreadable or malformed file, bad setting),
printed as one line on stderr; 1 anything else (e.g. the database is down).
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
BATCH_ROWS = 5_000
# Bookkeeping columns added to every row, after the source's own columns.
SOURCE_FILE_COLUMN = "_source_file"
SOURCE_SHA256_COLUMN = "_source_sha256"
LOADED_AT_COLUMN = "_loaded_at"

Row = list[str | None]


class BadInput(Exception):
    """The source file or a setting is missing, unreadable or malformed (exit code 2)."""


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
                yield [value if value != "" else None for value in row]
    except (csv.Error, UnicodeDecodeError) as error:
        raise BadInput(f"not a UTF-8 CSV file ({error})") from error
{% else %}

def cell_text(value: object) -> str | None:
    """Store every cell as text: whole numbers without `.0`, dates in ISO 8601."""
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.date | dt.time | dt.datetime):
        return value.isoformat()
    return str(value)


def read_rows(path: Path) -> Iterator[Row]:
    """Yield the first sheet's rows (header first) as text, empty cells as None."""
    try:
        sheet = CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0)
        for row in sheet.iter_rows():
            yield [cell_text(value) for value in row]
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
    path = Path(setting)
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
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    return sa.create_engine(url)


def sink_table(engine: sa.Engine, columns: list[str]) -> sa.Table:
    """The target table, created on first load; a later file must have the same columns."""
    metadata = sa.MetaData()
    table = sa.Table(
        TABLE,
        metadata,
        *(sa.Column(name, sa.Text) for name in columns),
        sa.Column(SOURCE_FILE_COLUMN, sa.Text, nullable=False, index=True),
        sa.Column(SOURCE_SHA256_COLUMN, sa.String(64), nullable=False),
        sa.Column(LOADED_AT_COLUMN, sa.DateTime(timezone=True), nullable=False),
    )
    existing = sa.inspect(engine)
    if existing.has_table(TABLE):
        have = [column["name"] for column in existing.get_columns(TABLE)]
        if have != [column.name for column in table.columns]:
            raise BadInput(f"columns {columns} differ from table {TABLE}'s {have[:-3]}")
    else:
        metadata.create_all(engine)
    return table


def batches(rows: Iterable[Row], width: int, extra: dict[str, object]) -> Iterator[list[tuple]]:
    """Group rows for executemany, checking each has exactly the header's width."""
    numbered = enumerate(rows, start=2)  # row 1 is the header
    while chunk := list(islice(numbered, BATCH_ROWS)):
        for line, row in chunk:
            if len(row) != width:
                raise BadInput(f"row {line} has {len(row)} values, the header has {width}")
        yield [(*row, *extra.values()) for _, row in chunk]


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
    table = sink_table(engine, columns)
    extra = {
        SOURCE_FILE_COLUMN: source.name,
        SOURCE_SHA256_COLUMN: sha256_of(source),
        LOADED_AT_COLUMN: dt.datetime.now(dt.UTC),
    }
    names = [*columns, *extra]
    insert = table.insert()
    loaded = 0
    with engine.begin() as connection:
        connection.execute(table.delete().where(table.c[SOURCE_FILE_COLUMN] == source.name))
        for batch in batches(rows, len(columns), extra):
            connection.execute(insert, [dict(zip(names, row, strict=True)) for row in batch])
            loaded += len(batch)
    return loaded


def main() -> int:
    try:
        source = open_source(os.environ.get(SOURCE_SETTING))
        engine = open_sink(os.environ.get(SINK_SETTING))
        loaded = load(source, engine)
    except BadInput as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    where = engine.url.render_as_string(hide_password=True)
    print(f"loaded {loaded} rows from {source} into table {TABLE} at {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
