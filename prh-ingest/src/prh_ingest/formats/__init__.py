"""The hospital's message formats, read as streams: HL7 v2 batch files (`hl7`), FHIR Bulk Data
NDJSON (`fhir`) and `.xlsx`/`.xlsm` workbooks (`xlsx`).

Each reader yields what the loader stores and hands every unreadable message or line to an
`on_bad` callback as a `BadRow`: its number and a reason code, never a value. The default
callback, `refuse`, raises `BadRowError`, whose one-line text is safe to print; the loader
passes its own to set the rows aside instead (the bad-rows policy). The raw bytes ride along
on the `BadRow` (for a rejects table, under the table's access) but never in its text.

How the loader uses them (a few lines each):
- HL7: `for message in hl7.read_path(path, on_bad=...)`: `SegmentTables.add(message)` gives
  the columns a segment table gains (ALTER TABLE first); the message is one row of `<table>`
  (message_control_id, message_type, message_time, sending_facility, segment_count) and each
  segment one row of `<table>_<segment id>` (message_control_id, segment_index, fields...).
- FHIR: `with fhir.open_ndjson(path) as stream:` then on PostgreSQL `copy.write(chunk)` for
  each chunk of `fhir.copy_chunks(fhir.read_resources(stream, on_bad=...), resource_type)`
  into `COPY <table>_<type> (id, last_updated, resource) FROM STDIN WITH fhir.COPY_OPTIONS`;
  on SQLite, executemany of `(r.id, r.last_updated, r.text)`.
- Workbooks: `xlsx.open_sheet(path, sheet).rows()` in place of calamine's `iter_rows()` and
  `cell_text` for `.xlsx`/`.xlsm` (`.start` is calamine's `start`); on `xlsx.NotStreamable`,
  calamine as before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class BadRow:
    """One message (HL7) or line (NDJSON) that cannot be loaded."""

    unit: str  # "message" or "line": what `number` counts
    number: int  # 1-based, in file order
    reason: str  # a code from the reader's REASONS
    detail: str  # the reason in words, with positions only
    raw: bytes = field(default=b"", repr=False)  # patient data: never in a message

    def __str__(self) -> str:
        return f"{self.unit} {self.number}: {self.detail} ({self.reason})"


class BadRowError(ValueError):
    """A file refused for its first bad message or line; str() is one safe line."""

    def __init__(self, bad: BadRow) -> None:
        super().__init__(str(bad))
        self.bad = bad


def refuse(bad: BadRow) -> None:
    """The default `on_bad`: the first bad message or line refuses the file."""
    raise BadRowError(bad)


OnBad = Callable[[BadRow], None]
