"""PostgreSQL COPY: the byte-level checks of the feed.

A plain delimited text file's bytes go to the server, which parses them itself (COPY's CSV
format with the file's delimiter and qualifier), unless COPY would read them otherwise than
Python's csv reader; then, and for every other table, the checked rows go row by row.
"""

from __future__ import annotations

import codecs
import csv
import io
import queue
import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

from prh_ingest.load.readers import (
    CsvLayout,
    Table,
    checked,
    data_rows,
    find_bad_row,
    whole_lines,
)
from prh_ingest.settings import BadInput, Names

if TYPE_CHECKING:  # the driver is imported only where it is used
    import psycopg
    import sqlalchemy as sa

# COPY's CSV format always has a text qualifier: with QUOTE=none it is this byte, and a file
# that holds it goes through Python's reader instead.
NO_QUOTE_STANDIN = "\x01"
COPY_CHUNK_BYTES = 1 << 20


class NotAsCopyReadsIt(Exception):
    """COPY would read the file otherwise than the csv reader: a QUOTE=none file holds the
    byte COPY takes for its qualifier, or a value holds a qualifier after its first character
    (`5" laceration`, `12"`: data to the csv reader, the start of a quoted part to COPY)."""


def copy_into_postgresql(
    connection: sa.Connection, source: Path, table: Table, names: Names, into: str = ""
) -> int:
    """COPY: plain delimited text's bytes for the server to parse, else the checked rows;
    into the source's table, or the table *into* (LOAD_MODE=merge's staging table)."""
    into = into or names.table
    import psycopg  # the PostgreSQL driver: needed only here

    cursor = connection.connection.cursor()
    try:
        if table.plain_csv:
            try:
                with connection.begin_nested():  # undone, then row by row
                    return copy_text(cursor, source, table, into)
            except NotAsCopyReadsIt:
                table = checked(table, names)
        return copy_rows(cursor, table, into)
    except (psycopg.errors.DataError, csv.Error, UnicodeDecodeError) as error:
        raise BadInput(find_bad_row(source, table, error, names)) from None


def copy_rows(cursor: psycopg.Cursor, table: Table, into: str) -> int:
    columns = ", ".join(table.columns)
    with cursor.copy(f"COPY {into} ({columns}) FROM STDIN") as copy:
        for row in table.rows:
            copy.write_row([value or None for value in row])
    return cursor.rowcount


def copy_text(cursor: psycopg.Cursor, source: Path, table: Table, into: str) -> int:
    """The file's data rows for the server to parse (COPY's CSV format with the file's
    delimiter and qualifier). Empty cells are NULL; quoted ones ("") too, as on SQLite
    (FORCE_NULL, which a file without a qualifier does not need)."""
    layout, columns = table.csv, ", ".join(table.columns)
    quote = NO_QUOTE_STANDIN if layout.quote is None else layout.quote
    force_null = "" if layout.quote is None else f", FORCE_NULL ({columns})"
    options = (
        f"FORMAT csv, DELIMITER {sql_character(layout.delimiter)}, "
        f"QUOTE {sql_character(quote)}{force_null}"
    )
    statement = f"COPY {into} ({columns}) FROM STDIN ({options})"
    chunks = closing(ahead(checked_chunks(source, layout, quote)))
    with cursor.copy(statement) as copy, chunks as checked:  # the thread ends before COPY
        for chunk in checked:
            copy.write(chunk)
    return cursor.rowcount


def checked_chunks(source: Path, layout: CsvLayout, quote: str) -> Iterator[bytes]:
    """The data rows' bytes in chunks of whole lines, each checked to read alike in COPY."""
    stand_in = NO_QUOTE_STANDIN.encode() if layout.quote is None else None
    qualifiers = QualifierCheck(layout.delimiter, quote)
    inside = False  # the chunk starts inside a quoted value (one with a line end in it)
    for chunk, quotes in end_markers_quoted(utf8_chunks(source, layout), quote.encode()):
        if quotes and (stand_in is not None or not qualifiers.read_alike(chunk, inside)):
            raise NotAsCopyReadsIt
        inside ^= quotes % 2 == 1
        yield chunk


def ahead(chunks: Iterator[bytes], depth: int = 4) -> Iterator[bytes]:
    """The same chunks, read and checked by a thread while the caller sends the ones before
    (copy.write waits for the server without the GIL), so the checks overlap the server's
    parse. At most *depth* chunks wait; an error in the thread is raised here, in order."""
    waiting: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: bytes | BaseException | None) -> bool:
        while not stop.is_set():
            try:
                waiting.put(item, timeout=0.1)
            except queue.Full:
                continue
            return True
        return False

    def produce() -> None:
        try:
            for chunk in chunks:
                if not put(chunk):
                    return
            put(None)
        except BaseException as error:  # noqa: BLE001 - raised again in the caller's thread
            put(error)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="prh-ingest-copy-checks", daemon=True)
    thread.start()
    try:
        while (item := waiting.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


# A chunk's bytes fall in classes: the qualifier (Q), the delimiter (D), the line ends (N, R)
# and any other byte (x). Outside a quoted value, a qualifier may open one only at a value's
# start (after a delimiter, a line end or another qualifier, or at the chunk's start, which
# is a line's). Anywhere else (`5" laceration`, `12"`, `a""b` unquoted) the csv reader keeps
# it as data where COPY would open a quoted part, and could join rows. The patterns below
# read the classes; QualifierCheck writes each class as the bytes in it, so the regex runs
# over the chunk itself, with no pass to map its bytes first.
READ_ALIKE = (
    rb"(?:%(not_q)s*%(opens)s%(q)s%(not_q)s*%(q)s)*"  # quoted values, each opened at a start
    rb"(?:%(not_q)s*%(opens)s%(q)s)?%(not_q)s*"  # then one still open at the chunk's end, or none
)
INSIDE_TO_ITS_END = rb"%(not_q)s*%(q)s"


class QualifierCheck:
    """Whether COPY reads a chunk's qualifiers as the csv reader does: the patterns for one
    delimiter and qualifier, built once per file."""

    def __init__(self, delimiter: str, quote: str) -> None:
        classes = byte_classes(delimiter, quote)
        q, value_start = class_bytes(classes, b"Q"), class_bytes(classes, b"DNQ")
        parts = {
            b"q": b"[" + q + b"]",
            b"not_q": b"[^" + q + b"]",
            b"opens": b"(?<![^" + value_start + b"])",  # after D, N, Q or at the start
        }
        self.chunk_alike = re.compile(READ_ALIKE % parts)
        self.inside_to_its_end = re.compile(INSIDE_TO_ITS_END % parts)

    def read_alike(self, chunk: bytes, inside: bool) -> bool:
        """*inside*: the chunk starts inside a quoted value, closed by its first qualifier."""
        start = 0
        if inside and (closed := self.inside_to_its_end.match(chunk)):
            start = closed.end()
        return self.chunk_alike.fullmatch(chunk, start) is not None


def byte_classes(delimiter: str, quote: str) -> bytes:
    """Each byte's class, as a bytes.translate table would map it: the qualifier's bytes to
    Q, the delimiter's and the line ends to D, N and R, any other byte to x (a byte in two
    takes the later of D, N, R, Q: the qualifier's wins)."""
    table = bytearray(b"x" * 256)
    for character, name in ((delimiter, "D"), ("\n", "N"), ("\r", "R"), (quote, "Q")):
        for byte in character.encode():
            table[byte] = ord(name)
    return bytes(table)


def class_bytes(classes: bytes, names: bytes) -> bytes:
    """The bytes in the classes *names*, escaped for a regex character set."""
    return b"".join(re.escape(bytes([byte])) for byte in range(256) if classes[byte] in names)


# A line that is exactly `\.` ends COPY's data, in CSV format too, and the rows after it would
# be lost; quoted (`"\."`) it is the value `\.`.
END_MARKER = re.compile(rb"^\\\.(?=[\r\n]|\Z)", re.MULTILINE)


def end_markers_quoted(chunks: Iterable[bytes], quote: bytes) -> Iterator[tuple[bytes, int]]:
    """The chunks cut at line ends, each line that is COPY's end marker quoted; with each,
    the qualifiers in it (counted once: the checks read the count too)."""
    inside = False  # the chunk starts inside a quoted value
    for chunk in whole_lines(chunks):  # `in` a one-byte string is memchr: almost free
        if b"\\" in chunk and (chunk.startswith(b"\\.") or b"\n\\." in chunk):
            chunk = quote_markers(chunk, quote, inside)
        quotes = chunk.count(quote) if quote in chunk else 0
        inside ^= quotes % 2 == 1
        yield chunk, quotes


def quote_markers(chunk: bytes, quote: bytes, inside: bool) -> bytes:
    """As in COPY, a line starts a row where the quotes before it are even (else it is
    inside a quoted value and stays as it is)."""
    parts, start = [], 0
    for marker in END_MARKER.finditer(chunk):
        inside ^= chunk.count(quote, start, marker.start()) % 2 == 1
        parts += [chunk[start : marker.start()], marker[0] if inside else quote + marker[0] + quote]
        start = marker.end()
    return b"".join([*parts, chunk[start:]])


def sql_character(character: str) -> str:
    """A one-character SQL string literal (E'\\x09' for a tab)."""
    if character.isprintable():
        return "'" + character.replace("'", "''") + "'"
    return f"E'\\x{ord(character):02x}'"


def utf8_chunks(path: Path, layout: CsvLayout) -> Iterator[bytes]:
    """The file's data rows, as UTF-8 (the connection's encoding)."""
    encoding = codecs.lookup(layout.encoding).name
    utf8 = encoding in ("utf-8", "utf-8-sig")  # sent as it is: the server checks it
    decoder = None if utf8 else codecs.getincrementaldecoder(encoding)()
    with data_rows(path, layout) as span, io.BufferedReader(span) as file:
        while chunk := file.read(COPY_CHUNK_BYTES):
            yield chunk if decoder is None else decoder.decode(chunk).encode()
        if decoder is not None:
            yield decoder.decode(b"", final=True).encode()
