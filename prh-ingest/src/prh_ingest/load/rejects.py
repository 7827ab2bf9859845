"""Bad rows set aside in `<table>_rejects` (BAD_ROWS=quarantine) instead of refusing the file.

A row that cannot be read (REASONS) goes to the rejects table with the load's id, the file's
SHA-256, its row number, a reason code and its raw line (the record's bytes: more than one
line where a quoted value holds line breaks); the rest of the file loads. Above
MAX_BAD_ROWS (a count, or a percent of the file's data rows; default `1%`) the whole file is
refused, as with BAD_ROWS=refuse, and nothing is written.

The raw line is patient data: it is written to the rejects table only, under the same access
as the table. Nothing else here carries it: a Reject's repr leaves it out, and the errors
raised give counts, row numbers and reason codes only.

A reject is superseded (`superseded_by` names the later load) when a corrected file with the
same path is loaded again in `file` mode (`supersede_loads`), or when a merge loads the key
the rejected row carried (`supersede_keys`). The rejects still open are OPEN_REJECTS.
"""

# ruff: noqa: S608 (SQL names only tables and columns identifier() checked)

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from prh_ingest import naming
from prh_ingest.load.drift import LOAD_ID_COLUMN

# Reason codes: why a row could not be read.
WRONG_WIDTH = "wrong_width"  # not as many values as the header
UNDECODABLE = "undecodable"  # bytes not text in the file's encoding, or a NUL byte
UNTERMINATED_QUOTE = "unterminated_quote"  # a quoted value never closed (MAX_RECORD_LINES)
MALFORMED_QUOTE = "malformed_quote"  # a character after a closing quote (`"a"b`)
MISSING_KEY = "missing_key"  # LOAD_MODE=merge: a key value that is empty
REASONS = (WRONG_WIDTH, UNDECODABLE, UNTERMINATED_QUOTE, MALFORMED_QUOTE, MISSING_KEY)

BAD_ROWS = ("refuse", "quarantine")  # BAD_ROWS: the default first
DEFAULT_MAX_BAD_ROWS = "1%"
# A row's key as one text value (the values joined with the unit separator), the same in
# Python (row_key) and in SQL (key_expression): how a merge finds the rejects it supersedes.
KEY_SEPARATOR = "\x1f"
IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")

# The rejects still open: what a person fixing the source reads. {rejects} is the table's
# rejects table (naming.rejects_table); raw_line is the row's bytes as in the file.
OPEN_REJECTS = (
    "SELECT load_id, row_number, reason, raw_line FROM {rejects} "
    "WHERE superseded_by IS NULL ORDER BY load_id, row_number"
)


class BadRows(ValueError):
    """A file or setting the loader must refuse (exit 65); the message is one line of counts,
    row numbers, column names and reason codes, never a value."""


class TooManyBadRows(BadRows):
    def __init__(self, bad: int, rows: int, limit: Limit, counts: dict[str, int]) -> None:
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(counts.items()))
        super().__init__(
            f"{bad} of {rows} rows cannot be read ({reasons}), above the limit of "
            f"{limit.text}: the whole file is refused"
        )
        self.bad, self.rows, self.limit, self.counts = bad, rows, limit, counts


def identifier(name: str) -> str:
    """A table or column name the loader made (lowercase, digits, _): safe in SQL as is."""
    if not IDENTIFIER.fullmatch(name):
        raise ValueError(f"{name!r} is not a table or column name")
    return name


# --- Settings --------------------------------------------------------------------------------


def parse_bad_rows(value: str | None) -> str:
    """BAD_ROWS: `refuse` (unset) or `quarantine`."""
    choice = (value or BAD_ROWS[0]).strip().lower()
    if choice not in BAD_ROWS:
        raise BadRows(f"BAD_ROWS={value}: one of {', '.join(BAD_ROWS)}")
    return choice


@dataclass(frozen=True)
class Limit:
    """MAX_BAD_ROWS: at most `count` bad rows, or at most `percent` of the file's data rows."""

    text: str
    count: int | None = None
    percent: float | None = None

    def exceeded(self, bad: int, rows: int) -> bool:
        """Whether `bad` of a file's `rows` data rows (good and bad) is above the limit."""
        if self.count is not None:
            return bad > self.count
        return bad * 100 > (self.percent or 0) * rows

    def check(self, rejects: Sequence[Reject], rows: int) -> None:
        """Refuse the file (TooManyBadRows) when its rejects are above the limit."""
        if self.exceeded(len(rejects), rows):
            counts: dict[str, int] = {}
            for reject in rejects:
                counts[reject.reason] = counts.get(reject.reason, 0) + 1
            raise TooManyBadRows(len(rejects), rows, self, counts)


def parse_max_bad_rows(value: str | None) -> Limit:
    """MAX_BAD_ROWS: a count (`25`) or a percent (`0.5%`); unset, `1%`."""
    text = (value or DEFAULT_MAX_BAD_ROWS).strip()
    if re.fullmatch(r"[0-9]+", text):
        return Limit(text, count=int(text))
    if re.fullmatch(r"[0-9]+(?:\.[0-9]+)?%", text) and float(text[:-1]) <= 100:
        return Limit(text, percent=float(text[:-1]))
    raise BadRows(f"MAX_BAD_ROWS={value}: a count of rows (25) or a percent of them (1%)")


# --- Reading one row -------------------------------------------------------------------------


@dataclass(frozen=True)
class Reject:
    """A row set aside. Its raw line never shows in a repr (logs, tracebacks)."""

    row_number: int
    reason: str
    raw_line: bytes = field(repr=False)
    row_key: str | None = field(default=None, repr=False)  # merge: the key it carried, if read


def row_key(values: Sequence[str | None]) -> str:
    return KEY_SEPARATOR.join(value or "" for value in values)


def empty(value: str | None) -> bool:
    return value is None or not value.strip()


@dataclass(frozen=True)
class RowReader:
    """Reads the raw bytes of one delimited-text record (its line end included or not) into
    its values, or into a Reject: what the reader calls for each row when BAD_ROWS=quarantine.

    `key_positions` (merge) are the key's value positions: a row with one of them empty is a
    MISSING_KEY reject. A reject keeps the key it carried when that much of it could be read,
    so a later merge of that key supersedes it."""

    encoding: str
    delimiter: str
    quote: str | None  # None: no text qualifier
    width: int  # values per row, as many as the header
    key_positions: tuple[int, ...] = ()

    def read(self, raw: bytes, row_number: int) -> list[str] | Reject:
        line = raw.rstrip(b"\r\n")
        try:
            text, reason = line.decode(self.encoding), None
        except UnicodeDecodeError:
            text, reason = line.decode(self.encoding, errors="replace"), UNDECODABLE
        try:
            values = next(csv.reader([text], strict=True, **self.options()), [])
        except csv.Error as error:
            unterminated = "unexpected end of data" in str(error)
            reason = reason or (UNTERMINATED_QUOTE if unterminated else MALFORMED_QUOTE)
            values = next(csv.reader([text], **self.options()), [])  # lenient: for the key
        return self.judge(values, reason, line, row_number)

    def judge(
        self, values: list[str], reason: str | None, line: bytes, row_number: int
    ) -> list[str] | Reject:
        """A record's values, or its Reject: *reason* is why it could not be read (None: it
        was), *line* its bytes without the line end."""
        if reason is None and len(values) != self.width:
            reason = WRONG_WIDTH
        key = [values[i] if i < len(values) else None for i in self.key_positions]
        if reason is None and any(empty(value) for value in key):
            reason = MISSING_KEY
        if reason is None:
            return values
        known = self.key_positions and not any(empty(value) for value in key)
        return Reject(row_number, reason, line, row_key(key) if known else None)

    def options(self) -> dict[str, object]:
        if self.quote is None:
            return {"delimiter": self.delimiter, "quoting": csv.QUOTE_NONE}
        return {"delimiter": self.delimiter, "quotechar": self.quote}


# A quoted value may hold line breaks: its record goes on to the line that closes the quote,
# at most this many lines. A quote still open after them, or at the end of the file, was never
# closed: its first line alone is the record (an unterminated_quote reject).
MAX_RECORD_LINES = 1000
END_OF_DATA = "unexpected end of data"  # the csv reader's error for a quote still open


@dataclass
class Quarantine:
    """BAD_ROWS=quarantine for one file: `readable()` passes the bytes of its readable records
    on, as they are loaded (to COPY's parse on PostgreSQL), and sets the others aside as
    rejects. A record is a line, or the lines a quoted value's line breaks join, as the csv
    reader reads them. Records are numbered as the rows of the loader's messages are: from
    the first data row, one number per record, blank lines included."""

    reader: RowReader
    limit: Limit
    first_row: int = 2  # the row number of the first data row
    rejects: list[Reject] = field(default_factory=list)
    rows: int = 0  # the data rows read, good and bad

    def readable(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """The bytes of the readable records of *chunks* (the data rows' bytes, each chunk
        whole lines), blank lines left out; rejects and rows are counted afresh each pass."""
        self.rejects, self.rows = [], 0
        number, carried = self.first_row, []
        for chunk in chunks:
            lines = chunk.split(b"\n")
            last = lines.pop()  # b"" after a final line end, else a last line without one
            lines = [*carried, *(line + b"\n" for line in lines), *([last] if last else [])]
            good, carried, number = self.sort(lines, number, final=False)
            if good:
                yield good
        if carried:
            good, _, number = self.sort(carried, number, final=True)
            if good:
                yield good

    def sort(self, lines: list[bytes], number: int, final: bool) -> tuple[bytes, list[bytes], int]:
        """The readable records of *lines* as bytes, the lines of a record still open at
        their end (unless *final*: the file ends there), and the next record's number."""
        texts, undecodable = self.decoded(lines)
        width, keys, options = self.reader.width, self.reader.key_positions, self.reader.options()
        good: list[bytes] = []  # runs of readable records' lines
        run = start = 0  # lines[run:start] are readable records; start: the next record's
        rows, done = 0, False
        try:
            while start < len(lines) and not done:
                reader = csv.reader(texts[start:], strict=True, **options)
                base, restart = start, None
                while restart is None:
                    try:
                        values, reason = next(reader), None
                    except StopIteration:  # the lines are read
                        done = True
                        break
                    except csv.Error as error:
                        if END_OF_DATA in str(error):
                            if not final and len(lines) - start < MAX_RECORD_LINES:
                                good.append(b"".join(lines[run:start]))
                                return b"".join(good), lines[start:], number
                            restart = start + 1  # never closed: its first line alone
                            end, values, reason = restart, [], UNTERMINATED_QUOTE
                        else:
                            values, reason = [], MALFORMED_QUOTE
                    if restart is None:
                        end = base + reader.line_num
                        if end - start > MAX_RECORD_LINES:
                            restart = end = start + 1  # the quote never closed in time
                            values, reason = [], UNTERMINATED_QUOTE
                        elif (  # RowReader.judge's checks, inline: most records pass them
                            reason is None
                            and len(values) == width
                            and not undecodable
                            and not (keys and any(empty(values[i]) for i in keys))
                        ):
                            rows += 1
                            number, start = number + 1, end
                            continue
                    good.append(b"".join(lines[run:start]))  # the run ends before this one
                    if values or reason or end - start > 1 or lines[start].strip(b"\r\n"):
                        record = (start, end, values, reason)
                        self.sort_record(lines, texts, record, undecodable, number, good)
                    number, start, run = number + 1, end, end
            good.append(b"".join(lines[run:start]))
            return b"".join(good), [], number
        finally:
            self.rows += rows

    def sort_record(
        self,
        lines: list[bytes],
        texts: list[str],
        record: tuple[int, int, list[str], str | None],
        undecodable: set[int],
        number: int,
        good: list[bytes],
    ) -> None:
        """One non-blank record: its lines [start, end), the values read (if *reason* is
        None), to *good*, or a reject."""
        start, end, values, reason = record
        self.rows += 1
        if undecodable and not undecodable.isdisjoint(range(start, end)):
            reason = UNDECODABLE
        raw = b"".join(lines[start:end]) if end - start > 1 else lines[start]
        if reason is not None:  # read leniently, for the key it carried
            values = next(csv.reader(["".join(texts[start:end])], **self.reader.options()), [])
        judged = self.reader.judge(values, reason, raw.rstrip(b"\r\n"), number)
        if isinstance(judged, Reject):
            self.rejects.append(judged)
        else:
            good.append(raw)

    def decoded(self, lines: list[bytes]) -> tuple[list[str], set[int]]:
        """The lines as text, and the positions of those not in the file's encoding (decoded
        with replacement characters, for the key they carry) or holding a NUL byte."""
        encoding = self.reader.encoding
        if codecs.lookup(encoding).name == "utf-8-sig":  # past the header: no BOM to drop
            encoding = "utf-8"
        try:
            text = b"".join(lines).decode(encoding)
        except UnicodeDecodeError:
            texts, bad = [], set()
            for position, line in enumerate(lines):
                try:
                    texts.append(line.decode(encoding))
                except UnicodeDecodeError:
                    texts.append(line.decode(encoding, errors="replace"))
                    bad.add(position)
            return texts, bad
        texts = text.split("\n")
        last = texts.pop()
        texts = [*(line + "\n" for line in texts), *([last] if last else [])]
        if "\x00" not in text:
            return texts, set()
        # A NUL byte is no text PostgreSQL stores: such a line is as undecodable.
        return texts, {position for position, line in enumerate(texts) if "\x00" in line}

    def check(self) -> None:
        """Refuse the whole file (TooManyBadRows) above MAX_BAD_ROWS: once every row is read."""
        self.limit.check(self.rejects, self.rows)


# --- The rejects table -----------------------------------------------------------------------


def rejects_table(metadata: sa.MetaData, table: str) -> sa.Table:
    return sa.Table(
        naming.rejects_table(identifier(table)),
        metadata,
        sa.Column("load_id", sa.Integer, primary_key=True),
        sa.Column("row_number", sa.Integer, primary_key=True),
        sa.Column("source_sha256", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("raw_line", sa.LargeBinary, nullable=False),
        sa.Column("row_key", sa.Text),  # merge: the key the row carried, when it could be read
        sa.Column("superseded_by", sa.Integer),  # the later load that made this reject moot
    )


def record(
    connection: sa.Connection, table: str, load_id: int, sha256: str, rejects: Iterable[Reject]
) -> int:
    """Write a load's rejects (creating the table on the first), in the load's transaction."""
    metadata = sa.MetaData()
    rows = rejects_table(metadata, table)
    metadata.create_all(connection)
    values = [
        {
            "load_id": load_id,
            "row_number": reject.row_number,
            "source_sha256": sha256,
            "reason": reject.reason,
            "raw_line": reject.raw_line,
            "row_key": reject.row_key,
        }
        for reject in rejects
    ]
    if values:
        connection.execute(rows.insert(), values)
    return len(values)


def has_rejects_table(connection: sa.Connection, table: str) -> bool:
    return sa.inspect(connection).has_table(naming.rejects_table(identifier(table)))


def supersede_loads(
    connection: sa.Connection, table: str, earlier_loads: Sequence[int], load_id: int
) -> int:
    """`file` mode: the loads this one replaced (same path) have their open rejects superseded."""
    if not earlier_loads or not has_rejects_table(connection, table):
        return 0
    rows = rejects_table(sa.MetaData(), table)
    update = (
        rows.update()
        .where(rows.c.superseded_by.is_(None), rows.c.load_id.in_(list(earlier_loads)))
        .values(superseded_by=load_id)
    )
    return connection.execute(update).rowcount


def key_expression(columns: Sequence[str], alias: str = "") -> str:
    """SQL for row_key() over a table's key columns: the values joined with KEY_SEPARATOR."""
    prefix = f"{alias}." if alias else ""
    return " || :separator || ".join(f"coalesce({prefix}{identifier(c)}, '')" for c in columns)


def supersede_keys(
    connection: sa.Connection,
    table: str,
    staging: str,
    keys: Sequence[str],
    load_id: int,
    copied: bool = False,
) -> int:
    """Merge: earlier loads' open rejects that carried a key this load brings are superseded.
    The load's keys are *staging*'s, or with *copied* the table's rows of the load."""
    if not has_rejects_table(connection, table):
        return 0
    rejects = naming.rejects_table(identifier(table))
    this_load = f" WHERE {LOAD_ID_COLUMN} = :load_id" if copied else ""
    update = sa.text(
        f"UPDATE {rejects} SET superseded_by = :load_id "
        f"WHERE superseded_by IS NULL AND load_id <> :load_id AND row_key IN "
        f"(SELECT {key_expression(keys)} FROM {identifier(staging)}{this_load})"
    )
    result = connection.execute(update, {"load_id": load_id, "separator": KEY_SEPARATOR})
    return result.rowcount


def open_rejects(connection: sa.Connection, table: str) -> list[sa.Row]:
    """The rejects no later load superseded (OPEN_REJECTS)."""
    query = OPEN_REJECTS.format(rejects=naming.rejects_table(identifier(table)))
    return list(connection.execute(sa.text(query)))
