"""The streamed .xlsx reader gives the rows that python-calamine 0.9.1 and the loader's
cell_text() give today, cell for cell, on workbooks written by openpyxl and by hand (Excel's
layout: shared strings, rich text, formulas)."""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

import openpyxl
import pytest
from openpyxl.utils.datetime import CALENDAR_MAC_1904
from prh_ingest.formats import xlsx
from prh_ingest.formats.xlsx import NotStreamable, WorkbookError, cell_text, open_sheet
from python_calamine import CalamineWorkbook


def test_cell_text_is_the_loaders() -> None:
    """The same rules as the template's ingest.py cell_text, whose rows the loader stores."""
    assert [cell_text(v) for v in ["", "x", 3.0, 2.5, dt.datetime(2024, 1, 2, 3, 4), True]] == [
        None, "x", "3", "2.5", "2024-01-02T03:04:00", "True"
    ]  # fmt: skip
    assert [cell_text(v) for v in [dt.date(2024, 1, 2), dt.time(1, 2), 7, None]] == [
        "2024-01-02", "01:02:00", "7", None
    ]  # fmt: skip


def calamine_rows(path: Path, sheet: str) -> list[list[str | None]]:
    rows = CalamineWorkbook.from_path(str(path)).get_sheet_by_name(sheet).iter_rows()
    return [list(map(cell_text, row)) for row in rows]


def streamed_rows(path: Path, sheet: str | None = None) -> list[list[str | None]]:
    with xlsx.Workbook(path) as workbook:
        return list(workbook.sheet(sheet).rows())


VALUES = [
    [1, "Zoë  ", dt.datetime(2024, 1, 2, 3, 4, 5), 1.5, True],
    [2.5, "a&b<c>\nline", dt.date(2024, 1, 2), None, False],
    [None, "  leading", dt.time(13, 14, 15), -3, "=1+1"],
    [1e20, "_x000D_x", dt.datetime(2024, 1, 2, 3, 4, 5, 123000), 0.1 + 0.2, "#N/A"],
    [123456789012, "x\r\ny", dt.timedelta(hours=30), 1e-7, ""],
]


def openpyxl_workbook(
    path: Path, epoch: dt.datetime | None = None, formula: bool = True
) -> Path:
    """A hidden first sheet, then "Visits" from C3 on: typed values, number formats (dates,
    durations, a quoted "d" that is not a date), a styled empty cell past the last value.
    Without *formula*, every cell is one the reader's fast pattern reads."""
    workbook = openpyxl.Workbook()
    if epoch is not None:
        workbook.epoch = epoch
    hidden = workbook.active
    hidden.title, hidden.sheet_state = "Hidden", "hidden"
    hidden["A1"] = "not this one"
    sheet = workbook.create_sheet("Visits")
    for column, name in enumerate(["id", "name", "when", "value", "flag"], 3):
        sheet.cell(3, column, name)
    for row, values in enumerate(VALUES, 4):
        for column, value in enumerate(values, 3):
            sheet.cell(row, column, value if formula or value != "=1+1" else "1+1")
    for row, (value, number_format) in enumerate(
        [(45000.5, "yyyy-mm-dd"), (1.25, "[h]:mm"), (3, '0.00"d"'), (0.75, "h:mm AM/PM"),
         (45000, "dd/mm/yy;@"), (45000, "#,##0")], 10
    ):  # fmt: skip
        sheet.cell(row, 5, value).number_format = number_format
    sheet.cell(17, 9).number_format = "0.00"  # styled but empty: not part of the range
    workbook.create_sheet("Empty")
    workbook.save(path)
    return path


@pytest.mark.parametrize("formula", [True, False], ids=["formula", "no-formula"])
@pytest.mark.parametrize("epoch", [None, CALENDAR_MAC_1904], ids=["1900", "1904"])
def test_rows_are_calamines_cell_for_cell(
    tmp_path: Path, epoch: dt.datetime | None, formula: bool
) -> None:
    path = openpyxl_workbook(tmp_path / "visits.xlsx", epoch, formula)
    expected = calamine_rows(path, "Visits")
    assert streamed_rows(path) == expected  # the first visible sheet
    assert expected[2] == ["id", "name", "when", "value", "flag"]
    assert open_sheet(path, "Visits").start == (2, 2)


@pytest.mark.parametrize("formula", [True, False], ids=["formula", "no-formula"])
def test_a_small_chunk_size_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, formula: bool
) -> None:
    path = openpyxl_workbook(tmp_path / "visits.xlsx", formula=formula)
    monkeypatch.setattr(xlsx, "CHUNK_BYTES", 7)
    assert streamed_rows(path, "Visits") == calamine_rows(path, "Visits")


def test_a_span_that_widens_after_the_first_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first pass skips a part whose cells lie within the span seen so far: a value far
    right, then far left, many parts in, still widens it; a styled empty cell does not."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in range(1, 301):
        sheet.cell(row, 3, f"r{row}")
        sheet.cell(row, 4, row)
    sheet.cell(150, 1).number_format = "0.00"  # styled but empty: not part of the range
    sheet.cell(200, 6, "right")
    sheet.cell(250, 2, "left")
    path = tmp_path / "widening.xlsx"
    workbook.save(path)
    monkeypatch.setattr(xlsx, "CHUNK_BYTES", 512)  # some 60 parts
    rows = streamed_rows(path)
    assert rows == calamine_rows(path, sheet.title)
    assert rows[199] == [None, "r200", "200", None, "right"]
    assert rows[249] == ["left", "r250", "250", None, None]


def test_sheets_by_name_hidden_included(tmp_path: Path) -> None:
    path = openpyxl_workbook(tmp_path / "visits.xlsx")
    assert streamed_rows(path, "Hidden") == [["not this one"]]
    assert streamed_rows(path, "Empty") == []
    with pytest.raises(WorkbookError) as missing:
        open_sheet(path, "Visit")
    assert str(missing.value) == (
        "no sheet 'Visit'; the workbook has 'Hidden' (hidden), 'Visits', 'Empty'"
    )


CONTENT_TYPES = """<?xml version="1.0" encoding="UTF-8"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>
<Default Extension="xml" ContentType="application/xml"/>
<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>
<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>
<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>
<Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>
</Types>"""  # noqa: E501
RELS = """<?xml version="1.0" encoding="UTF-8"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>
</Relationships>"""  # noqa: E501
WORKBOOK = """<?xml version="1.0" encoding="UTF-8"?>
<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">
<sheets><sheet name="Lab results" sheetId="1" r:id="rId1"/></sheets></workbook>"""  # noqa: E501
WORKBOOK_RELS = """<?xml version="1.0" encoding="UTF-8"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>
<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/>
<Relationship Id="rId3" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" Target="styles.xml"/>
</Relationships>"""  # noqa: E501
STYLES = """<?xml version="1.0" encoding="UTF-8"?>
<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">
<numFmts count="1"><numFmt numFmtId="164" formatCode="yyyy\\-mm\\-dd"/></numFmts>
<cellXfs count="3"><xf numFmtId="0"/><xf numFmtId="164"/><xf numFmtId="22"><alignment/></xf></cellXfs>
</styleSheet>"""  # noqa: E501
SHARED_STRINGS = """<?xml version="1.0" encoding="UTF-8"?>
<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="5" uniqueCount="5">
<si><t>MRN</t></si>
<si><t>Result</t></si>
<si><r><rPr><b/></rPr><t>Bold</t></r><r><t xml:space="preserve"> and plain </t></r><rPh sb="0" eb="1"><t>フリ</t></rPh></si>
<si><t>Müller &amp; Söhne &lt;GmbH&gt; &#233;</t></si>
<si><t></t></si>
</sst>"""  # noqa: E501
SHEET = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><dimension ref="A1:D9"/><sheetData>
<row r="2" spans="2:4"><c r="B2" t="s"><v>0</v></c><c r="C2" t="s"><v>1</v></c><c r="D2" s="1"/></row>
<row r="3" spans="2:4" ht="20" customHeight="1"><c r="B3" s="0" t="s"><v>2</v></c><c r="C3"><f>1+2</f><v>3</v></c><c r="D3" s="1"><v>45000</v></c></row>
<row r="4"><c t="s" r="B4"><v>3</v></c><c r='C4' t='str'><f>"a"&amp;"b"</f><v>a&amp;b</v></c><c r="D4" s="2"><v>45000.25</v></c></row>
<row><c r="B5" t="e"><v>#DIV/0!</v></c><c r="C5" t="b"><v>1</v></c><c r="D5" t="d"><v>2024-01-02T03:04:05</v></c></row>
<row r="7"><c r="B7" t="s"><v>4</v></c><c t="inlineStr"><is><r><t>in</t></r><r><t xml:space="preserve">line </t></r></is></c><c r="D7" t="n"><v>1.5E3</v></c></row>
<row r="8"><c r="C8" t="d"><v>2024-01-02</v></c></row>
<row r="9"><c r="B9" s="1"/></row>
</sheetData></worksheet>"""  # noqa: E501


def excel_like_workbook(path: Path, sheet: str = SHEET) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", CONTENT_TYPES)
        archive.writestr("_rels/.rels", RELS)
        archive.writestr("xl/workbook.xml", WORKBOOK)
        archive.writestr("xl/_rels/workbook.xml.rels", WORKBOOK_RELS)
        archive.writestr("xl/styles.xml", STYLES)
        archive.writestr("xl/sharedStrings.xml", SHARED_STRINGS)
        archive.writestr("xl/worksheets/sheet1.xml", sheet)
    return path


def test_shared_strings_rich_text_formulas_and_any_attribute_order(tmp_path: Path) -> None:
    path = excel_like_workbook(tmp_path / "lab.xlsx")
    expected = calamine_rows(path, "Lab results")
    assert streamed_rows(path) == expected
    assert expected[2][0] == "Bold and plain "  # runs joined, the phonetic run left out
    assert expected[3][0] == "Müller & Söhne <GmbH> é"


def test_prefixed_sheets_are_left_to_calamine(tmp_path: Path) -> None:
    prefixed = SHEET.replace("<worksheet xmlns=", "<x:worksheet xmlns:x=").replace(
        "<sheetData>", "<x:sheetData>"
    )
    path = excel_like_workbook(tmp_path / "prefixed.xlsx", prefixed)
    with pytest.raises(NotStreamable):
        streamed_rows(path)


def test_not_a_workbook_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "fake.xlsx"
    path.write_bytes(b"MRN,name\n123,Doe\n")
    with pytest.raises(WorkbookError) as refused:
        open_sheet(path)
    assert str(refused.value) == "not a readable workbook (BadZipFile)"


def test_an_unreadable_cell_names_its_row_not_its_value(tmp_path: Path) -> None:
    broken = SHEET.replace('<c t="s" r="B4"><v>3</v>', '<c t="s" r="B4"><v>99</v>')
    path = excel_like_workbook(tmp_path / "broken.xlsx", broken)
    with pytest.raises(WorkbookError) as refused:
        streamed_rows(path)
    assert str(refused.value) == "sheet 'Lab results', row 4: a cell is not readable"


def test_a_damaged_sheet_is_one_line(tmp_path: Path) -> None:
    path = excel_like_workbook(tmp_path / "damaged.xlsx")
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("xl/worksheets/sheet1.xml")
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0xFF  # one byte of the deflated sheet
    path.write_bytes(bytes(data))
    with pytest.raises(WorkbookError) as refused:
        streamed_rows(path)
    assert str(refused.value) in (
        "sheet 'Lab results' is not readable (BadZipFile)",
        "sheet 'Lab results' is not readable (error)",  # zlib's
    )
