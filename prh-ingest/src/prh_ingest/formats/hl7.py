"""HL7 v2 batch files, read as a stream of messages: `read_messages(stream)`.

What a file may hold: messages of `MSH|^~\\&|…` segments as interface engines (Mirth,
Rhapsody, Cloverleaf) batch them, with or without FHS/BHS … BTS/FTS envelopes and MLLP framing
(0x0B before a message, 0x1C 0x0D after it), segments ending in CR, LF or CRLF. Envelopes and
framing bytes are not data. A message is an MSH segment and the segments after it, up to the
next MSH, envelope segment or MLLP frame.

What each message gives: `message_control_id` (MSH-10), `message_type` (MSH-9 as sent, e.g.
`ADT^A08`), `message_time` (MSH-7), `sending_facility` (MSH-4) and its segments, each with
its 1-based position in the message and its fields exactly as sent: components, repetitions
and subcomponents joined by the message's own encoding characters, escape sequences (`\\F\\`,
`\\S\\`, …) left as they are, "" for an empty field. MSH is numbered as the standard numbers
it: MSH-1 is the field separator, MSH-2 the encoding characters. Z-segments are like any other.
`SegmentTables` tells which columns (`<segment id lowercase>_<field number>`) each segment's
table needs so far: segment tables gain columns as fields appear.

Bad messages (a message without MSH, an MSH without a field separator or a control id, a
segment whose id is not three letters or digits, bytes not in the file's encoding) go to
`on_bad` as a `BadRow` with the message's number and a reason code, never a value.

Why not python-hl7 for the parsing (the library the team would reach for: maintained, parses
one message into nested objects, has MLLP client helpers): a loader needs each field's text as
sent, and python-hl7 splits every field into components and repetitions, whose `str()` then
joins them back; on 8-segment ADT messages its parse alone is about ten times slower than
the loader's whole load into PostgreSQL, whose target is 20,000 messages/s (BENCHMARKS.md,
section 9, times both). Splitting the bytes on the segment terminators and each segment on
its message's field separator is all a field-as-sent table needs. It is
the same rule python-hl7 applies (the MSH's fourth character is the field separator), and the
tests check every field against python-hl7's own parse of the same messages.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from prh_ingest.formats import BadRow, OnBad, refuse

MLLP_START = b"\x0b"  # vertical tab, before a message
MLLP_END = b"\x1c"  # file separator, then CR, after a message
ENVELOPE_SEGMENTS = frozenset({b"FHS", b"BHS", b"BTS", b"FTS"})
CHUNK_BYTES = 1 << 20

# Reason codes of bad messages, and the words their BadRow carries.
REASONS = {
    "no-msh": "the message does not start with an MSH segment",
    "bad-msh": "the MSH segment has no field separator",
    "no-control-id": "MSH-10 (message control id) is empty",
    "bad-segment": "segment {index} has no valid segment id (three letters or digits)",
    "undecodable": "segment {index} is not valid {encoding}",
}

# Every segment terminator (LF, CRLF) and the MLLP end byte become CR: one split then cuts the
# bytes into segments, and the empty pieces between terminators are dropped.
TO_CR = bytes.maketrans(b"\n" + MLLP_END, b"\r\r")
SEGMENT_ID = re.compile(r"[A-Z0-9]{3}\Z")


@dataclass(frozen=True, slots=True)
class Segment:
    segment_id: str  # e.g. "PID", "ZPI"
    segment_index: int  # 1-based position in its message (MSH is 1)
    fields: list[str]  # fields[0] is field 1 (for MSH: the field separator)


@dataclass(frozen=True, slots=True)
class Message:
    number: int  # 1-based position in the file, counting bad messages too
    message_control_id: str  # MSH-10
    message_type: str  # MSH-9 as sent
    message_time: str  # MSH-7
    sending_facility: str  # MSH-4
    segments: list[Segment]

    @property
    def segment_count(self) -> int:
        return len(self.segments)


def segment_columns(segment_id: str, field_count: int) -> list[str]:
    """The column names of a segment table with *field_count* fields: `pid_1`, `pid_2`, …"""
    prefix = segment_id.lower()
    return [f"{prefix}_{number}" for number in range(1, field_count + 1)]


class SegmentTables:
    """The columns each segment's table needs so far (HL7 fields are positional: a table gains
    columns as later messages send more fields). Keys are segment ids in lowercase, the
    suffix of the table's name (`<table>_pid`)."""

    def __init__(self) -> None:
        self.widths: dict[str, int] = {}  # by segment id as sent (upper case)

    def add(self, message: Message) -> dict[str, list[str]]:
        """Count *message*'s segments in; returns the columns that are new, per table."""
        grown: dict[str, int] = {}
        widths = self.widths
        for segment in message.segments:
            width = len(segment.fields)
            if width > widths.get(segment.segment_id, -1):
                grown.setdefault(segment.segment_id, widths.get(segment.segment_id, 0))
                widths[segment.segment_id] = width
        return {
            key.lower(): segment_columns(key, widths[key])[before:] for key, before in grown.items()
        }

    def columns(self, segment_id: str) -> list[str]:
        return segment_columns(segment_id, self.widths.get(segment_id.upper(), 0))


def read_messages(
    stream: BinaryIO,
    *,
    encoding: str = "utf-8",
    on_bad: OnBad = refuse,
    chunk_bytes: int = CHUNK_BYTES,
) -> Iterator[Message]:
    """The messages of an HL7 v2 batch read from *stream* (bytes), in file order; each bad one
    goes to *on_bad* instead (the default refuses the file)."""
    number = 0
    for lines in split_messages(segment_lines(stream, chunk_bytes)):
        number += 1
        parsed = parse_message(number, lines, encoding)
        if type(parsed) is Message:
            yield parsed
        else:
            on_bad(parsed)


def read_path(path: Path, **options: object) -> Iterator[Message]:
    """read_messages() over the file at *path*."""
    with path.open("rb") as stream:
        yield from read_messages(stream, **options)  # type: ignore[arg-type]


def segment_lines(stream: BinaryIO, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The file's non-empty segment lines, read *chunk_bytes* at a time. A line that opens an
    MLLP frame keeps its leading 0x0B (split_messages() starts a message there)."""
    rest = b""
    first = True
    while chunk := stream.read(chunk_bytes):
        if first:
            chunk = chunk.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark
            first = False
        lines = (rest + chunk).translate(TO_CR).split(b"\r")
        rest = lines.pop()
        yield from filter(None, lines)
    if rest:
        yield rest


def split_messages(lines: Iterable[bytes]) -> Iterator[list[bytes]]:
    """Group segment lines into messages: each starts at an MSH, an MLLP frame or the first
    segment after an envelope segment (then it has no MSH, and parse_message() says so)."""
    current: list[bytes] = []
    for line in lines:
        if line[0] == 0x0B:  # MLLP start: a new message, whatever its first segment
            line = line.lstrip(MLLP_START)
            if current:
                yield current
                current = []
            if not line:
                continue
        head = line[:3]
        if head == b"MSH":
            if current:
                yield current
            current = [line]
        elif head in ENVELOPE_SEGMENTS:
            if current:
                yield current
            current = []
        elif line.isspace():
            continue
        else:
            current.append(line)
    if current:
        yield current


def bad(number: int, lines: list[bytes], reason: str, **where: object) -> BadRow:
    return BadRow("message", number, reason, REASONS[reason].format(**where), b"\r".join(lines))


def parse_message(number: int, lines: list[bytes], encoding: str) -> Message | BadRow:
    """One message's segments, split into fields; or why it is bad."""
    if lines[0][:3] != b"MSH":
        return bad(number, lines, "no-msh")
    try:
        texts = [line.decode(encoding) for line in lines]
    except UnicodeDecodeError:
        index = next(i for i, line in enumerate(lines, 1) if not decodes(line, encoding))
        return bad(number, lines, "undecodable", index=index, encoding=encoding)
    msh = texts[0]
    separator = msh[3:4]
    if not separator or separator.isalnum() or separator.isspace():
        return bad(number, lines, "bad-msh")
    parts = msh.split(separator)
    parts[0] = separator  # MSH-1 is the field separator itself
    if len(parts) < 10 or not parts[9]:
        return bad(number, lines, "no-control-id")
    segments = [Segment("MSH", 1, parts)]
    append = segments.append
    for index, text in enumerate(texts[1:], 2):
        fields = text.split(separator)
        segment_id = fields.pop(0)
        if segment_id not in VALID_IDS:
            if not SEGMENT_ID.match(segment_id):
                return bad(number, lines, "bad-segment", index=index)
            VALID_IDS.add(segment_id)
        append(Segment(segment_id, index, fields))
    return Message(number, parts[9], parts[8], parts[6], parts[3], segments)


VALID_IDS: set[str] = set()  # segment ids seen valid: one set lookup instead of a regex per segment


def decodes(line: bytes, encoding: str) -> bool:
    try:
        line.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True
