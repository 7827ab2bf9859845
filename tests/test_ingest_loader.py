"""The baked ingest.py on both databases: SQLite and a real PostgreSQL (the newest installed,
started by the tests).

Every test runs `python ingest.py` as the flow does, on files made here: the same guarantees
(idempotent, atomic, text as in the file, NULL for empty cells, concurrent loads) and the
real-world exports (table not at A1, notes above the header, sheets, cp1252) on both sinks.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from openpyxl import Workbook
from pytest_cookies.plugin import Cookies
from support.baking import INGEST_TEMPLATE_DIR, SINK_SETTING, SOURCE_SETTING, TABLE
from support.services import PostgresServer

BAD_INPUT = 65
SHEET_SETTING = "CLINIC_CAL_EPIC_SHEET"
HEADER_ROW_SETTING = "CLINIC_CAL_EPIC_HEADER_ROW"
ENCODING_SETTING = "CLINIC_CAL_EPIC_ENCODING"
HEADER = ["mrn", "name", "note"]
ROWS = [
    ["00012345", "Zoë Ångström", "plain"],
    ["00000007", "李小龍 🙂", 'says "hi", twice'],
    ["12", "Ms. O'Neil", "line one\nline two\r\nline three"],
]
# XML turns a CR LF into LF (xlsx cells keep \r only as _x000D_, which openpyxl does not write).
XLSX_ROWS = [[value.replace("\r\n", "\n") for value in row] for row in ROWS]


@dataclass
class Sink:
    """A database ingest.py writes to: its URL and a way to read a table back."""

    url: str
    query: Callable[[str], list[tuple]]

    def rows(self, table: str = TABLE) -> list[tuple]:
        """Every row but _load_id, in a stable order."""
        found = self.query(f"SELECT * FROM {table}")  # noqa: S608 (our own table name)
        return sorted((tuple(row[:-1]) for row in found), key=repr)

    def loads(self) -> list[tuple]:
        return sorted(self.query(f"SELECT source_file, row_count FROM {TABLE}_loads"))  # noqa: S608


@pytest.fixture(scope="module")
def project(cookies_session: Cookies) -> Path:
    """One baked project (PostgreSQL answer: psycopg in its requirements); its ingest.py
    reads either format."""
    answers = {"dependency_manager": "none", "database": "postgresql"}
    result = cookies_session.bake(extra_context=answers, template=INGEST_TEMPLATE_DIR)
    assert result.exit_code == 0, result.exception
    return result.project_path


@pytest.fixture(params=["sqlite", "postgresql"])
def sink(request: pytest.FixtureRequest, tmp_path: Path) -> Sink:
    if request.param == "sqlite":
        database = tmp_path / "sink" / "warehouse.db"

        def query_sqlite(sql: str) -> list[tuple]:
            with sqlite3.connect(database) as connection:
                return connection.execute(sql).fetchall()

        return Sink(f"sqlite:///{database}", query_sqlite)
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = server.create_database()
    return Sink(server.url(name), lambda sql: server.query(name, sql))


def ingest_env(source: Path, sink: Sink, **settings: str) -> dict[str, str]:
    return {**os.environ, SOURCE_SETTING: str(source), SINK_SETTING: sink.url, **settings}


def ingest(project: Path, source: Path, sink: Sink, **settings: str):
    return subprocess.run(
        [sys.executable, "ingest.py"],
        cwd=project,
        env=ingest_env(source, sink, **settings),
        capture_output=True,
        text=True,
        timeout=120,
    )


def rejected(result: subprocess.CompletedProcess[str], source: Path) -> str:
    """The one error line of a rejected load, checked: exit 65, `error: SETTING=path: `."""
    assert result.returncode == BAD_INPUT, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    prefix = f"error: {SOURCE_SETTING}={source}: "
    assert lines[0].startswith(prefix), lines[0]
    return lines[0].removeprefix(prefix)


def write_csv(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    import csv

    with path.open("w", newline="", encoding=encoding) as file:
        csv.writer(file).writerows(rows)
    return path


def write_xlsx(path: Path, sheets: dict[str, dict[str, object]], hidden: set[str] = frozenset()):
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


# --- the guarantees, on both databases --------------------------------------------------------


def test_text_exactly_as_in_the_file(project: Path, sink: Sink, tmp_path: Path) -> None:
    """Leading zeros, unicode, quotes and embedded newlines (LF and CRLF) survive as text."""
    source = write_csv(tmp_path / "patients.csv", [HEADER, *ROWS])
    result = ingest(project, source, sink)
    assert result.returncode == 0, result.stderr
    assert "loaded 3 rows" in result.stdout
    assert sink.rows() == sorted(map(tuple, ROWS), key=repr)


def test_empty_cells_are_null(project: Path, sink: Sink, tmp_path: Path) -> None:
    source = tmp_path / "gaps.csv"
    source.write_text('mrn,name,note\n001,,x\n002,"",\n003, ,"  "\n')
    assert ingest(project, source, sink).returncode == 0
    assert sink.rows() == [("001", None, "x"), ("002", None, None), ("003", " ", "  ")]


@pytest.mark.parametrize("suffix", ["csv", "xlsx"])
def test_rerun_replaces_the_earlier_load(
    project: Path, sink: Sink, tmp_path: Path, suffix: str
) -> None:
    source = tmp_path / f"export.{suffix}"
    if suffix == "csv":
        write_csv(source, [HEADER, *ROWS])
    else:
        write_xlsx(source, {"Export": table_at("A1", [HEADER, *XLSX_ROWS])})
    assert ingest(project, source, sink).returncode == 0
    first = sink.rows()
    assert ingest(project, source, sink).returncode == 0
    assert sink.rows() == first and len(first) == 3
    assert sink.loads() == [(str(source), 3)]


def test_bad_row_fails_the_whole_load(project: Path, sink: Sink, tmp_path: Path) -> None:
    """A file already loaded is replaced by one with a short row after a multi-line cell:
    one line naming the row as a spreadsheet counts it, and the earlier rows stay."""
    source = write_csv(tmp_path / "export.csv", [HEADER, *ROWS])
    assert ingest(project, source, sink).returncode == 0
    before = sink.rows()
    rows = [HEADER, *ROWS, *([f"{n:05}", "x", "y"] for n in range(10)), ["99", "short"]]
    write_csv(source, rows)
    assert (
        rejected(ingest(project, source, sink), source) == "row 15 has 2 values, the header has 3"
    )
    assert sink.rows() == before
    assert sink.loads() == [(str(source), 3)]


def test_a_bad_row_below_a_note_is_counted_from_the_top(
    project: Path, sink: Sink, tmp_path: Path
) -> None:
    source = write_csv(
        tmp_path / "export.csv",
        [["Clinic report, Nov 2026"], [], HEADER, ["1", "a", "b"], ["2", "a", "b", "extra"]],
    )
    message = rejected(ingest(project, source, sink, **{HEADER_ROW_SETTING: "3"}), source)
    assert message == "row 5 has 4 values, the header has 3"


def test_another_schema_is_refused(project: Path, sink: Sink, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "export.csv", [HEADER, *ROWS])
    assert ingest(project, source, sink).returncode == 0
    other = write_csv(tmp_path / "other.csv", [["mrn", "name", "ward"], ["1", "a", "b"]])
    message = rejected(ingest(project, other, sink), other)
    assert message.startswith("columns ['mrn', 'name', 'ward'] differ from table")
    assert len(sink.rows()) == 3


def big_csv(path: Path, mrn_prefix: str, rows: int = 30_000) -> Path:
    lines = ["mrn,name,note"] + [f"{mrn_prefix}{n:07},Patient {n},note {n}" for n in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def start(project: Path, source: Path, sink: Sink) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "ingest.py"],
        cwd=project,
        env=ingest_env(source, sink),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_files_at_once_both_land(project: Path, sink: Sink, tmp_path: Path) -> None:
    sources = [big_csv(tmp_path / f"{name}.csv", name) for name in ("a", "b")]
    assert ingest(project, sources[0], sink).returncode == 0  # the tables exist
    runs = [start(project, source, sink) for source in sources]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert sink.query(f"SELECT count(*) FROM {TABLE}") == [(60_000,)]  # noqa: S608
    assert sink.loads() == [(str(sources[0]), 30_000), (str(sources[1]), 30_000)]


@pytest.mark.parametrize("loaded_before", [False, True], ids=["empty-warehouse", "reload"])
def test_the_same_file_twice_at_once_leaves_one_copy(
    project: Path, sink: Sink, tmp_path: Path, loaded_before: bool
) -> None:
    """On an empty warehouse the two first loads also create the tables once."""
    source = big_csv(tmp_path / "a.csv", "a")
    if loaded_before:
        assert ingest(project, source, sink).returncode == 0
    runs = [start(project, source, sink) for _ in range(2)]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert sink.query(f"SELECT count(*), count(DISTINCT mrn) FROM {TABLE}") == [(30_000, 30_000)]  # noqa: S608
    assert sink.loads() == [(str(source), 30_000)]


# --- real-world exports -----------------------------------------------------------------------


def test_table_at_b4_loads(project: Path, sink: Sink, tmp_path: Path) -> None:
    source = write_xlsx(tmp_path / "b4.xlsx", {"Report": table_at("B4", [HEADER, *XLSX_ROWS])})
    result = ingest(project, source, sink)
    assert result.returncode == 0, result.stderr
    assert sink.rows() == sorted(map(tuple, XLSX_ROWS), key=repr)


def test_note_above_the_header_needs_the_header_row(
    project: Path, sink: Sink, tmp_path: Path
) -> None:
    cells = {"A1": "Appointments, printed 2026-11-27", **table_at("A3", [HEADER, *XLSX_ROWS])}
    source = write_xlsx(tmp_path / "noted.xlsx", {"Report": cells})
    message = rejected(ingest(project, source, sink), source)
    assert message == (
        "cell B3 has a value outside the header's columns A to A; "
        f"if the header is on another row, set {HEADER_ROW_SETTING}"
    )
    result = ingest(project, source, sink, **{HEADER_ROW_SETTING: "3"})
    assert result.returncode == 0, result.stderr
    assert sink.rows() == sorted(map(tuple, XLSX_ROWS), key=repr)


def test_csv_with_a_title_and_an_empty_first_column(
    project: Path, sink: Sink, tmp_path: Path
) -> None:
    rows = [["Report"], ["", "", "", ""], ["", *HEADER], *(["", *row] for row in ROWS)]
    source = write_csv(tmp_path / "report.csv", rows)
    result = ingest(project, source, sink, **{HEADER_ROW_SETTING: "3"})
    assert result.returncode == 0, result.stderr
    assert sink.rows() == sorted(map(tuple, ROWS), key=repr)


def test_the_sheet_setting_picks_a_sheet(project: Path, sink: Sink, tmp_path: Path) -> None:
    sheets = {
        "Summary": table_at("A1", [["total"], ["3"]]),
        "Patients": table_at("A1", [HEADER, *XLSX_ROWS]),
    }
    source = write_xlsx(tmp_path / "sheets.xlsx", sheets)
    result = ingest(project, source, sink, **{SHEET_SETTING: "Patients"})
    assert result.returncode == 0, result.stderr
    assert sink.rows() == sorted(map(tuple, XLSX_ROWS), key=repr)


def test_the_first_visible_sheet_is_the_default(project: Path, sink: Sink, tmp_path: Path) -> None:
    sheets = {
        "Lookup": table_at("A1", [["code", "label"], ["1", "one"]]),
        "Patients": table_at("A1", [HEADER, *XLSX_ROWS]),
    }
    source = write_xlsx(tmp_path / "hidden.xlsx", sheets, hidden={"Lookup"})
    result = ingest(project, source, sink)
    assert result.returncode == 0, result.stderr
    assert sink.rows() == sorted(map(tuple, XLSX_ROWS), key=repr)


def test_an_unknown_sheet_names_the_sheets_there_are(
    project: Path, sink: Sink, tmp_path: Path
) -> None:
    sheets = {"Lookup": {"A1": "x"}, "Patients": table_at("A1", [HEADER, *ROWS])}
    source = write_xlsx(tmp_path / "sheets.xlsx", sheets, hidden={"Lookup"})
    message = rejected(ingest(project, source, sink, **{SHEET_SETTING: "Visits"}), source)
    assert message == (
        f"no sheet 'Visits' ({SHEET_SETTING}); the workbook has 'Lookup' (hidden), 'Patients'"
    )


def test_an_empty_header_cell_is_named(project: Path, sink: Sink, tmp_path: Path) -> None:
    header = ["mrn", None, "note"]
    source = write_xlsx(tmp_path / "gap.xlsx", {"Report": table_at("B4", [header, *ROWS])})
    assert rejected(ingest(project, source, sink), source) == "header cell C4 is empty"


def test_a_cp1252_csv_loads_with_its_encoding(project: Path, sink: Sink, tmp_path: Path) -> None:
    rows = [HEADER, ["00042", "Zoë Müller", "café – 5 €"]]
    source = write_csv(tmp_path / "windows.csv", rows, encoding="cp1252")
    message = rejected(ingest(project, source, sink), source)
    assert message == (
        f"line 2 is not utf-8-sig (byte b'\\xeb'); set {ENCODING_SETTING} to the file's "
        "encoding, e.g. cp1252"
    )
    result = ingest(project, source, sink, **{ENCODING_SETTING: "cp1252"})
    assert result.returncode == 0, result.stderr
    assert sink.rows() == [("00042", "Zoë Müller", "café – 5 €")]


@pytest.mark.parametrize(
    ("setting", "value", "reason"),
    [
        (HEADER_ROW_SETTING, "three", "not a row number (1, 2, ...)"),
        (HEADER_ROW_SETTING, "0", "not a row number (1, 2, ...)"),
        (ENCODING_SETTING, "klingon", "unknown encoding"),
    ],
)
def test_a_bad_setting_is_refused(
    project: Path, sink: Sink, tmp_path: Path, setting: str, value: str, reason: str
) -> None:
    source = write_csv(tmp_path / "export.csv", [HEADER, *ROWS])
    result = ingest(project, source, sink, **{setting: value})
    assert result.returncode == BAD_INPUT
    assert result.stderr == f"error: {setting}={value}: {reason}\n"


def test_another_suffix_is_refused(project: Path, sink: Sink, tmp_path: Path) -> None:
    source = tmp_path / "export.json"
    source.write_text("mrn\n1\n")
    message = rejected(ingest(project, source, sink), source)
    assert message == (
        "cannot read a .json file: the source must be one of "
        ".csv .txt .tsv .psv .dat .xlsx .xlsm .xls .xlsb .ods"
    )
