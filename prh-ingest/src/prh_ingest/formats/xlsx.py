"""`.xlsx` and `.xlsm` workbooks read as a stream: `open_sheet(path, name)` then `rows()`.

calamine (which reads the other workbook formats) builds a whole sheet in memory: about 800 MB
for Excel's maximum of 1,048,576 rows x 8 columns. Here the sheet's XML is decompressed and
cut into rows as it is read, so memory holds the shared-strings table (Excel's strings, each
once) and one chunk of XML, whatever the number of rows.

The rows are what calamine's `iter_rows()` gives, each cell turned into text as the loader
does (`cell_text`): rows from the sheet's first row down to its last non-empty one, empty rows
included; each from the sheet's first used column to its last; whole numbers without `.0`;
dates and times as ISO 8601 by the cell's number format (calamine's rules: the built-in date
formats, custom formats with date letters outside quotes and brackets, `[h]` durations, the
1904 date system); booleans as `True`/`False`; empty cells and error cells as None. The
columns' span is learned in a first, lighter pass over the sheet (calamine's span is that of
the non-empty cells, which the sheet's `<dimension>` does not always give: it covers styled
empty cells too, and some writers leave it out, as openpyxl's write-only mode does).

Cells are matched with regular expressions over the XML text, not an XML parser: a sheet's
cells are a regular, flat grammar, and a parser's per-element callbacks in Python are what
makes openpyxl's read-only mode about 16x slower than calamine. Each 128 KB of the sheet is
matched at once (row marks and cells in one findall). A part holding a cell the fast pattern
does not read (a formula, rich inline text, attributes in another order) is read row by row
by a general pattern, about half as fast. Sheets whose elements carry a namespace prefix
(`<x:row>`, written by some libraries) raise `NotStreamable`: read those with calamine.

Speed: the price of bounded memory is Python doing per cell what calamine does in Rust. On
the bench's 1,048,576 x 8 sheet (benchmarks/formats.py: inline strings, unicode, CR LF in one
row of eight, dates and times) the stream read 84,000 and 111,000 rows/s in two runs against
calamine's (with cell_text) 97,000 and 121,000, in 49 MB against 803 MB (2026-12-07, 2 cores
shared with other work; 68,000-72,000 before the changes below). Of its CPU about a tenth is
the first pass (mostly decompressing the sheet: a part within the span seen so far is one
regex search), half the findall (its match tuples, half of that), the rest the per-cell
loop. What made the difference: 128 KB parts instead of 1 MB (a part's matches stay in the
CPU's caches: 18%), the cheap first pass (15%), the row number in the same findall, and
no tuple per date cell.
"""

from __future__ import annotations

import codecs
import datetime as dt
import functools
import math
import operator
import posixpath
import re
import zipfile
import zlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from defusedxml import ElementTree as SafeTree  # no entity expansion, no external entities

MAIN_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
REL_NS = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
PKG_REL_NS = "{http://schemas.openxmlformats.org/package/2006/relationships}"
# 128 KB of XML at a time: the matches of a part (some 12,000 tuples) then stay in the CPU's
# caches; with 1 MB parts the same rows took about 13% more CPU.
CHUNK_BYTES = 1 << 17

OTHER, DATETIME, DURATION = 0, 1, 2  # calamine's CellFormat
BUILTIN_FORMATS = {**dict.fromkeys((*range(14, 23), 45, 47), DATETIME), 46: DURATION}

ROW = re.compile(r"<row\b([^>]*?)(?:/>|>(.*?)</row>)", re.S)
ROW_NUMBER = re.compile(r'\br="(\d+)"')
# One cell as Excel and openpyxl write it: r, s, t in that order, then a <v> or an inline
# string. Groups: column letters, style, type, value, inline text's xml:space, inline text.
FAST_CELL = re.compile(
    r'<c r="([A-Z]{1,3})\d+"(?: s="(\d+)")?(?: t="(\w+)")?'
    r'(?: ?/>|>(?:<v>([^<]*)</v>|<v ?/>|<is><t( xml:space="preserve")?>([^<]*)</t></is>)?</c>)'
)
ANY_CELL = re.compile(r"<c\b([^>]*?)(?:/>|>(.*?)</c>)", re.S)
ATTRIBUTE = re.compile(r"""([\w:]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
VALUE = re.compile(r"<v(?:\s[^>]*)?>(.*?)</v>", re.S)
INLINE = re.compile(r"<is(?:\s[^>]*)?>(.*?)</is>", re.S)
PHONETIC = re.compile(r"<rPh\b.*?</rPh>", re.S)
TEXT = re.compile(r"<t(\s[^>]*)?>(.*?)</t>", re.S)
ENTITY = re.compile(r"&(#x[0-9A-Fa-f]+|#[0-9]+|lt|gt|amp|quot|apos);")
ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}
OOXML_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")
PREFIXED = re.compile(r"<\w+:sheetData\b")
# A part of the sheet at once: row marks (groups 1-3: the r of `<row r="…"`, as Excel writes
# it, read here; else the row's attributes), fast cells (4-9), any other cell (10). Possessive
# quantifiers: what they take is never given back, which saves the regex engine's bookkeeping.
TOKEN = re.compile(
    r'(<row)(?: r="(\d+)"|\b)([^>]*?)/?>|'
    + FAST_CELL.pattern.replace(r"\d+", r"\d++").replace("[^<]*", "[^<]*+")
    + r"|(<c\b)"
)
# The first pass (the columns' span) reads bytes: no decoding.
FAST_CELL_BYTES, PREFIXED_BYTES = (
    re.compile(pattern.pattern.encode()) for pattern in (FAST_CELL, PREFIXED)
)
OTHER_CELL = operator.itemgetter(-1)  # TOKEN's last group: a cell the fast pattern does not read
EXCEL_EPOCH = dt.datetime(1899, 12, 30)


class WorkbookError(ValueError):
    """The workbook cannot be read; str() names the problem, never a cell's value."""


class NotStreamable(WorkbookError):
    """The sheet is valid but written in a way this reader does not stream (read it whole)."""


@dataclass(frozen=True)
class SheetInfo:
    name: str
    member: str  # its XML's path inside the zip
    visible: bool


def column_letters(index: int) -> str:
    """A column's letters from its 0-based index (0 is A)."""
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(65 + remainder) + letters
    return letters


def column_index(letters: str) -> int:
    """0-based index of a column's letters (A is 0)."""
    index = 0
    for letter in letters:
        index = index * 26 + ord(letter) - 64
    return index - 1


# Every one- to three-letter column (A to ZZZ; Excel's last is XFD): FAST_CELL's letters.
COLUMNS = {column_letters(index): index for index in range(26 + 26**2 + 26**3)}
COLUMN_BYTES = {letters.encode(): index for letters, index in COLUMNS.items()}


@functools.lru_cache(maxsize=64)
def outside_cells(low: int, high: int) -> re.Pattern[bytes] | None:
    """A pattern found in a part of the sheet that may hold a cell outside columns *low* to
    *high* (the general pattern's `<c\\b`, in bytes): any cell but one whose r, first as
    Excel writes it, names a column in that range; any cell at all when the range is empty.
    None (every part read row by row) when the range is too wide for a quick pattern."""
    if high - low >= 256:
        return None
    letters = "|".join(column_letters(index) for index in range(low, high + 1))
    inside = rf'(?! r="(?:{letters})\d)' if letters else ""
    return re.compile(rf"<c(?!\w){inside}".encode())


def split_rows(part: str, number: int) -> Generator[tuple[int, str], None, int]:
    """(0-based row number, content) of each `<row>` with content in *part* (whole rows),
    numbered on from *number*; returns the last row's number."""
    pieces = part.split("</row>")  # a split runs at C speed, a lazy regex does not
    tail = pieces.pop()
    for piece in pieces:
        start = piece.rfind("<row")
        if piece.find("<row") != start:  # empty rows (<row …/>) before this one
            for match in ROW.finditer(piece, 0, start):
                number = row_number(match[1], number)
        close = piece.find(">", start)
        number = row_number(piece[start + 4 : close], number)
        if close + 1 < len(piece):
            yield number, piece[close + 1 :]
    for match in ROW.finditer(tail):
        number = row_number(match[1], number)
        if match[2]:
            yield number, match[2]
    return number


def general_cells(body: str) -> Iterator[tuple[int, str, str, str]]:
    """(column, type, style, value or inline string's XML) of each non-empty cell of a row's
    content, for any cell layout: attributes in any order or quotes, formulas, no `r`."""
    column = -1
    for match in ANY_CELL.finditer(body):
        attributes = {
            m[1]: m[2] if m[2] is not None else m[3] for m in ATTRIBUTE.finditer(match[1])
        }
        reference = attributes.get("r")
        column = column_index(reference.rstrip("0123456789")) if reference else column + 1
        content = match[2] or ""
        kind = attributes.get("t", "n")
        if kind == "inlineStr":
            found = INLINE.search(content)
        else:
            found = VALUE.search(content)
            if found is not None and not found[1] and kind != "str":
                found = None
        if found is not None:
            yield column, kind, attributes.get("s", ""), found[1]


def row_number(attributes: str, previous: int) -> int:
    """A `<row>`'s 0-based number: its r attribute, else the one after *previous*."""
    found = ROW_NUMBER.search(attributes)
    return int(found[1]) - 1 if found else previous + 1


def xml_text(text: str) -> str:
    """Character data as an XML parser gives it: line ends normalized, entities replaced."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "&" in text:
        text = ENTITY.sub(entity, text)
    return text


def entity(match: re.Match[str]) -> str:
    name = match[1]
    if name[0] == "#":
        return chr(int(name[2:], 16) if name[1] == "x" else int(name[1:]))
    return ENTITIES[name]


def ooxml_unescape(text: str) -> str:
    """`_x000D_` and the like, the escapes OOXML uses in strings (calamine unescapes them)."""
    return OOXML_ESCAPE.sub(lambda m: chr(int(m[1], 16)), text) if "_x" in text else text


def string_text(text: str, preserve: bool) -> str:
    """A `<t>`'s text as calamine takes it: ASCII blanks trimmed unless xml:space="preserve"."""
    text = xml_text(text)
    return ooxml_unescape(text if preserve else text.strip(" \t\r\n"))


def custom_format(code: str) -> int:
    """calamine's detect_custom_number_format, line by line."""
    escaped = is_quote = hms = ap = False
    brackets = 0
    prev = " "
    for s in code:
        if escaped:
            escaped = False
        elif s in "_\\*":
            escaped = True
        elif is_quote:
            if s == '"':
                is_quote = False
        elif s == '"':
            is_quote = True
        elif s == ";":
            return OTHER
        elif s == "[":
            brackets += 1
        elif s == "]" and brackets == 1 and hms:
            return DURATION
        elif s == "]":
            brackets = max(brackets - 1, 0)
        elif s in "aA" and not ap and brackets == 0:
            ap = True
        elif s in "pm/PM" and ap and brackets == 0:
            return DATETIME
        elif s in "dmhysDMHYS" and not ap and brackets == 0:
            return DATETIME
        elif not (hms and s.lower() == prev.lower()):
            hms = prev == "[" and s in "mhsMHS"
        prev = s
    return OTHER


def cell_text(value: object) -> str | None:
    """The text the loader stores for a value python-calamine gives (the template's ingest.py
    `cell_text`: one owner once the loader imports it from here): whole numbers without `.0`,
    dates and times in ISO 8601, "" as None. rows() gives exactly this for every cell."""
    if type(value) is str:  # the common case first: this runs once per cell
        return value or None
    if isinstance(value, float):
        return number_text(value)
    if isinstance(value, dt.date | dt.time):  # datetime is a date
        return value.isoformat()
    return None if value is None else str(value)


def round_half_away(value: float) -> int:
    return int(math.floor(value + 0.5)) if value >= 0 else -int(math.floor(-value + 0.5))


def serial_text(value: float, kind: int, is_1904: bool) -> str:
    """A date-formatted number's text: python-calamine's date, time, datetime or timedelta."""
    milliseconds = round_half_away(value * 86_400_000)
    if kind == DURATION:
        return str(dt.timedelta(milliseconds=milliseconds))
    days = value + 1462 if is_1904 else value
    days = days if days >= 60 else days + 1  # Excel's 1900-02-29
    try:
        moment = EXCEL_EPOCH + dt.timedelta(milliseconds=round_half_away(days * 86_400_000))
    except OverflowError:
        return number_text(value)
    if value < 1.0:
        return moment.time().isoformat()
    if value == float(int(value)):
        return moment.date().isoformat()
    return moment.isoformat()


def number_text(value: float) -> str:
    return str(int(value)) if value.is_integer() else str(value)


def iso_text(value: str) -> str:
    """A `t="d"` cell (ISO 8601 text) as python-calamine gives it, else the text as is."""
    try:
        if "T" in value:
            moment = dt.datetime.fromisoformat(value)
            return value if moment.tzinfo else moment.isoformat()
        if ":" in value:
            return dt.time.fromisoformat(value).isoformat()
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        return value


class Workbook:
    """An open `.xlsx`/`.xlsm`: its sheets, styles and shared strings (read on open)."""

    def __init__(self, path: Path) -> None:
        try:
            self.zip = zipfile.ZipFile(path)
            self.sheets, self.is_1904, parts = self.read_workbook()
            self.formats = self.read_styles(parts["styles"])
            self.strings = self.read_strings(parts["sharedStrings"])
        except (zipfile.BadZipFile, KeyError, ElementTree.ParseError, ValueError) as error:
            raise WorkbookError(f"not a readable workbook ({type(error).__name__})") from None

    def __enter__(self) -> Workbook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.zip.close()

    def part(self, member: str) -> ElementTree.Element:
        with self.zip.open(member) as stream:
            return SafeTree.parse(stream).getroot()

    def relationships(self, member: str) -> dict[str, tuple[str, str]]:
        """Relationship id -> (type's last word, target's path in the zip) of part *member*."""
        folder, name = posixpath.split(member)
        rels = posixpath.join(folder, "_rels", f"{name}.rels")
        if rels not in self.zip.NameToInfo:
            return {}
        return {
            rel.get("Id", ""): (
                rel.get("Type", "").rsplit("/", 1)[-1],
                target_path(folder, rel.get("Target", "")),
            )
            for rel in self.part(rels).iter(f"{PKG_REL_NS}Relationship")
        }

    def read_workbook(self) -> tuple[list[SheetInfo], bool, dict[str, str]]:
        """The sheets, the date system, and the paths of the styles and shared strings (by
        the workbook's relationships; the usual names when it has none)."""
        office = next(
            (path for kind, path in self.relationships("").values() if kind == "officeDocument"),
            "xl/workbook.xml",
        )
        root = self.part(office)
        targets = self.relationships(office)
        base = posixpath.dirname(office)
        parts = {name: posixpath.join(base, f"{name}.xml") for name in ("styles", "sharedStrings")}
        parts.update((kind, path) for kind, path in targets.values() if kind in parts)
        sheets = [
            SheetInfo(
                sheet.get("name", ""),
                targets.get(sheet.get(f"{REL_NS}id", ""), ("", ""))[1],
                sheet.get("state", "visible") == "visible",
            )
            for sheet in root.iter(f"{MAIN_NS}sheet")
        ]
        properties = root.find(f"{MAIN_NS}workbookPr")
        is_1904 = properties is not None and properties.get("date1904") in ("1", "true")
        return sheets, is_1904, parts

    def read_styles(self, member: str) -> list[int]:
        """Each cell style's kind of number (OTHER, DATETIME, DURATION), by style index."""
        if member not in self.zip.NameToInfo:
            return []
        root = self.part(member)
        custom = {
            fmt.get("numFmtId"): custom_format(fmt.get("formatCode", ""))
            for fmt in root.iter(f"{MAIN_NS}numFmt")
        }
        cell_xfs = root.find(f"{MAIN_NS}cellXfs")
        formats = []
        for xf in cell_xfs.iter(f"{MAIN_NS}xf") if cell_xfs is not None else ():
            number = xf.get("numFmtId")
            if number is None:
                formats.append(OTHER)
            elif number in custom:
                formats.append(custom[number])
            else:
                formats.append(
                    BUILTIN_FORMATS.get(int(number), OTHER) if number.isdigit() else OTHER
                )
        return formats

    def read_strings(self, member: str) -> list[str]:
        if member not in self.zip.NameToInfo:
            return []
        strings: list[str] = []
        root = None
        with self.zip.open(member) as stream:
            for event, element in SafeTree.iterparse(stream, events=("start", "end")):
                if root is None:
                    root = element
                elif event == "end" and element.tag == f"{MAIN_NS}si":
                    strings.append(item_text(element))
                    root.clear()  # what is read is dropped: memory holds the strings only
        return strings

    def sheet(self, name: str | None = None) -> Sheet:
        """The sheet called *name*, else the first visible one."""
        if name is None:
            visible = [sheet for sheet in self.sheets if sheet.visible]
            if not visible:
                raise WorkbookError("the workbook has no visible sheet")
            return Sheet(self, visible[0])
        for sheet in self.sheets:
            if sheet.name == name:
                return Sheet(self, sheet)
        there = ", ".join(
            repr(sheet.name) + ("" if sheet.visible else " (hidden)") for sheet in self.sheets
        )
        raise WorkbookError(f"no sheet {name!r}; the workbook has {there}")


def target_path(folder: str, target: str) -> str:
    if target.startswith("/"):
        return target.lstrip("/")
    return posixpath.normpath(posixpath.join(folder, target))


def item_text(element: ElementTree.Element) -> str:
    """A shared string's (`<si>`) text: its `<t>`, or its runs' `<t>`s, phonetic runs left out."""
    parts = []
    for child in element:
        if child.tag == f"{MAIN_NS}t":
            parts.append(t_text(child))
        elif child.tag == f"{MAIN_NS}r":
            parts.extend(t_text(t) for t in child.iter(f"{MAIN_NS}t"))
    return "".join(parts)


def t_text(element: ElementTree.Element) -> str:
    text = element.text or ""
    preserve = element.get("{http://www.w3.org/XML/1998/namespace}space") == "preserve"
    return ooxml_unescape(text if preserve else text.strip(" \t\r\n"))


class Sheet:
    def __init__(self, workbook: Workbook, info: SheetInfo) -> None:
        self.workbook = workbook
        self.name = info.name
        self.member = info.member
        if self.member not in workbook.zip.NameToInfo:
            raise WorkbookError(f"sheet {info.name!r} is not a worksheet")
        self._span: tuple[int, int] | None | bool = False  # not yet measured
        self.styles: dict[str, int] = {}  # style index as written -> kind of number
        # Kind (DATETIME, DURATION) -> date number as written -> its text: nested, as a
        # (kind, number) key would cost a tuple per cell.
        self.serials: dict[int, dict[str, str]] = {DATETIME: {}, DURATION: {}}
        self._positions: tuple[int, dict[str, int]] = (-1, {})  # see positions()

    def chunks(self, text: bool) -> Iterator[str | bytes]:
        """The sheet's XML, CHUNK_BYTES at a time: decoded when *text*, else bytes."""
        decoder = codecs.getincrementaldecoder("utf-8")() if text else None
        first = True
        try:
            with self.workbook.zip.open(self.member) as raw:
                while data := raw.read(CHUNK_BYTES):
                    chunk = decoder.decode(data) if decoder else data
                    if first:
                        if (PREFIXED if text else PREFIXED_BYTES).search(chunk):  # type: ignore[arg-type]
                            raise NotStreamable(f"sheet {self.name!r} uses namespace prefixes")
                        first = False
                    yield chunk
            if decoder:
                decoder.decode(b"", final=True)
        except (zipfile.BadZipFile, zlib.error, EOFError) as error:
            raise WorkbookError(
                f"sheet {self.name!r} is not readable ({type(error).__name__})"
            ) from None
        except UnicodeDecodeError:
            raise NotStreamable(f"sheet {self.name!r} is not UTF-8") from None

    def complete_rows(self, text: bool) -> Iterator[Any]:
        """The sheet's XML in parts that end after a `</row>` (the last part: the rest)."""
        row_end = "</row>" if text else b"</row>"
        rest = row_end[:0]
        for chunk in self.chunks(text):
            part = rest + chunk
            cut = part.rfind(row_end) + len(row_end)
            if cut < len(row_end):
                rest = part
                continue
            rest = part[cut:]
            yield part[:cut]
        yield rest

    def filled_rows(self, left: int, width: int) -> Iterator[tuple[int, list[str | None]]]:
        """(0-based row number, cells from column *left* on) of every row with a value.
        Each part of the XML is matched at once: its row marks and cells in one findall."""
        number = -1
        for part in self.complete_rows(text=True):
            tokens = TOKEN.findall(part)
            if not any(map(OTHER_CELL, tokens)):  # map and any run at C speed
                # Without an entity, a CR or an OOXML escape in the whole part (one scan of
                # each at C speed), no inline string needs more than its blanks trimmed.
                plain = "&" not in part and "\r" not in part and "_x" not in part
                number = yield from self.token_rows(tokens, left, width, number, plain)
                continue
            # A cell the fast pattern does not read (a formula, rich text, another attribute
            # order): this part row by row, the general way.
            for number, body in split_rows(part, number):  # noqa: B020 (it carries on)
                row: list[str | None] = [None] * width
                if self.row_fill(number, body, row, left):
                    yield number, row

    def token_rows(
        self, tokens: list[tuple[str, ...]], left: int, width: int, number: int, plain: bool
    ) -> Generator[tuple[int, list[str | None]], None, int]:
        """The rows of TOKEN matches (row marks and cells) with a value; returns the number
        of the last row. *plain*: no inline string holds an entity, a CR or an escape."""
        strings, styles, serials = self.workbook.strings, self.styles, self.serials
        positions = self.positions(left)
        row: list[str | None] = []
        found = False
        try:
            for mark, r, attributes, letters, style, kind, value, preserve, inline, _ in tokens:
                if mark:
                    if found:
                        yield number, row
                    number = int(r) - 1 if r else row_number(attributes, number)
                    row = [None] * width
                    found = False
                    continue
                if kind == "inlineStr":
                    if not inline:
                        continue
                    text = inline if preserve else inline.strip(" \t\r\n")
                    if not plain and ("&" in text or "\r" in text or "_x" in text):
                        text = string_text(inline, bool(preserve))
                elif not value:
                    continue
                elif kind == "s":
                    text = strings[int(value)]
                elif kind == "" or kind == "n":
                    number_format = styles.get(style)
                    if number_format is None:
                        number_format = styles[style] = self.number_format(style)
                    if number_format == OTHER:  # whole numbers written as digits: the usual
                        fits = value.isdigit() and len(value) < 16 and value[0] != "0"
                        text = value if fits else number_text(float(value))
                    else:  # dates and times repeat down a column: each converted once
                        texts = serials[number_format]
                        text = texts.get(value)
                        if text is None:
                            if len(texts) > 100_000:
                                texts.clear()
                            text = texts[value] = self.number(value, style)
                else:
                    text = self.typed(kind, value)
                row[positions[letters]] = text or None
                found = True
        except (IndexError, ValueError):  # a string index or a number that is not one
            raise WorkbookError(
                f"sheet {self.name!r}, row {number + 1}: a cell is not readable"
            ) from None
        if found:
            yield number, row
        return number

    def positions(self, left: int) -> dict[str, int]:
        """Each column's letters -> its place in a row that starts at column *left*."""
        if self._positions[0] != left:
            self._positions = (left, {letters: i - left for letters, i in COLUMNS.items()})
        return self._positions[1]

    def number_format(self, style: str) -> int:
        """The kind of number (OTHER, DATETIME, DURATION) of cell style *style* ("" is none)."""
        formats = self.workbook.formats
        return formats[int(style)] if style and int(style) < len(formats) else OTHER

    def number(self, value: str, style: str) -> str:
        number = float(value)
        kind = self.number_format(style)
        if kind == OTHER:
            return number_text(number)
        return serial_text(number, kind, self.workbook.is_1904)

    def typed(self, kind: str, value: str) -> str | None:
        if kind == "b":
            return "False" if value == "0" else "True"
        if kind == "e":
            return None
        if kind == "d":
            return iso_text(value)
        return xml_text(value)  # "str": a formula's text result

    def fill(self, body: str, row: list[str | None], left: int = 0) -> bool:
        """Set `row[column - left]` to the text of each non-empty cell of a row's content,
        for any cell layout (attributes in any order, formulas, rich inline text); whether
        the row has any."""
        found = False
        for column, kind, style, raw in general_cells(body):
            if kind == "inlineStr":
                runs = TEXT.findall(PHONETIC.sub("", raw))
                text = "".join(string_text(t, 'xml:space="preserve"' in (a or "")) for a, t in runs)
            elif kind == "s":
                text = self.workbook.strings[int(raw)]
            elif kind == "n":
                text = self.number(raw.strip(), style)
            else:
                text = self.typed(kind, raw)
            row[column - left] = text or None
            found = True
        return found

    def row_fill(self, number: int, body: str, row: list[str | None], left: int = 0) -> bool:
        try:
            return self.fill(body, row, left)
        except (IndexError, ValueError):  # a string index or a number that is not one
            raise WorkbookError(
                f"sheet {self.name!r}, row {number + 1}: a cell is not readable"
            ) from None

    def span(self) -> tuple[int, int] | None:
        """(first, last) column index of the sheet's non-empty cells; None for an empty sheet.
        Learned in a first pass over the sheet's bytes, before the first row is given. A part
        whose cells all lie within the span of the parts before it cannot widen it: one
        regex search, no match, skips it. Only the other parts (the first, and those with a
        cell outside or one the fast pattern does not read) are read row by row."""
        if self._span is False:
            low, high = 1 << 30, -1
            outside: re.Pattern[bytes] | None = None  # the first part is always read
            for part in self.complete_rows(text=False):
                if outside is not None and outside.search(part) is None:
                    continue
                low, high = self.part_span(part, low, high)
                outside = outside_cells(low, high)
            self._span = None if high < 0 else (low, high)
        return self._span  # type: ignore[return-value]

    def part_span(self, part: bytes, low: int, high: int) -> tuple[int, int]:
        """(low, high) widened by the edges of each row in *part*: of each row only the first
        and last cell are matched when both hold a value (cells come in column order), else
        the whole row."""
        for piece in part.split(b"</row>"):
            start = piece.rfind(b"<row")
            if start < 0:
                continue  # the sheet's tail
            first = FAST_CELL_BYTES.match(piece, piece.find(b"<c", start))
            last = FAST_CELL_BYTES.match(piece, piece.rfind(b"<c"))
            if first and last and (first[4] or first[6]) and (last[4] or last[6]):
                edges = (COLUMN_BYTES[first[1]], COLUMN_BYTES[last[1]])
            elif b"<c" not in piece[start:]:
                continue  # no cell: an empty row, or the sheet's head or tail
            else:
                edges = self.general_edges(piece[start:])
                if edges is None:
                    continue
            low, high = min(low, edges[0]), max(high, edges[1])
        return low, high

    def general_edges(self, rows: bytes) -> tuple[int, int] | None:
        """span() for rows (`<row …>` …) the fast pattern does not read at their edges."""
        try:
            text = rows.decode()
        except UnicodeDecodeError:
            raise NotStreamable(f"sheet {self.name!r} is not UTF-8") from None
        columns = [
            column
            for _, body in split_rows(text + "</row>", -1)
            for column, *_ in general_cells(body)
        ]
        return (min(columns), max(columns)) if columns else None

    @property
    def start(self) -> tuple[int, int] | None:
        """(row, column) of the first non-empty cell, as calamine's `start` (0-based)."""
        span = self.span()
        for number, _ in self.filled_rows(span[0], span[1] - span[0] + 1) if span else ():
            return number, span[0]  # type: ignore[index]
        return None

    def rows(self) -> Iterator[list[str | None]]:
        """Every row from the first to the last non-empty one, each from the first used
        column to the last: what calamine's iter_rows() and the loader's cell_text() give."""
        span = self.span()
        if span is None:
            return
        left, right = span
        width = right - left + 1
        next_row = 0
        for number, row in self.filled_rows(left, width):
            while next_row < number:  # rows without a value: empty, up to the last value
                yield [None] * width
                next_row += 1
            yield row
            next_row = number + 1


def open_sheet(path: Path, name: str | None = None) -> Sheet:
    """The sheet *name* of the workbook at *path* (default: the first visible one)."""
    return Workbook(path).sheet(name)
