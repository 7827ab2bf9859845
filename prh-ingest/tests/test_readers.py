"""The shapes hospital systems send, made here and loaded by the package's loader on both
databases, then compared value by value with what was written: delimited text (`,` `|` `^`
tab `;`, quoted or not, UTF-8, cp1252 or ISO-8859-15, LF or CRLF, control-total footers) and
workbooks (.xlsx, .xlsm, .xls written with xlwt, .xlsb with pyxlsbwriter, .ods with odfpy)."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import xlwt
from loading import (
    BAD_INPUT,
    CANNOT_START,
    DELIMITER_SETTING,
    ENCODING_SETTING,
    FOOTER_ROWS_SETTING,
    HEADER_ROW_SETTING,
    QUOTE_SETTING,
    SHEET_SETTING,
    Sink,
    ingest,
    postgres_sink,
    rejected,
    write_csv,
)
from odf.opendocument import OpenDocumentSpreadsheet
from odf.table import Table as OdsTable
from odf.table import TableCell, TableRow
from odf.text import P
from postgres import PostgresServer
from prh_ingest.load import copy_feed
from pyxlsbwriter import XlsbWriter

HEADER = ["mrn", "name", "note"]
# Zero-padded ids, letters each encoding below has, an empty cell (NULL) and, in quoted
# files, values holding every delimiter and a quote.
PLAIN_ROWS = [
    ["00012345", "Zoë Ångström", "café 5 €"],
    ["00000007", "", "Müller"],
    ["0042", "Ms. Ó Briain", "née"],
]
QUOTED_ROWS = [*PLAIN_ROWS, ["007", 'says "hi", twice; | ^ \t', "a\r\nb"]]
# Without a text qualifier a `"` is data (EpicCare's `5" laceration`).
UNQUOTED_ROWS = [*PLAIN_ROWS, ["008", '5" laceration', '"as typed"']]
CONTROL_TOTALS = ["CONTROL TOTALS", "4", ""]


@dataclass(frozen=True)
class Shape:
    suffix: str
    delimiter: str
    quoted: bool
    encoding: str
    line_end: str
    footer: int = 0

    @property
    def rows(self) -> list[list[str]]:
        return QUOTED_ROWS if self.quoted else UNQUOTED_ROWS

    def settings(self) -> dict[str, str]:
        settings = {} if self.quoted else {QUOTE_SETTING: "none"}
        if self.encoding != "utf-8":
            settings[ENCODING_SETTING] = self.encoding
        if self.footer:
            settings[FOOTER_ROWS_SETTING] = str(self.footer)
        return settings

    def write(self, path: Path) -> Path:
        rows = [HEADER, *self.rows, *[CONTROL_TOTALS] * self.footer]
        with path.open("w", newline="", encoding=self.encoding) as file:
            if self.quoted:
                writer = csv.writer(file, delimiter=self.delimiter, lineterminator=self.line_end)
                writer.writerows(rows)
            else:
                file.writelines(self.delimiter.join(row) + self.line_end for row in rows)
        return path


SHAPES = {
    "comma-quoted-utf8-lf": Shape(".csv", ",", True, "utf-8", "\n"),
    "cerner-pipe-quoted-cp1252-crlf": Shape(".txt", "|", True, "cp1252", "\r\n"),
    "epiccare-caret-unquoted-iso8859-15-crlf-footer": Shape(
        ".dat", "^", False, "iso8859-15", "\r\n", footer=1
    ),
    "epic-ehi-tab-unquoted-utf8-lf": Shape(".tsv", "\t", False, "utf-8", "\n"),
    "tab-quoted-utf8-crlf": Shape(".tsv", "\t", True, "utf-8", "\r\n"),
    "semicolon-quoted-cp1252-crlf-footers": Shape(".csv", ";", True, "cp1252", "\r\n", footer=2),
    "pipe-unquoted-utf8-lf-footer": Shape(".psv", "|", False, "utf-8", "\n", footer=1),
}
DELIMITER_WORDS = {",": "','", "|": "'|'", "^": "'^'", "\t": "tab", ";": "';'"}


def expected(rows: list[list[str]]) -> list[tuple]:
    """What the table must hold: the values as written, empty cells NULL."""
    return sorted((tuple(value or None for value in row) for row in rows), key=repr)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_delimited_text_loads_value_by_value(sink: Sink, tmp_path: Path, shape: Shape) -> None:
    """The delimiter is detected from the header and said; every value arrives as written."""
    source = shape.write(tmp_path / f"export{shape.suffix}")
    result = ingest(source, sink, **shape.settings())
    assert result.returncode == 0, result.stderr
    assert sink.rows() == expected(shape.rows)
    word = DELIMITER_WORDS[shape.delimiter]
    said = f"delimiter {word} (detected from the header line; set {DELIMITER_SETTING} to choose)"
    assert said in result.stdout
    assert f"loaded {len(shape.rows)} rows" in result.stdout


@pytest.mark.parametrize("shape", [SHAPES["cerner-pipe-quoted-cp1252-crlf"]], ids=["pipe"])
def test_a_delimiter_setting_is_used_and_not_detected(
    sink: Sink, tmp_path: Path, shape: Shape
) -> None:
    source = shape.write(tmp_path / "export.txt")
    result = ingest(source, sink, **shape.settings(), **{DELIMITER_SETTING: "|"})
    assert result.returncode == 0, result.stderr
    assert "detected" not in result.stdout
    assert sink.rows() == expected(shape.rows)


def test_tab_is_spelled_tab(sink: Sink, tmp_path: Path) -> None:
    shape = SHAPES["epic-ehi-tab-unquoted-utf8-lf"]
    source = shape.write(tmp_path / "export.txt")
    result = ingest(source, sink, **shape.settings(), **{DELIMITER_SETTING: "tab"})
    assert result.returncode == 0, result.stderr
    assert sink.rows() == expected(shape.rows)


@pytest.mark.parametrize(
    ("header", "word"),
    [("mrn,name|note", "','"), ("mrn", "','"), ("a|b|c,d", "'|'"), ('"a;b",c,d', "','")],
    ids=["tie", "one-column", "most-fields", "quoted-delimiter-not-counted"],
)
def test_detection_ties_and_single_columns_go_to_comma(
    sink: Sink, tmp_path: Path, header: str, word: str
) -> None:
    source = tmp_path / "export.txt"
    source.write_text(header + "\n")
    result = ingest(source, sink)
    assert result.returncode == 0, result.stderr
    assert f"delimiter {word} (detected" in result.stdout


def test_a_stand_in_byte_in_an_unquoted_file_still_loads(sink: Sink, tmp_path: Path) -> None:
    """PostgreSQL's COPY needs a qualifier even with QUOTE=none; a file holding the byte
    used for it loads through the row reader instead, with the same values."""
    rows = [*UNQUOTED_ROWS, ["009", "odd\x01byte", "x"]]
    source = tmp_path / "export.dat"
    source.write_text("".join("^".join(row) + "\r\n" for row in [HEADER, *rows]))
    result = ingest(source, sink, **{QUOTE_SETTING: "none"})
    assert result.returncode == 0, result.stderr
    assert sink.rows() == expected(rows)


# Values with a `"` after their first character, each set in a file of its own (a file goes
# to COPY whole or row by row).
QUALIFIERS_IN_VALUES = {
    "in-the-middle": [["1", 'say "hi" now', "a"], ["2", '5" laceration', 'x"y']],
    "at-the-end": [["4", 'wound 12"', "b"], ["5", '3"', ""], ["6", "after", "c"]],
    "doubled": [["7", 'a""b', "d"], ["8", "after", 'e""']],
}


@pytest.mark.parametrize("rows", QUALIFIERS_IN_VALUES.values(), ids=QUALIFIERS_IN_VALUES.keys())
def test_a_qualifier_inside_an_unquoted_value_is_data(
    sink: Sink, tmp_path: Path, rows: list[list[str]]
) -> None:
    """With the default `"`, a `"` after a value's first character is data, as the csv
    reader reads it. COPY would start a quoted part there: it dropped the quotes of `say "hi"
    now`, and from a value ending in `"` (12" in inches) on it joined the rows up to the next
    such value into one."""
    lines = ["|".join(HEADER), *("|".join(row) for row in rows), '3|"""quoted"""|']
    source = tmp_path / "export.txt"
    source.write_text("".join(line + "\n" for line in lines))
    result = ingest(source, sink)
    assert result.returncode == 0, result.stderr
    assert sink.rows() == expected([*rows, ["3", '"quoted"', ""]])


# The loader with its row-by-row COPY (the checked rows, for files PostgreSQL cannot parse
# itself) made to fail: a load that still succeeds sent the file's bytes to COPY.
def row_by_row(*_: object) -> int:
    raise SystemExit("row by row")


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_every_text_shape_goes_to_postgresql_as_text_for_copy(
    postgres_server: PostgresServer, tmp_path: Path, shape: Shape
) -> None:
    """Not row by row (several times slower): the server parses each shape's bytes."""
    sink = postgres_sink(postgres_server)
    source = shape.write(tmp_path / f"export{shape.suffix}")
    result = blocked_row_by_row(source, sink, **shape.settings())
    assert result.returncode == 0, result.stderr
    assert sink.rows() == expected(shape.rows)


def test_a_stand_in_byte_needs_the_row_by_row_copy(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """The block above works: the one text file that goes row by row fails with it."""
    sink = postgres_sink(postgres_server)
    source = tmp_path / "export.dat"
    source.write_text("".join("^".join(row) + "\n" for row in [HEADER, ["1", "a\x01b", "c"]]))
    result = blocked_row_by_row(source, sink, **{QUOTE_SETTING: "none"})
    assert result.returncode == 1 and result.stderr.strip() == "row by row", result.stderr


def blocked_row_by_row(source: Path, sink: Sink, **settings: str):  # noqa: ANN201
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(copy_feed, "copy_rows", row_by_row)
        return ingest(source, sink, **settings)


# PostgreSQL's COPY ends its data at a line that is exactly `\.` (the end-of-data marker, even
# in CSV format); in a one-column file such a line is the value `\.`, and the rows after it load.
UNQUOTED_TAB = {QUOTE_SETTING: "none", DELIMITER_SETTING: "tab"}
END_MARKER_FILES = {
    "unquoted-crlf": ("\r\n", {QUOTE_SETTING: "none"}),
    "quoted-lf": ("\n", {}),
    "quoted-crlf": ("\r\n", {}),
    "tab-unquoted-lf": ("\n", UNQUOTED_TAB),
}


@pytest.mark.parametrize(
    ("line_end", "settings"), END_MARKER_FILES.values(), ids=END_MARKER_FILES.keys()
)
def test_a_line_that_is_copy_s_end_marker_is_data(
    sink: Sink, tmp_path: Path, line_end: str, settings: dict[str, str]
) -> None:
    values = ["\\.", "first", "\\.", "after the marker", "\\.x", "last \\.", "\\."]
    source = tmp_path / "notes.txt"
    source.write_bytes("".join(line + line_end for line in ["note", *values]).encode())
    result = ingest(source, sink, **settings)
    assert result.returncode == 0, result.stderr
    assert sink.rows() == expected([[value] for value in values])
    assert f"loaded {len(values)} rows" in result.stdout


def test_an_end_marker_on_the_first_data_line_is_data(sink: Sink, tmp_path: Path) -> None:
    source = tmp_path / "notes.txt"
    source.write_text("note\n\\.\nafter\n")
    result = ingest(source, sink, **{QUOTE_SETTING: "none"})
    assert result.returncode == 0, result.stderr
    assert sink.rows() == expected([["\\."], ["after"]])


def test_an_end_marker_inside_a_quoted_value_stays_as_written(sink: Sink, tmp_path: Path) -> None:
    """A `\\.` line inside a quoted multi-line value is that value's (not quoted again)."""
    rows = [["1", "line one\n\\.\nline three", "x"], ["2", "\\.", '"\\."'], ["3", "y", "\\.\r\n"]]
    source = write_csv(tmp_path / "export.csv", [HEADER, *rows])
    result = ingest(source, sink)
    assert result.returncode == 0, result.stderr
    assert sink.rows() == expected(rows)


COPY_CHUNK = (
    copy_feed.COPY_CHUNK_BYTES
)  # the loader sends a file's data rows to COPY in chunks of this many bytes


def test_end_markers_at_chunk_boundaries_are_data(sink: Sink, tmp_path: Path) -> None:
    """A chunk ending in a marker line's `\\`, and one starting inside a quoted value with a
    marker line (which stays the value's)."""
    quoted = "a\n\\.\nb"
    filler = [["xx"], *[["x"]] * ((COPY_CHUNK - 6) // 2)]
    rows = [*filler, [quoted], ["yy"], *[["\\."]] * 400_000, ["end"]]
    lines = [value if value != quoted else f'"{value}"' for (value,) in rows]
    data = "".join(line + "\n" for line in lines)
    assert data.index("\\.") == COPY_CHUNK  # the second chunk starts in the quoted value
    assert data[2 * COPY_CHUNK - 1 : 2 * COPY_CHUNK + 2] == "\\.\n"  # the third after a `\\`
    source = tmp_path / "notes.txt"
    source.write_text("note\n" + data)
    result = ingest(source, sink)
    assert result.returncode == 0, result.stderr
    assert sink.rows() == expected(rows)


def test_a_quoted_value_across_a_chunk_boundary_keeps_the_qualifier_check_in_step(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """The second chunk starts inside a quoted value, so its first `"` closes one: the file
    still goes to COPY; a value ending in `"` after it still makes it go row by row."""
    filler = [["xx"], *[["x"]] * ((COPY_CHUNK - 6) // 2)]
    for tail in ([], [['12"']]):
        sink = postgres_sink(postgres_server)
        rows = [*filler, ["a\nb"], ["yy"], *tail]
        data = "".join((f'"{value}"' if "\n" in value else value) + "\n" for (value,) in rows)
        assert data.index('b"') == COPY_CHUNK  # the second chunk starts in the quoted value
        source = tmp_path / f"notes-{len(tail)}.txt"
        source.write_text("note\n" + data)
        result = blocked_row_by_row(source, sink)
        if tail:
            assert (result.returncode, result.stderr.strip()) == (1, "row by row")
            result = ingest(source, sink)
        assert result.returncode == 0, result.stderr
        assert sink.rows() == expected(rows)


def test_an_end_marker_line_in_a_wider_file_is_a_short_row(sink: Sink, tmp_path: Path) -> None:
    """Not the end of the data, nor a silent loss of the rows after it: row 3 has 1 value."""
    lines = ["^".join(HEADER), "^".join(PLAIN_ROWS[0]), "\\.", "^".join(PLAIN_ROWS[1])]
    source = tmp_path / "export.dat"
    source.write_text("".join(line + "\r\n" for line in lines))
    message = rejected(ingest(source, sink, **{QUOTE_SETTING: "none"}), source)
    assert message.startswith("row 3 has 1 values, the header has 3"), message


def test_the_header_row_setting_picks_the_line_detected_from(sink: Sink, tmp_path: Path) -> None:
    """A title line with commas above a `|` header: detection reads the header's line."""
    source = tmp_path / "report.txt"
    body = "".join("|".join(row) + "\n" for row in [HEADER, *PLAIN_ROWS])
    source.write_text("Clinic report, Nov 2026, page 1\n\n" + body)
    result = ingest(source, sink, CLINIC_CAL_EPIC_HEADER_ROW="3")
    assert result.returncode == 0, result.stderr
    assert sink.rows() == expected(PLAIN_ROWS)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        (DELIMITER_SETTING, "||"),
        (DELIMITER_SETTING, "x"),
        (DELIMITER_SETTING, "7"),
        (DELIMITER_SETTING, '"'),
        (DELIMITER_SETTING, "'"),
        (QUOTE_SETTING, "''"),
        (QUOTE_SETTING, "q"),
        (FOOTER_ROWS_SETTING, "-1"),
        (FOOTER_ROWS_SETTING, "two"),
    ],
)
def test_a_bad_text_setting_is_one_line_naming_it(
    sink: Sink, tmp_path: Path, setting: str, value: str
) -> None:
    source = SHAPES["comma-quoted-utf8-lf"].write(tmp_path / "export.csv")
    result = ingest(source, sink, **{setting: value})
    assert result.returncode == BAD_INPUT, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {setting}={value}: "), result.stderr
    summary = json.loads(result.stdout)  # the one line on stdout: the flow's summary
    assert summary["ok"] is False and summary["error"] == lines[0].removeprefix("error: ")


def test_footer_rows_beyond_the_data_leave_no_rows(sink: Sink, tmp_path: Path) -> None:
    source = SHAPES["comma-quoted-utf8-lf"].write(tmp_path / "export.csv")
    result = ingest(source, sink, **{FOOTER_ROWS_SETTING: "9"})
    assert result.returncode == 0, result.stderr
    assert sink.rows() == []


# --- workbooks ---------------------------------------------------------------------------------

# Text cells as written; the `visits` column holds numbers (whole ones stored without `.0`).
SHEET_HEADER = ["mrn", "name", "visits"]
SHEET_ROWS = [["00012345", "Zoë Ångström", 3], ["00000007", None, 2.5], ["0042", "née", None]]
SHEET_TEXT = [["00012345", "Zoë Ångström", "3"], ["00000007", None, "2.5"], ["0042", "née", None]]
SHEET_FOOTER = ["CONTROL TOTALS", None, 5.5]


def write_xls(path: Path, rows: list[list[object]]) -> Path:
    workbook = xlwt.Workbook(encoding="utf-8")
    sheet = workbook.add_sheet("Export")
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            if value is not None:
                sheet.write(r, c, value)
    workbook.save(str(path))
    return path


def write_xlsb(path: Path, rows: list[list[object]], before: dict[str, bool] | None = None) -> Path:
    """A binary workbook (BIFF12): sheet "Export" after the sheets of *before* (name: hidden),
    with string cells as strings, numbers as numbers and None as no value."""
    width = max(map(len, rows))
    with XlsbWriter(str(path)) as workbook:
        for name, hidden in (before or {}).items():
            workbook.add_sheet(name, hidden=hidden)
            workbook.write_sheet([[f"{name} sheet"]])
        workbook.add_sheet("Export")
        workbook.write_sheet([[*row, *[None] * (width - len(row))] for row in rows])
    return path


def write_ods(path: Path, rows: list[list[object]]) -> Path:
    document = OpenDocumentSpreadsheet()
    table = OdsTable(name="Export")
    for row in rows:
        table_row = TableRow()
        for value in row:
            if value is None:
                cell = TableCell()
            elif isinstance(value, str):
                cell = TableCell(valuetype="string")
                cell.addElement(P(text=value))
            else:
                cell = TableCell(valuetype="float", value=value)
                cell.addElement(P(text=str(value)))
            table_row.addElement(cell)
        table.addElement(table_row)
    document.spreadsheet.addElement(table)
    document.save(str(path))
    return path


def write_openpyxl(path: Path, rows: list[list[object]]) -> Path:
    from openpyxl import Workbook

    workbook = Workbook()
    workbook.active.title = "Export"
    for row in rows:
        workbook.active.append(row)
    workbook.save(path)
    return path


WRITERS = {
    ".xls": write_xls,
    ".xlsb": write_xlsb,
    ".ods": write_ods,
    ".xlsx": write_openpyxl,
    ".xlsm": write_openpyxl,
}


@pytest.mark.parametrize("footer", [0, 1], ids=["no-footer", "control-totals-footer"])
@pytest.mark.parametrize("suffix", WRITERS, ids=[suffix[1:] for suffix in WRITERS])
def test_workbooks_load_value_by_value(
    sink: Sink, tmp_path: Path, suffix: str, footer: int
) -> None:
    rows = [SHEET_HEADER, *SHEET_ROWS, *[SHEET_FOOTER] * footer]
    source = WRITERS[suffix](tmp_path / f"export{suffix}", rows)
    result = ingest(source, sink, **{FOOTER_ROWS_SETTING: str(footer)})
    assert result.returncode == 0, result.stderr
    assert sink.rows() == sorted(map(tuple, SHEET_TEXT), key=repr)


XLSB_LAYOUTS = {
    # case: (sheets before "Export" (name: hidden), rows above the header, settings)
    "first-visible-sheet-by-default": ({"Lookup": True}, [], {}),
    "sheet-header-row-and-footer-set": (
        {"Cover": False, "Lookup": True},
        [["Clinic report, Nov 2026"], [], [None, None, "page 1"]],
        {SHEET_SETTING: "Export", HEADER_ROW_SETTING: "4", FOOTER_ROWS_SETTING: "1"},
    ),
}


@pytest.mark.parametrize("case", XLSB_LAYOUTS)
def test_xlsb_sheet_and_header_settings_pick_the_rows(
    sink: Sink, tmp_path: Path, case: str
) -> None:
    before, above, settings = XLSB_LAYOUTS[case]
    footer = [SHEET_FOOTER] if FOOTER_ROWS_SETTING in settings else []
    rows = [*above, SHEET_HEADER, *SHEET_ROWS, *footer]
    source = write_xlsb(tmp_path / "export.xlsb", rows, before)
    result = ingest(source, sink, **settings)
    assert result.returncode == 0, result.stderr
    assert sink.rows() == sorted(map(tuple, SHEET_TEXT), key=repr)
    assert f"loaded {len(SHEET_ROWS)} rows" in result.stdout


def test_a_workbook_that_is_not_one_names_its_suffix(sink: Sink, tmp_path: Path) -> None:
    source = tmp_path / "export.xls"
    source.write_text("mrn,name\n1,a\n")
    message = rejected(ingest(source, sink), source)
    assert message.startswith("not a readable .xls workbook")


# --- readers imported only for the format read -----------------------------------------------


@pytest.mark.parametrize(("suffix", "loads"), [(".csv", True), (".xlsx", False)])
def test_text_needs_no_calamine(sink: Sink, tmp_path: Path, suffix: str, loads: bool) -> None:
    source = tmp_path / f"export{suffix}"
    if suffix == ".csv":
        SHAPES["comma-quoted-utf8-lf"].write(source)
    else:
        write_openpyxl(source, [SHEET_HEADER, *SHEET_ROWS])
    with pytest.MonkeyPatch.context() as patch:
        # importing it now fails, as where it is not installed
        patch.setitem(sys.modules, "python_calamine", None)
        result = ingest(source, sink)
    assert (result.returncode == 0) is loads, result.stderr
    if not loads:  # the workbook needs it: proof the block works, and one line, exit 69
        assert result.returncode == CANNOT_START, result.stderr
        (line,) = result.stderr.splitlines()
        assert line.startswith("error: ingest.py cannot start: ") and "python_calamine" in line
    else:
        assert sink.rows() == expected(QUOTED_ROWS)
