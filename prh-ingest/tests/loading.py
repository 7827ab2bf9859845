"""Loading in-process, as `python ingest.py` does: the package's `prh_ingest.load.main` with
the project `clinic-cal` and its source `epic`, the environment a test gives it, and its
exit code and output captured. Also the files the tests write and the sinks they read."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from openpyxl import Workbook
from postgres import PostgresServer
from prh_ingest import load, naming

PROJECT = "clinic-cal"
SOURCE = "epic"
TABLE = naming.table_name(PROJECT, SOURCE)
SOURCE_SETTING = naming.source_setting(PROJECT, SOURCE)
SINK_SETTING = naming.sink_setting(PROJECT)
KEY = naming.source_key(PROJECT, SOURCE)
SHEET_SETTING = f"{KEY}_SHEET"
HEADER_ROW_SETTING = f"{KEY}_HEADER_ROW"
ENCODING_SETTING = f"{KEY}_ENCODING"
DELIMITER_SETTING = f"{KEY}_DELIMITER"
QUOTE_SETTING = f"{KEY}_QUOTE"
FOOTER_ROWS_SETTING = f"{KEY}_FOOTER_ROWS"
LOAD_MODE_SETTING = f"{KEY}_LOAD_MODE"
NEW_COLUMNS_SETTING = f"{KEY}_NEW_COLUMNS"
BAD_INPUT = 65
CANNOT_START = 69


@dataclass
class Sink:
    """A database the loader writes to: its URL and a way to read a table back."""

    url: str
    query: Callable[[str], list[tuple]]

    def rows(self, table: str = TABLE) -> list[tuple]:
        """Every row but _load_id, in a stable order."""
        found = self.query(f"SELECT * FROM {table}")  # noqa: S608 (our own table name)
        return sorted((tuple(row[:-1]) for row in found), key=repr)

    def loads(self) -> list[tuple]:
        return sorted(self.query(f"SELECT source_file, row_count FROM {TABLE}_loads"))  # noqa: S608


def postgres_sink(server: PostgresServer) -> Sink:
    """A warehouse of its own on the session's PostgreSQL: a new schema."""
    schema = server.create_schema()
    return Sink(server.url(schema), lambda sql: server.query(schema, sql))


@dataclass
class Result:
    """What `python ingest.py` would have shown: its exit code and output."""

    returncode: int
    stdout: str
    stderr: str


def unchanged(source: str, columns: list[str], rows):  # noqa: ANN001, ANN201 (transform.py's default)
    return columns, rows


def ingest_env(source: Path, sink: Sink, **settings: str) -> dict[str, str]:
    return {SOURCE_SETTING: str(source), SINK_SETTING: sink.url, **settings}


@contextlib.contextmanager
def environment(settings: dict[str, str]) -> Iterator[None]:
    """The loader's settings in os.environ for the while (other <PREFIX>_ settings removed)."""
    kept = {name: value for name, value in os.environ.items() if not name.startswith(f"{KEY}_")}
    with mock.patch.dict(os.environ, {**kept, **settings}, clear=True):
        yield


def ingest(source: Path, sink: Sink, *argv: str, transform=unchanged, **settings: str) -> Result:  # noqa: ANN001
    """One load, in this process, as `python ingest.py [argv]` with these settings."""
    out, err = io.StringIO(), io.StringIO()
    with (
        environment(ingest_env(source, sink, **settings)),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            code = load.main(PROJECT, SOURCE, transform, list(argv))
        except SystemExit as exit_:  # as the interpreter reports it
            code = exit_.code if isinstance(exit_.code, int) else 1
            if isinstance(exit_.code, str):
                print(exit_.code, file=sys.stderr)
    return Result(code, out.getvalue(), err.getvalue())


def rejected(result: Result, source: Path) -> str:
    """The one error line of a rejected load, checked: exit 65, `error: SETTING=path: `."""
    assert result.returncode == BAD_INPUT, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    prefix = f"error: {SOURCE_SETTING}={source}: "
    assert lines[0].startswith(prefix), lines[0]
    return lines[0].removeprefix(prefix)


# Another process, for loads at the same time: the same entry point a project's ingest.py calls.
INGEST_PROCESS = f"""
import sys
from prh_ingest.load import main
sys.exit(main({PROJECT!r}, {SOURCE!r}, lambda source, columns, rows: (columns, rows), sys.argv[1:]))
"""


def start(source: Path, sink: Sink, **settings: str):  # noqa: ANN201
    import subprocess

    return subprocess.Popen(
        [sys.executable, "-c", INGEST_PROCESS],
        env={**os.environ, **ingest_env(source, sink, **settings)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def write_csv(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    with path.open("w", newline="", encoding=encoding) as file:
        csv.writer(file).writerows(rows)
    return path


def write_xlsx(path: Path, sheets: dict[str, dict[str, object]], hidden: set[str] = frozenset()):  # noqa: ANN201
    """A workbook with one sheet per entry: {"A1": value, ...} cells."""
    workbook = Workbook()
    workbook.remove(workbook.active)
    for name, cells in sheets.items():
        sheet = workbook.create_sheet(name)
        for cell, value in cells.items():
            sheet[cell] = value
        if name in hidden:
            sheet.sheet_state = "hidden"
    workbook.save(path)
    return path


def table_at(corner: str, rows: list[list[object]]) -> dict[str, object]:
    """Cells of *rows* placed with their top-left cell at *corner* (e.g. "B4")."""
    column = ord(corner[0]) - ord("A")
    row = int(corner[1:])
    return {
        f"{chr(ord('A') + column + c)}{row + r}": value
        for r, values in enumerate(rows)
        for c, value in enumerate(values)
        if value is not None
    }
