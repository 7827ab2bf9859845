"""HL7 v2 files through the loader (prh_ingest.load.messages), on both sinks: the messages
table and one table per segment, every field exactly as written (an empty field NULL),
whatever the envelope, framing and line ends; the same bytes again add nothing; a bad message
refuses the file in one line with its number; the canary never reaches the output."""

from __future__ import annotations

from pathlib import Path

import pytest
from loading import KEY, TABLE, Sink, ingest, rejected
from prh_ingest import naming
from prh_ingest.load import messages
from test_formats_hl7 import ADT, CANARY, FILES, MESSAGES, ORU, message_text

FORMAT_SETTING = f"{KEY}_FORMAT"


def expected_segments() -> dict[str, list[tuple]]:
    """Per segment table: (message_control_id, segment_index, fields...) rows, as written."""
    tables: dict[str, list[tuple]] = {}
    for message in MESSAGES:
        control_id = message[0][1][9]
        for index, (segment_id, fields) in enumerate(message, 1):
            row = (control_id, index, *(value or None for value in fields))
            tables.setdefault(segment_id, []).append(row)
    widths = {sid: max(len(row) for row in rows) for sid, rows in tables.items()}
    return {
        naming.part_table_name("clinic-cal", "epic", sid): sorted(
            (row + (None,) * (widths[sid] - len(row)) for row in rows), key=repr
        )
        for sid, rows in tables.items()
    }


def segment_rows(sink: Sink, table: str) -> list[tuple]:
    return sorted((tuple(row[:-1]) for row in sink.query(f"SELECT * FROM {table}")), key=repr)  # noqa: S608


@pytest.mark.parametrize(
    "name", ["batch-CR", "mllp-CRLF", "batch-LF"], ids=["batch-CR", "mllp-CRLF", "batch-LF"]
)
def test_every_field_lands_exactly(sink: Sink, tmp_path: Path, name: str) -> None:
    source = tmp_path / "adt.hl7"
    source.write_bytes(FILES[name])
    result = ingest(source, sink)
    assert result.returncode == 0, result.stderr
    assert f"loaded {len(MESSAGES)} rows" in result.stdout
    assert sink.rows(TABLE) == sorted(
        ((m[0][1][9], m[0][1][8], m[0][1][6], m[0][1][3] or None, len(m)) for m in MESSAGES),
        key=repr,
    )
    for table, rows in expected_segments().items():
        assert segment_rows(sink, table) == rows, table
    assert CANARY not in result.stdout + result.stderr
    assert sink.query(f"SELECT row_count FROM {TABLE}_loads") == [(len(MESSAGES),)]  # noqa: S608


def test_the_format_setting_reads_any_name_and_the_same_bytes_add_nothing(
    sink: Sink, tmp_path: Path
) -> None:
    source = tmp_path / "adt_20240501.txt"
    source.write_bytes(FILES["batch-CR"])
    assert ingest(source, sink, **{FORMAT_SETTING: "hl7"}).returncode == 0
    again = ingest(source, sink, **{FORMAT_SETTING: "hl7"})
    assert again.returncode == 0, again.stderr
    assert "loaded 0 rows" in again.stdout
    assert len(sink.rows(TABLE)) == len(MESSAGES)


def test_segment_tables_gain_columns_as_fields_appear(sink: Sink, tmp_path: Path) -> None:
    first = tmp_path / "first.hl7"
    first.write_bytes(message_text(ORU[:2], "\r").encode())  # PID with 3 fields
    assert ingest(first, sink).returncode == 0
    longer = [(sid, fields) for sid, fields in ADT]  # PID with 11 fields
    second = tmp_path / "second.hl7"
    second.write_bytes(message_text(longer, "\r").encode())
    result = ingest(second, sink)
    assert result.returncode == 0, result.stderr
    pid = naming.part_table_name("clinic-cal", "epic", "PID")
    fields = ", ".join(f"pid_{n}" for n in range(1, 12))  # _load_id is not last: added later
    rows = sink.query(f"SELECT message_control_id, segment_index, {fields} FROM {pid}")  # noqa: S608
    assert len(rows) == 2 and all(len(row) == 2 + 11 for row in rows)
    oru_pid = next(row for row in rows if row[0] == "LAB-0002")
    assert oru_pid[2:] == ("1", None, "555^^^GHH^MR", *[None] * 8)


def test_a_bad_message_refuses_the_file_by_its_number(sink: Sink, tmp_path: Path) -> None:
    good = tmp_path / "good.hl7"
    good.write_bytes(message_text(ORU, "\r").encode())
    assert ingest(good, sink).returncode == 0
    no_control_id = [(sid, list(fields)) for sid, fields in ORU]
    no_control_id[0][1][9] = ""
    source = tmp_path / "bad.hl7"
    source.write_bytes((message_text(ADT, "\r") + message_text(no_control_id, "\r")).encode())
    result = ingest(source, sink)
    message = rejected(result, source)
    assert message.startswith("message 2: ") and "no-control-id" in message
    assert CANARY not in result.stdout + result.stderr
    # nothing of the bad file written: the earlier load alone
    assert [row[0] for row in sink.rows(TABLE)] == ["LAB-0002"]
    pid = naming.part_table_name("clinic-cal", "epic", "PID")
    assert [row[0] for row in segment_rows(sink, pid)] == ["LAB-0002"]


def test_tabs_and_backslashes_in_a_field_land_as_sent(sink: Sink, tmp_path: Path) -> None:
    """COPY's own escapes: a field holding a tab or a backslash is stored as it is."""
    fields = ["1", "TX", "", "", "a\tb \\X0D\\ c\\d", "\\"]
    source = tmp_path / "tab.hl7"
    source.write_bytes(message_text([ORU[0], ("OBX", fields)], "\r").encode())
    assert ingest(source, sink).returncode == 0
    obx = naming.part_table_name("clinic-cal", "epic", "OBX")
    assert segment_rows(sink, obx) == [("LAB-0002", 2, "1", "TX", None, None, *fields[4:])]


def test_an_unknown_format_is_refused_in_one_line(sink: Sink, tmp_path: Path) -> None:
    source = tmp_path / "adt.hl7"
    source.write_bytes(FILES["batch-CR"])
    result = ingest(source, sink, **{FORMAT_SETTING: "x12"})
    assert result.returncode == 65, result.stderr
    (line,) = result.stderr.splitlines()
    assert (
        line
        == f"error: {FORMAT_SETTING}=x12: hl7 or fhir-ndjson, or unset (the file's suffix decides)"
    )


def numbered(count: int, control_id: str = "ADT-{n:04d}") -> list[list[tuple[str, list[str]]]]:
    """*count* copies of ADT, each with its own control id (MSH-10)."""
    messages = []
    for n in range(1, count + 1):
        copy = [(sid, list(fields)) for sid, fields in ADT]
        copy[0][1][9] = control_id.format(n=n)
        messages.append(copy)
    return messages


def test_batches_sent_while_reading_land_exactly(
    sink: Sink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL a full batch goes to COPY from a thread while the file is read on:
    batches of a few segments here, so most go that way (and a control id with COPY's escape
    character lands as sent)."""
    monkeypatch.setattr(messages, "HL7_HELD_LINES", 5)
    sent = numbered(40, control_id="ADT\\{n:04d}")
    source = tmp_path / "adt.hl7"
    source.write_bytes("".join(message_text(m, "\r") for m in sent).encode())
    result = ingest(source, sink)
    assert result.returncode == 0, result.stderr
    ids = [m[0][1][9] for m in sent]
    assert [row[0] for row in sink.rows(TABLE)] == sorted(ids, key=repr)
    pid = naming.part_table_name("clinic-cal", "epic", "PID")
    pid_fields = dict(ADT)["PID"]
    assert segment_rows(sink, pid) == sorted(
        ((i, 3, *(value or None for value in pid_fields)) for i in ids), key=repr
    )


def test_a_bad_message_after_batches_were_sent_leaves_nothing(
    sink: Sink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(messages, "HL7_HELD_LINES", 5)
    sent = numbered(30)
    sent[25][0][1][9] = ""  # message 26 has no control id
    source = tmp_path / "adt.hl7"
    source.write_bytes("".join(message_text(m, "\r") for m in sent).encode())
    result = ingest(source, sink)
    assert rejected(result, source).startswith("message 26: ")
    sqlite = sink.url.startswith("sqlite")  # the one transaction rolled back: not a table
    tables = "sqlite_master WHERE type = 'table'" if sqlite else "information_schema.tables"
    schema = "" if sqlite else " WHERE table_schema = current_schema()"
    assert sink.query(f"SELECT count(*) FROM {tables}{schema}") == [(0,)]  # noqa: S608


MERGE = {f"{KEY}_LOAD_MODE": "merge"}


def table_rows(sink: Sink, segment: str | None, columns: str) -> list[tuple]:
    table = TABLE if segment is None else naming.part_table_name("clinic-cal", "epic", segment)
    return sorted(sink.query(f"SELECT {columns} FROM {table}"), key=repr)  # noqa: S608


def test_merge_replaces_a_message_sent_again_with_all_its_segments(
    sink: Sink, tmp_path: Path
) -> None:
    monday = tmp_path / "monday.hl7"
    monday.write_bytes((message_text(ADT, "\r") + message_text(ORU, "\r")).encode())
    assert ingest(monday, sink, **MERGE).returncode == 0
    corrected = [(sid, list(fields)) for sid, fields in ADT if sid not in ("ZPI", "OBX")]
    corrected.append(("OBX", ["1", "NM", "8867-4^Heart rate^LN", "", "74", "/min"]))
    corrected[2][1][4] = "O'BRIEN^PAT^Q"  # PID-5, the name, corrected
    tuesday = tmp_path / "tuesday.hl7"
    tuesday.write_bytes(message_text(corrected, "\r").encode())
    result = ingest(tuesday, sink, **MERGE)
    assert result.returncode == 0, result.stderr
    assert "loaded 1 rows" in result.stdout
    adt_id, oru_id = ADT[0][1][9], ORU[0][1][9]
    assert table_rows(sink, None, "message_control_id, segment_count, _load_id") == sorted(
        [(adt_id, 5, 2), (oru_id, len(ORU), 1)], key=repr
    )
    history = naming.history_table(TABLE)
    replaced = f"SELECT message_control_id, _load_id, _replaced_by_load_id FROM {history}"  # noqa: S608
    assert sink.query(replaced) == [(adt_id, 1, 2)]
    assert table_rows(sink, "PID", "message_control_id, pid_5, _load_id") == sorted(
        [(adt_id, "O'BRIEN^PAT^Q", 2), (oru_id, None, 1)], key=repr
    )
    oru_obx = [(oru_id, fields[4] or None, 1) for sid, fields in ORU if sid == "OBX"]
    assert table_rows(sink, "OBX", "message_control_id, obx_5, _load_id") == sorted(
        [(adt_id, "74", 2), *oru_obx], key=repr
    )
    assert table_rows(sink, "ZPI", "message_control_id") == []  # the new message has none
    moved = {
        segment: table_rows(sink, f"{segment}_history", "_load_id, _replaced_by_load_id")
        for segment in ("PID", "OBX", "ZPI")
    }
    assert moved == {"PID": [(1, 2)], "OBX": [(1, 2), (1, 2)], "ZPI": [(1, 2)]}
    assert CANARY not in result.stdout + result.stderr


def test_merge_refuses_a_control_id_twice_in_a_file_by_message_number(
    sink: Sink, tmp_path: Path
) -> None:
    source = tmp_path / "twice.hl7"
    source.write_bytes("".join(message_text(m, "\r") for m in (ADT, ORU, ADT)).encode())
    result = ingest(source, sink, **MERGE)
    assert rejected(result, source) == (
        "key (message_control_id) repeats within the file (2 messages): messages 1 and 3"
    )
    last = ingest(source, sink, **MERGE, **{f"{KEY}_DUPLICATE_KEYS": "last"})
    assert rejected(last, source).startswith(f"{KEY}_DUPLICATE_KEYS=last: an HL7 message")
    assert CANARY not in result.stdout + result.stderr + last.stdout + last.stderr


QUARANTINE = {f"{KEY}_BAD_ROWS": "quarantine", f"{KEY}_MAX_BAD_ROWS": "1"}


def test_quarantine_sets_a_bad_message_aside_by_its_number(sink: Sink, tmp_path: Path) -> None:
    no_control_id = [(sid, list(fields)) for sid, fields in ORU]
    no_control_id[0][1][9] = ""
    bad = message_text(no_control_id, "\r")
    source = tmp_path / "adt.hl7"
    source.write_bytes((message_text(ADT, "\r") + bad + message_text(ORU, "\r")).encode())
    result = ingest(source, sink, **QUARANTINE)
    assert result.returncode == 0, result.stderr
    assert "loaded 2 rows" in result.stdout
    assert "set aside 1 unreadable row(s)" in result.stdout
    assert [row[0] for row in sink.rows(TABLE)] == sorted([ADT[0][1][9], "LAB-0002"])
    rejects_table = naming.rejects_table(TABLE)
    found = sink.query(f"SELECT row_number, reason, raw_line FROM {rejects_table}")  # noqa: S608
    assert [(n, reason, bytes(raw)) for n, reason, raw in found] == [
        (2, "no-control-id", bad.rstrip("\r").encode())
    ]
    assert CANARY not in result.stdout + result.stderr
    two_bad = tmp_path / "two-bad.hl7"
    two_bad.write_bytes((bad + message_text(ADT, "\r") + bad).encode())
    assert rejected(ingest(two_bad, sink, **QUARANTINE), two_bad).startswith(
        "2 of 3 rows cannot be read (2 no-control-id), above the limit of 1"
    )
