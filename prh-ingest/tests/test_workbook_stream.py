"""`.xlsx`/`.xlsm` go through the streamed reader (prh_ingest.formats.xlsx), not calamine, and
a sheet the stream cannot read falls back to calamine with the same text (test_readers.py and
test_loader.py check the text itself, on both sinks)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from loading import TABLE, Sink, ingest, table_at, write_xlsx
from python_calamine import CalamineWorkbook

HEADER = ["MRN", "Visit Date", "Note"]
ROWS = [["1001", "2024-01-02", "first"], ["1002", "2024-01-03", "second"]]
TEXT = sorted((tuple(row) for row in ROWS), key=repr)


@pytest.mark.parametrize("suffix", [".xlsx", ".xlsm"])
def test_xlsx_and_xlsm_load_without_calamine_reading_them(
    sink: Sink, tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_xlsx(tmp_path / f"export{suffix}", {"Export": table_at("A1", [HEADER, *ROWS])})

    def not_called(*_args: object) -> None:
        raise AssertionError("calamine read a workbook the stream reads")

    monkeypatch.setattr(CalamineWorkbook, "from_path", not_called)
    result = ingest(source, sink)
    assert result.returncode == 0, result.stderr
    assert sink.rows(TABLE) == TEXT


def test_a_sheet_the_stream_cannot_read_loads_through_calamine(sink: Sink, tmp_path: Path) -> None:
    plain = write_xlsx(tmp_path / "plain.xlsx", {"Export": table_at("A1", [HEADER, *ROWS])})
    prefixed = tmp_path / "prefixed.xlsx"  # elements with a namespace prefix (<x:row>)
    with zipfile.ZipFile(plain) as original, zipfile.ZipFile(prefixed, "w") as copy:
        for item in original.infolist():
            data = original.read(item)
            if item.filename.startswith("xl/worksheets/sheet"):
                data = prefix_elements(data.decode()).encode()
            copy.writestr(item, data)
    result = ingest(prefixed, sink)
    assert result.returncode == 0, result.stderr
    assert sink.rows(TABLE) == TEXT


def prefix_elements(xml: str) -> str:
    """The sheet's main-namespace elements written as `x:` ones."""
    import re

    xml = xml.replace(
        'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"',
        'xmlns:x="http://schemas.openxmlformats.org/spreadsheetml/2006/main"',
    )
    return re.sub(r"<(/?)(?!\?)([a-zA-Z]+)([\s>/])", r"<\1x:\2\3", xml)
