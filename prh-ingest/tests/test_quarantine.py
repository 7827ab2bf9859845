"""BAD_ROWS=quarantine through the loader's main, on both databases (issue 28): unreadable
rows of delimited text go to `<table>_rejects` with their row numbers and the rest loads;
above MAX_BAD_ROWS the whole file is refused; the raw lines stay in the database."""

from __future__ import annotations

import json
from pathlib import Path

from loading import TABLE, Sink, ingest, rejected
from prh_ingest import freshness, naming

BAD_ROWS = {naming.bad_rows_setting("clinic-cal", "epic"): "quarantine"}
REJECTS = naming.rejects_table(TABLE)
CANARY = b"CANARY-4471-MRN"


def appointments(path: Path, rows: int, bad: dict[int, bytes]) -> Path:
    """A header and `rows` data rows; row number n (the header is row 1) is bad[n] if given."""
    lines = [b"appointment_id,patient_id,status"]
    for number in range(2, rows + 2):
        lines.append(bad.get(number, b"A%05d,P%04d,Scheduled" % (number, number % 397)))
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


THREE_BAD = {
    17: b"A00017,P0017,Scheduled,extra",  # an extra value
    5000: b"A05000,P\xff" + CANARY + b",Arrived",  # a byte that is not UTF-8
    9001: b'A09001,"' + CANARY + b",Arrived",  # an unterminated quote
}


def test_three_bad_rows_among_10000_are_set_aside(sink: Sink, tmp_path: Path) -> None:
    landing = appointments(tmp_path / "monday.csv", 10_000, THREE_BAD)
    result = ingest(landing, sink, **BAD_ROWS)
    assert result.returncode == 0, result.stderr
    assert sink.query(f"SELECT count(*) FROM {TABLE}") == [(9_997,)]  # noqa: S608
    found = sink.query(f"SELECT row_number, reason, raw_line FROM {REJECTS} ORDER BY row_number")  # noqa: S608
    assert [(row[0], row[1]) for row in found] == [
        (17, "wrong_width"),
        (5000, "undecodable"),
        (9001, "unterminated_quote"),
    ]
    assert bytes(found[1][2]) == THREE_BAD[5000]  # the raw line, in the database only
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["rejected_rows"] == 3
    assert (
        "set aside 3 unreadable row(s)" in result.stdout and "rows 17, 5000, 9001" in result.stdout
    )
    events = freshness.load_events("clinic-cal", "epic", summary)
    assert [event.event for event in events] == [freshness.LOADED, freshness.REJECTS]
    canary = CANARY.decode()
    assert canary not in result.stdout + result.stderr + repr(events)
    assert not any(canary in repr(row) for row in sink.rows())  # not in the table


MULTILINE = (
    b"appointment_id,patient_id,note\r\n"
    b'A1,P1,"Arrived\r\nlate, ""by bus"""\r\n'  # row 2: a quoted value over two lines
    b"A2,P2,ok\r\n"
    b"A3,P3,ok,extra\r\n"  # row 4: one value too many
    b'A4,P4,"one\r\ntwo\r\nthree"\r\n'
    b"A5,P5,ok\r\n"
    b"A6,P\x006,ok\r\n"  # row 7: a NUL byte, which PostgreSQL does not store
)


def test_a_quoted_line_break_is_part_of_its_row_not_a_bad_row(sink: Sink, tmp_path: Path) -> None:
    landing = tmp_path / "monday.csv"
    landing.write_bytes(MULTILINE)
    limit = {naming.max_bad_rows_setting("clinic-cal", "epic"): "2"}
    result = ingest(landing, sink, **BAD_ROWS, **limit)
    assert result.returncode == 0, result.stderr
    assert sink.rows() == [
        ("A1", "P1", 'Arrived\r\nlate, "by bus"'),
        ("A2", "P2", "ok"),
        ("A4", "P4", "one\r\ntwo\r\nthree"),
        ("A5", "P5", "ok"),
    ]
    found = sink.query(f"SELECT row_number, reason, raw_line FROM {REJECTS}")  # noqa: S608
    assert sorted((number, reason, bytes(raw)) for number, reason, raw in found) == [
        (4, "wrong_width", b"A3,P3,ok,extra"),
        (7, "undecodable", b"A6,P\x006,ok"),
    ]
    tuesday = tmp_path / "tuesday.csv"  # the same rows and one more, BAD_ROWS=refuse:
    tuesday.write_bytes(MULTILINE + b"A6,P6,ok\r\n")  # its message names the same row
    error = rejected(ingest(tuesday, sink), tuesday)
    assert error.startswith("row 4 has 4 values")


def test_five_percent_bad_rows_refuse_the_whole_file(sink: Sink, tmp_path: Path) -> None:
    bad = {number: b"A%05d,P0001" % number for number in range(2, 1002, 20)}  # 50 of 1,000
    landing = appointments(tmp_path / "monday.csv", 1_000, bad)
    error = rejected(ingest(landing, sink, **BAD_ROWS), landing)
    assert error == (
        "50 of 1000 rows cannot be read (50 wrong_width), above the limit of 1%: "
        "the whole file is refused"
    )
    sqlite = sink.url.startswith("sqlite")
    tables = "sqlite_master WHERE type = 'table'" if sqlite else "information_schema.tables"
    schema = "" if sqlite else " WHERE table_schema = current_schema()"
    tables = sink.query(f"SELECT count(*) FROM {tables}{schema}")  # noqa: S608 (nothing written)
    assert tables == [(0,)]


def test_a_bad_max_bad_rows_is_one_line(sink: Sink, tmp_path: Path) -> None:
    landing = appointments(tmp_path / "monday.csv", 10, {})
    limit = {naming.max_bad_rows_setting("clinic-cal", "epic"): "lots"}
    result = ingest(landing, sink, **BAD_ROWS, **limit)
    assert result.returncode == 65
    assert result.stderr.startswith("error: CLINIC_CAL_EPIC_MAX_BAD_ROWS=lots: a count")


def test_a_corrected_file_supersedes_its_rejects(sink: Sink, tmp_path: Path) -> None:
    """LOAD_MODE=file: the same path again, corrected, leaves no rejects open."""
    file_mode = {**BAD_ROWS, "CLINIC_CAL_EPIC_LOAD_MODE": "file"}
    landing = appointments(tmp_path / "monday.csv", 200, {17: THREE_BAD[17]})
    assert ingest(landing, sink, **file_mode).returncode == 0
    appointments(landing, 200, {})
    assert ingest(landing, sink, **file_mode).returncode == 0
    assert sink.query(f"SELECT count(*) FROM {TABLE}") == [(200,)]  # noqa: S608
    assert sink.query(f"SELECT load_id, superseded_by FROM {REJECTS}") == [(1, 2)]  # noqa: S608


def test_a_merge_that_brings_a_rejected_key_supersedes_its_reject(
    sink: Sink, tmp_path: Path
) -> None:
    """LOAD_MODE=merge: the reject of row 17 (key A00017) is moot once a load brings A00017;
    the reject of row 18 (A00018) stays open. On PostgreSQL the merge reads the load's keys
    from the table itself (no staging table)."""
    merging = {**BAD_ROWS, "CLINIC_CAL_EPIC_LOAD_MODE": "merge"}
    merging[naming.key_setting("clinic-cal", "epic")] = "appointment_id"
    bad = {17: THREE_BAD[17], 18: b"A00018,P0018,Scheduled,extra"}
    assert ingest(appointments(tmp_path / "monday.csv", 400, bad), sink, **merging).returncode == 0
    fixed = tmp_path / "tuesday.csv"
    fixed.write_bytes(b"appointment_id,patient_id,status\nA00017,P0017,Arrived\n")
    assert ingest(fixed, sink, **merging).returncode == 0
    found = sink.query(f"SELECT row_number, superseded_by FROM {REJECTS} ORDER BY 1")  # noqa: S608
    assert [tuple(row) for row in found] == [(17, 2), (18, None)]
