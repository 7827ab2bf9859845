"""Reading the source: delimited text (`.csv` `.txt` `.tsv` `.psv` `.dat`) and workbooks into a
Table of text rows. `.xlsx` and `.xlsm` are read as a stream (prh_ingest.formats.xlsx, memory
bounded whatever the rows); `.xls` `.xlsb` `.ods`, and a sheet the stream cannot read (e.g.
namespace-prefixed XML), are read whole by calamine. Both give the same text.

Empty rows above the header and empty columns left of it are skipped; a text file's delimiter
is detected from its header line unless set. Every message names a row, a cell, a column or a
setting, never a cell's value.
"""

from __future__ import annotations

import codecs
import collections
import csv
import datetime as dt
import hashlib
import io
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prh_ingest.settings import BadInput, Names, Settings

TEXT_SUFFIXES = (".csv", ".txt", ".tsv", ".psv", ".dat")
WORKBOOK_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".xlsb", ".ods")
STREAMED_SUFFIXES = (".xlsx", ".xlsm")  # read as a stream (formats.xlsx); the others whole
DELIMITERS = (",", "|", "^", "\t", ";")  # detected in this order: a tie goes to the first
READ_BUFFER_BYTES = 1 << 20

Row = list[str | None]


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
    # The data rows' bytes when they are not the file's [offset, end): BAD_ROWS=quarantine
    # gives its readable records (rejects.Quarantine.readable). Each call reads afresh.
    data: Callable[[], io.RawIOBase] | None = field(default=None, compare=False, repr=False)

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


def find_header(rows: Iterator[Row], settings: Settings) -> tuple[int, Row]:
    """The header's row number and cells: the row the setting names, else the first
    non-empty one."""
    header_row, setting = settings.header_row, settings.names.header_row_setting
    for number, row in enumerate(rows, start=1):
        if header_row is None and any(value not in (None, "") for value in row):
            return number, row
        if number == header_row:
            if not any(value not in (None, "") for value in row):
                raise BadInput(f"header row {number} is empty ({setting})")
            return number, row
    if header_row is None:
        raise BadInput("file is empty (no header row)")
    raise BadInput(f"the file has no row {header_row} ({setting})")


def check_rows(
    rows: Iterable[Row], width: int, first: int, last: int, row: int, header_setting: str
) -> Iterator[Row]:
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
                    f"if the header is on another row, set {header_setting}"
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


class ChunkStream(io.RawIOBase):
    """An iterator of byte chunks, as a readable stream."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.rest = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self.rest:
            chunk = next(self.chunks, None)
            if chunk is None:
                return 0
            self.rest = memoryview(chunk)
        count = min(len(buffer), len(self.rest))
        buffer[:count] = self.rest[:count]
        self.rest = self.rest[count:]
        return count

    def close(self) -> None:
        close = getattr(self.chunks, "close", None)
        if close is not None:
            close()
        super().close()


def data_rows(path: Path, layout: CsvLayout) -> io.RawIOBase:
    """The bytes of the file's data rows (layout.data's, when it has its own)."""
    return layout.data() if layout.data is not None else Span(path, layout.offset, layout.end)


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

    def __init__(self, file: io.BufferedReader, encoding: str, setting: str) -> None:
        self.file, self.encoding, self.consumed, self.number = file, encoding, 0, 0
        self.setting = setting  # the encoding's

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
            raise BadInput(
                not_encoded_as(self.encoding, self.number, error, self.setting)
            ) from None


def not_encoded_as(encoding: str, line: int, error: UnicodeDecodeError, setting: str) -> str:
    return (
        f"line {line} is not {encoding} (byte {error.object[error.start : error.start + 1]!r}); "
        f"set {setting} to the file's encoding, e.g. cp1252"
    )


def csv_body(path: Path, layout: CsvLayout) -> Iterator[list[str]]:
    """The csv reader over the file's data rows (from the header to the footer)."""
    binary = io.BufferedReader(data_rows(path, layout), READ_BUFFER_BYTES)
    encoding = layout.encoding
    if layout.offset and codecs.lookup(encoding).name == "utf-8-sig":
        encoding = "utf-8"  # past the BOM: the C decoder, not utf-8-sig's Python wrapper
    text = io.TextIOWrapper(binary, encoding=encoding, newline="")
    return csv.reader(text, strict=True, **layout.reader_options())


def header_line(path: Path, settings: Settings) -> str:
    """The line the delimiter is detected from: the header row's, else the first non-empty."""
    with path.open("rb") as file:
        lines = CountedLines(file, settings.encoding, settings.names.encoding_setting)
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
            f"set {settings.names.delimiter_setting} to choose)"
        )
    options = CsvLayout(0, 0, "", delimiter, settings.quote, 0, 0, 0).reader_options()
    with path.open("rb") as file:
        lines = CountedLines(file, settings.encoding, settings.names.encoding_setting)
        try:
            header_rows = csv.reader(lines, strict=True, **options)
            number, header = find_header(header_rows, settings)
        except csv.Error as error:
            raise BadInput(f"line {lines.number} is not valid delimited text ({error})") from None
    first, last = header_span(header)
    columns = column_names(header[first:last], first, number)
    end = max(lines.consumed, footer_start(path, settings.footer_rows))
    layout = CsvLayout(
        lines.consumed, end, settings.encoding, delimiter, settings.quote, len(header), first, last
    )
    return text_table(path, layout, columns, number + 1, settings.names.header_row_setting)


def text_table(
    path: Path, layout: CsvLayout, columns: list[str], first_row: int, header_setting: str
) -> Table:
    """The table of a delimited text file's data rows: a plain one's straight from the csv
    reader, any other's checked and cut to the header's columns as they are read."""
    body = csv_body(path, layout)
    if layout.plain:
        return Table(columns, first_row, body, layout)
    rows = check_rows(body, layout.width, layout.first, layout.last, first_row, header_setting)
    return Table(columns, first_row, rows, layout)


def cell_text(value: object) -> str | None:
    """Store every cell as text: whole numbers without `.0`, dates in ISO 8601."""
    if type(value) is str:  # the common case first: this runs once per cell
        return value or None
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    if isinstance(value, dt.date | dt.time):  # datetime is a date
        return value.isoformat()
    return None if value is None else str(value)


def sheet_name(sheets: list[tuple[str, bool]], settings: Settings) -> str:
    """The sheet the setting names, else the first visible one; *sheets* are the workbook's
    (name, visible) in order."""
    wanted = settings.sheet
    if wanted is None:
        visible = [name for name, shown in sheets if shown]
        if not visible:
            raise BadInput("the workbook has no visible sheet")
        return visible[0]
    if wanted not in [name for name, _ in sheets]:
        there = ", ".join(repr(name) + ("" if shown else " (hidden)") for name, shown in sheets)
        raise BadInput(
            f"no sheet {wanted!r} ({settings.names.sheet_setting}); the workbook has {there}"
        )
    return wanted


def read_workbook(path: Path, settings: Settings) -> Table:
    # calamine reads every workbook the stream does not: needed for any workbook.
    from python_calamine import CalamineError, CalamineWorkbook, SheetVisibleEnum

    if path.suffix.lower() in STREAMED_SUFFIXES and (streamed := read_streamed(path, settings)):
        return streamed
    try:
        workbook = CalamineWorkbook.from_path(str(path))
        sheets = [(s.name, s.visible == SheetVisibleEnum.Visible) for s in workbook.sheets_metadata]
        name = sheet_name(sheets, settings)
        sheet = workbook.get_sheet_by_name(name)
    except CalamineError as error:
        raise BadInput(f"not a readable {path.suffix.lower()} workbook ({error})") from None
    if sheet.start is None:
        raise BadInput(f"sheet {name!r} is empty")
    # iter_rows yields every row from row 1, each from the sheet's first used column on.
    rows = (list(map(cell_text, row)) for row in sheet.iter_rows())
    return sheet_table(rows, sheet.start[1], settings)


def read_streamed(path: Path, settings: Settings) -> Table | None:
    """An `.xlsx`/`.xlsm` sheet read as a stream (prh_ingest.formats.xlsx: memory bounded
    whatever the rows), giving the rows calamine gives; None when the stream cannot read it
    (then calamine reads it, or names why not)."""
    from prh_ingest.formats import xlsx

    try:
        workbook = xlsx.Workbook(path)
        sheets = [(info.name, info.visible) for info in workbook.sheets]
        name = sheet_name(sheets, settings)
        sheet = workbook.sheet(name)
        start = sheet.start  # the first pass: a sheet the stream cannot read says so here
    except xlsx.WorkbookError:
        return None
    if start is None:
        raise BadInput(f"sheet {name!r} is empty")
    return sheet_table(streamed_rows(sheet, path), start[1], settings)


def streamed_rows(sheet: object, path: Path) -> Iterator[Row]:
    """The sheet's rows; a part unreadable half-way refuses the load (one transaction: the
    table stays as it was)."""
    from prh_ingest.formats import xlsx

    try:
        yield from sheet.rows()  # type: ignore[attr-defined]
    except xlsx.WorkbookError as error:
        raise BadInput(f"not a readable {path.suffix.lower()} workbook ({error})") from None


def sheet_table(rows: Iterator[Row], left: int, settings: Settings) -> Table:
    """The table in a sheet's rows (every row from row 1, each from column *left* on)."""
    number, header = find_header(rows, settings)
    first, last = header_span(header)
    columns = column_names(header[first:last], left + first, number)
    body = without_footer(rows, settings.footer_rows)
    checked = check_rows(
        body, len(header), first, last, number + 1, settings.names.header_row_setting
    )
    return Table(columns, number + 1, checked)


def read_table(path: Path, settings: Settings) -> Table:
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return read_text(path, settings)
    if suffix in WORKBOOK_SUFFIXES:
        return read_workbook(path, settings)
    known = " ".join(TEXT_SUFFIXES + WORKBOOK_SUFFIXES)
    raise BadInput(
        f"cannot read a {suffix or 'suffix-less'} file: the source must be one of {known}"
    )


class Sha256(threading.Thread):
    """A file's SHA-256, hashed while the loader opens the sink (hashlib and reading let go
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


def open_source(setting: str | None, names: Names) -> Path:
    """Check the source file exists and is readable; the error names the file."""
    if not setting:
        raise BadInput(f"{names.source_setting} is not set")
    path = Path(setting).absolute()
    if not path.is_file():
        raise BadInput(f"{names.source_setting}={setting}: file not found")
    if not os.access(path, os.R_OK):
        raise BadInput(
            f"{names.source_setting}={setting}: file is not readable (permission denied)"
        )
    return path


def checked(table: Table, names: Names) -> Table:
    """A plain text file's table with its rows checked as they are read (others are already)."""
    if not table.plain_csv:
        return table
    layout = table.csv
    header_setting = names.header_row_setting
    rows = check_rows(
        table.rows, layout.width, layout.first, layout.last, table.first_row, header_setting
    )
    return Table(table.columns, table.first_row, rows)


def find_bad_row(source: Path, table: Table, error: Exception, names: Names) -> str:
    """Why the database or the reader refused a CSV's rows: read them again, checking each.
    Returns the first bad row's message, or the database's own when every row fits (its
    `line N` counts from the first data row)."""
    if table.csv is None:
        raise error
    layout, encoding = table.csv, table.csv.encoding
    reader = csv_body(source, layout)
    try:
        header_setting = names.header_row_setting
        for _ in check_rows(
            reader, layout.width, layout.first, layout.last, table.first_row, header_setting
        ):
            pass
    except BadInput as bad_row:
        return str(bad_row)
    except csv.Error as bad_csv:
        return f"row {table.first_row + reader.line_num - 1} is not valid CSV ({bad_csv})"
    except UnicodeDecodeError:
        return bad_line(source, encoding, names.encoding_setting)
    if isinstance(error, UnicodeDecodeError):
        return bad_line(source, encoding, names.encoding_setting)
    message = str(error).strip().splitlines()[0]
    line = re.search(r"line (\d+)", getattr(getattr(error, "diag", None), "context", "") or "")
    where = f"row {table.first_row + int(line.group(1)) - 1}: " if line else ""
    return f"{where}{message}"


def bad_line(path: Path, encoding: str, setting: str) -> str:
    with path.open("rb") as file:
        for number, line in enumerate(file, start=1):
            try:
                line.decode(encoding)
            except UnicodeDecodeError as error:
                return not_encoded_as(encoding, number, error, setting)
    return f"the file is not {encoding}"
