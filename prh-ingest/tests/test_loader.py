"""The loader on both databases: SQLite and a real PostgreSQL (the newest installed, started
by the tests).

Every test loads as `python ingest.py` does (prh_ingest.load.main, in this process), on files
made here: the same guarantees (idempotent, atomic, text as in the file, NULL for empty
cells, concurrent loads) and the real-world exports (table not at A1, notes above the header,
sheets, cp1252) on both sinks.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from loading import (
    BAD_INPUT,
    CANNOT_START,
    ENCODING_SETTING,
    HEADER_ROW_SETTING,
    INGEST_PROCESS,
    PROJECT,
    SHEET_SETTING,
    SINK_SETTING,
    SOURCE,
    SOURCE_SETTING,
    TABLE,
    Sink,
    ingest,
    postgres_sink,
    rejected,
    start,
    table_at,
    write_csv,
    write_xlsx,
)
from postgres import PostgresServer

HEADER = ["mrn", "name", "note"]
ROWS = [
    ["00012345", "Zoë Ångström", "plain"],
    ["00000007", "李小龍 🙂", 'says "hi", twice'],
    ["12", "Ms. O'Neil", "line one\nline two\r\nline three"],
]
# XML turns a CR LF into LF (xlsx cells keep \r only as _x000D_, which openpyxl does not write).
XLSX_ROWS = [[value.replace("\r\n", "\n") for value in row] for row in ROWS]


# --- the guarantees, on both databases --------------------------------------------------------


def test_text_exactly_as_in_the_file(sink: Sink, tmp_path: Path) -> None:
    """Leading zeros, unicode, quotes and embedded newlines (LF and CRLF) survive as text."""
    source = write_csv(tmp_path / "patients.csv", [HEADER, *ROWS])
    result = ingest(source, sink)
    assert result.returncode == 0, result.stderr
    assert "loaded 3 rows" in result.stdout
    assert sink.rows() == sorted(map(tuple, ROWS), key=repr)


def test_empty_cells_are_null(sink: Sink, tmp_path: Path) -> None:
    source = tmp_path / "gaps.csv"
    source.write_text('mrn,name,note\n001,,x\n002,"",\n003, ,"  "\n')
    assert ingest(source, sink).returncode == 0
    assert sink.rows() == [("001", None, "x"), ("002", None, None), ("003", " ", "  ")]


@pytest.mark.parametrize("suffix", ["csv", "xlsx"])
def test_rerun_replaces_the_earlier_load(sink: Sink, tmp_path: Path, suffix: str) -> None:
    source = tmp_path / f"export.{suffix}"
    if suffix == "csv":
        write_csv(source, [HEADER, *ROWS])
    else:
        write_xlsx(source, {"Export": table_at("A1", [HEADER, *XLSX_ROWS])})
    assert ingest(source, sink).returncode == 0
    first = sink.rows()
    assert ingest(source, sink).returncode == 0
    assert sink.rows() == first and len(first) == 3
    assert sink.loads() == [(str(source), 3)]


def test_bad_row_fails_the_whole_load(sink: Sink, tmp_path: Path) -> None:
    """A file already loaded is replaced by one with a short row after a multi-line cell:
    one line naming the row as a spreadsheet counts it, and the earlier rows stay."""
    source = write_csv(tmp_path / "export.csv", [HEADER, *ROWS])
    assert ingest(source, sink).returncode == 0
    before = sink.rows()
    rows = [HEADER, *ROWS, *([f"{n:05}", "x", "y"] for n in range(10)), ["99", "short"]]
    write_csv(source, rows)
    assert rejected(ingest(source, sink), source) == "row 15 has 2 values, the header has 3"
    assert sink.rows() == before
    assert sink.loads() == [(str(source), 3)]


def test_a_bad_row_below_a_note_is_counted_from_the_top(sink: Sink, tmp_path: Path) -> None:
    source = write_csv(
        tmp_path / "export.csv",
        [["Clinic report, Nov 2026"], [], HEADER, ["1", "a", "b"], ["2", "a", "b", "extra"]],
    )
    message = rejected(ingest(source, sink, **{HEADER_ROW_SETTING: "3"}), source)
    assert message == "row 5 has 4 values, the header has 3"


def test_another_schema_is_refused(sink: Sink, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "export.csv", [HEADER, *ROWS])
    assert ingest(source, sink).returncode == 0
    other = write_csv(tmp_path / "other.csv", [["mrn", "name", "ward"], ["1", "a", "b"]])
    message = rejected(ingest(other, sink), other)
    assert message.startswith("columns ['mrn', 'name', 'ward'] differ from table")
    assert len(sink.rows()) == 3


def big_csv(path: Path, mrn_prefix: str, rows: int = 30_000) -> Path:
    lines = ["mrn,name,note"] + [f"{mrn_prefix}{n:07},Patient {n},note {n}" for n in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_two_files_at_once_both_land(sink: Sink, tmp_path: Path) -> None:
    sources = [big_csv(tmp_path / f"{name}.csv", name) for name in ("a", "b")]
    assert ingest(sources[0], sink).returncode == 0  # the tables exist
    runs = [start(source, sink) for source in sources]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert sink.query(f"SELECT count(*) FROM {TABLE}") == [(60_000,)]  # noqa: S608
    assert sink.loads() == [(str(sources[0]), 30_000), (str(sources[1]), 30_000)]


@pytest.mark.parametrize("loaded_before", [False, True], ids=["empty-warehouse", "reload"])
def test_the_same_file_twice_at_once_leaves_one_copy(
    sink: Sink, tmp_path: Path, loaded_before: bool
) -> None:
    """On an empty warehouse the two first loads also create the tables once."""
    source = big_csv(tmp_path / "a.csv", "a")
    if loaded_before:
        assert ingest(source, sink).returncode == 0
    runs = [start(source, sink) for _ in range(2)]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert sink.query(f"SELECT count(*), count(DISTINCT mrn) FROM {TABLE}") == [(30_000, 30_000)]  # noqa: S608
    assert sink.loads() == [(str(source), 30_000)]


# --- real-world exports -----------------------------------------------------------------------


def test_table_at_b4_loads(sink: Sink, tmp_path: Path) -> None:
    source = write_xlsx(tmp_path / "b4.xlsx", {"Report": table_at("B4", [HEADER, *XLSX_ROWS])})
    result = ingest(source, sink)
    assert result.returncode == 0, result.stderr
    assert sink.rows() == sorted(map(tuple, XLSX_ROWS), key=repr)


def test_note_above_the_header_needs_the_header_row(sink: Sink, tmp_path: Path) -> None:
    cells = {"A1": "Appointments, printed 2026-11-27", **table_at("A3", [HEADER, *XLSX_ROWS])}
    source = write_xlsx(tmp_path / "noted.xlsx", {"Report": cells})
    message = rejected(ingest(source, sink), source)
    assert message == (
        "cell B3 has a value outside the header's columns A to A; "
        f"if the header is on another row, set {HEADER_ROW_SETTING}"
    )
    result = ingest(source, sink, **{HEADER_ROW_SETTING: "3"})
    assert result.returncode == 0, result.stderr
    assert sink.rows() == sorted(map(tuple, XLSX_ROWS), key=repr)


def test_csv_with_a_title_and_an_empty_first_column(sink: Sink, tmp_path: Path) -> None:
    rows = [["Report"], ["", "", "", ""], ["", *HEADER], *(["", *row] for row in ROWS)]
    source = write_csv(tmp_path / "report.csv", rows)
    result = ingest(source, sink, **{HEADER_ROW_SETTING: "3"})
    assert result.returncode == 0, result.stderr
    assert sink.rows() == sorted(map(tuple, ROWS), key=repr)


def test_the_sheet_setting_picks_a_sheet(sink: Sink, tmp_path: Path) -> None:
    sheets = {
        "Summary": table_at("A1", [["total"], ["3"]]),
        "Patients": table_at("A1", [HEADER, *XLSX_ROWS]),
    }
    source = write_xlsx(tmp_path / "sheets.xlsx", sheets)
    result = ingest(source, sink, **{SHEET_SETTING: "Patients"})
    assert result.returncode == 0, result.stderr
    assert sink.rows() == sorted(map(tuple, XLSX_ROWS), key=repr)


def test_the_first_visible_sheet_is_the_default(sink: Sink, tmp_path: Path) -> None:
    sheets = {
        "Lookup": table_at("A1", [["code", "label"], ["1", "one"]]),
        "Patients": table_at("A1", [HEADER, *XLSX_ROWS]),
    }
    source = write_xlsx(tmp_path / "hidden.xlsx", sheets, hidden={"Lookup"})
    result = ingest(source, sink)
    assert result.returncode == 0, result.stderr
    assert sink.rows() == sorted(map(tuple, XLSX_ROWS), key=repr)


def test_an_unknown_sheet_names_the_sheets_there_are(sink: Sink, tmp_path: Path) -> None:
    sheets = {"Lookup": {"A1": "x"}, "Patients": table_at("A1", [HEADER, *ROWS])}
    source = write_xlsx(tmp_path / "sheets.xlsx", sheets, hidden={"Lookup"})
    message = rejected(ingest(source, sink, **{SHEET_SETTING: "Visits"}), source)
    assert message == (
        f"no sheet 'Visits' ({SHEET_SETTING}); the workbook has 'Lookup' (hidden), 'Patients'"
    )


def test_an_empty_header_cell_is_named(sink: Sink, tmp_path: Path) -> None:
    header = ["mrn", None, "note"]
    source = write_xlsx(tmp_path / "gap.xlsx", {"Report": table_at("B4", [header, *ROWS])})
    assert rejected(ingest(source, sink), source) == "header cell C4 is empty"


def test_a_cp1252_csv_loads_with_its_encoding(sink: Sink, tmp_path: Path) -> None:
    rows = [HEADER, ["00042", "Zoë Müller", "café – 5 €"]]
    source = write_csv(tmp_path / "windows.csv", rows, encoding="cp1252")
    message = rejected(ingest(source, sink), source)
    assert message == (
        f"line 2 is not utf-8-sig (byte b'\\xeb'); set {ENCODING_SETTING} to the file's "
        "encoding, e.g. cp1252"
    )
    result = ingest(source, sink, **{ENCODING_SETTING: "cp1252"})
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
    sink: Sink, tmp_path: Path, setting: str, value: str, reason: str
) -> None:
    source = write_csv(tmp_path / "export.csv", [HEADER, *ROWS])
    result = ingest(source, sink, **{setting: value})
    assert result.returncode == BAD_INPUT
    assert result.stderr == f"error: {setting}={value}: {reason}\n"


def test_another_suffix_is_refused(sink: Sink, tmp_path: Path) -> None:
    source = tmp_path / "export.json"
    source.write_text("mrn\n1\n")
    message = rejected(ingest(source, sink), source)
    assert message == (
        "cannot read a .json file: the source must be one of "
        ".csv .txt .tsv .psv .dat .xlsx .xlsm .xls .xlsb .ods"
    )


# Two loads in one process, as a caller that loads in-process does; then what the collector was
# left with: whether it collects, and how many objects were frozen after each load.
TWO_LOADS = f"""
import gc
from prh_ingest.load import main
gc.{{}}()
frozen = []
for _ in range(2):
    assert main({PROJECT!r}, {SOURCE!r}, lambda source, columns, rows: (columns, rows)) == 0
    frozen.append(gc.get_freeze_count())
print(gc.isenabled(), *frozen)
"""


@pytest.mark.parametrize("collecting", [True, False], ids=["collector-on", "collector-off"])
def test_a_load_freezes_its_imports_once_and_leaves_the_collector_as_it_was(
    tmp_path: Path, collecting: bool
) -> None:
    """imported_for_good: the first load in a process freezes what importing SQLAlchemy and
    the driver made; a second finds them imported and freezes nothing more. The caller's
    collector is on or off after it as before."""
    source = write_csv(tmp_path / "export.csv", [HEADER, *ROWS])
    sink = f"sqlite:///{tmp_path / 'warehouse.db'}"
    result = subprocess.run(
        [sys.executable, "-c", TWO_LOADS.format("enable" if collecting else "disable")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, SOURCE_SETTING: str(source), SINK_SETTING: sink},
    )
    assert result.returncode == 0, result.stderr
    enabled, first, second = result.stdout.splitlines()[-1].split()
    assert (enabled, int(first) > 10_000, second) == (str(collecting), True, first)


# --- cannot start: one line, exit 69 (the flow does not retry it) ------------------------------


def test_a_missing_driver_cannot_start(postgres_server: PostgresServer, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "export.csv", [HEADER, *ROWS])
    sink = postgres_sink(postgres_server)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "psycopg", None)  # importing it fails, as where it is missing
        result = ingest(source, sink)
    assert result.returncode == CANNOT_START, result.stdout + result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ingest.py cannot start: ") and "psycopg" in line


def test_a_missing_sqlalchemy_cannot_start(tmp_path: Path) -> None:
    """Checked before anything is read: the loader imports SQLAlchemy only once main runs."""
    blocked = 'import sys; sys.modules["sqlalchemy"] = None\n' + INGEST_PROCESS
    result = subprocess.run(
        [sys.executable, "-c", blocked],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, SOURCE_SETTING: str(tmp_path / "missing.csv")},
    )
    assert (result.returncode, result.stdout) == (CANNOT_START, ""), result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ingest.py cannot start: ") and "sqlalchemy" in line


# --- the team's transform.py -------------------------------------------------------------------


def test_transform_renames_and_filters_the_rows(sink: Sink, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "export.csv", [HEADER, *ROWS])
    seen = []

    def transform(source_name: str, columns: list[str], rows):  # noqa: ANN001, ANN202
        seen.append(source_name)
        renamed = ["patient_mrn" if name == "mrn" else name for name in columns]
        return renamed, (row for row in rows if row[0] != "12")

    result = ingest(source, sink, transform=transform)
    assert result.returncode == 0, result.stderr
    assert seen == ["epic"]
    found = sink.query(f"SELECT patient_mrn FROM {TABLE} ORDER BY patient_mrn")  # noqa: S608
    assert found == [("00000007",), ("00012345",)]


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        (
            ["mrn", "Full Name", "note"],
            "transform.py returned column 'Full Name': lowercase, _ and digits, unique",
        ),
        (
            ["mrn", "mrn", "note"],
            "transform.py returned column 'mrn': lowercase, _ and digits, unique",
        ),
        (["mrn", "name"], "transform.py returned a row of 3 values for 2 columns"),
    ],
    ids=["not-a-column-name", "repeated", "row-wider-than-columns"],
)
def test_what_transform_returns_is_checked(
    sink: Sink, tmp_path: Path, columns: list[str], message: str
) -> None:
    source = write_csv(tmp_path / "export.csv", [HEADER, *ROWS])
    result = ingest(source, sink, transform=lambda _source, _columns, rows: (columns, rows))
    assert rejected(result, source) == message
    assert sink.query("SELECT 1") == [(1,)]
