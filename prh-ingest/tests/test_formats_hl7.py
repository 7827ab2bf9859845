"""HL7 v2 batch files: every field as sent, whatever the envelope, framing and line ends; bad
messages named by number and reason, never by a value."""

from __future__ import annotations

import io

import hl7 as python_hl7
import pytest
from prh_ingest.formats import BadRow, BadRowError
from prh_ingest.formats.hl7 import Message, SegmentTables, read_messages, segment_columns

CANARY = "CANARY-7f3e9a"  # a patient identifier that must never reach a message

# Two messages as (segment id, fields) with fields exactly as a sender writes them. MSH's field
# 1 is the separator and field 2 the encoding characters, as the standard numbers them.
ADT = [
    ("MSH", ["|", "^~\\&", "ADT1", "GOOD HEALTH HOSPITAL", "GHH LAB", "GHH", "20240501083000",
             "", "ADT^A08^ADT_A01", f"CTRL-{CANARY}", "P", "2.5.1"]),
    ("EVN", ["A08", "20240501083000"]),
    ("PID", ["1", "", f"{CANARY}^^^GHH^MR~123-45-6789^^^SSA^SS", "", "O'BRIEN\\S\\JR^PAT^Q", "",
             "19800101", "F", "", "", "1 Main St\\F\\Apt 2^^Town^CA^90210"]),
    ("PV1", ["1", "I", "ICU^101^A", "", "", "", "004777^ATTEND^AARON^A"]),
    ("OBX", ["1", "NM", "8867-4^Heart rate^LN", "", "72", "/min", "60-100", "N", "", "", "F"]),
    ("OBX", ["2", "ST", "8480-6^Blood pressure^LN", "", "120\\F\\80", "mm[Hg]", "", "", "", "",
             "F"]),
    ("ZPI", ["1", "ward note \\T\\ more\\E\\", "a&b"]),
]  # fmt: skip
ORU = [
    ("MSH", ["|", "^~\\&", "LAB", "GHH", "", "", "202405011200", "", "ORU^R01", "LAB-0002", "P",
             "2.3"]),
    ("PID", ["1", "", "555^^^GHH^MR"]),
    ("OBR", ["1", "", "", "CBC^Complete blood count"]),
    ("OBX", ["1", "NM", "718-7^Hemoglobin^LN", "", "13.2", "g/dL"]),
    ("OBX", ["2", "NM", "6690-2^WBC^LN", "", "7.1", "10*3/uL"]),
    ("OBX", ["3", "TX", "", "", "line one~line two"]),
]  # fmt: skip
MESSAGES = [ADT, ORU]


def segment_text(segment_id: str, fields: list[str]) -> str:
    if segment_id == "MSH":  # MSH-1 is the separator itself, written once
        return "|".join(["MSH", *fields[1:]])
    return "|".join([segment_id, *fields])


def message_text(message: list[tuple[str, list[str]]], end: str) -> str:
    return "".join(segment_text(sid, fields) + end for sid, fields in message)


def batch(end: str) -> bytes:
    """FHS/BHS envelopes around the messages, segments ending in *end*."""
    head = [f"FHS|^~\\&|ADT1|GHH|||20240501{end}", f"BHS|^~\\&|ADT1|GHH|||20240501{end}"]
    tail = [f"BTS|2{end}", f"FTS|1{end}"]
    body = "".join(message_text(message, end) for message in MESSAGES)
    return ("".join(head) + body + "".join(tail)).encode()


def mllp(end: str) -> bytes:
    """Each message in an MLLP frame (0x0B … 0x1C 0x0D), as a listener writes them to a file."""
    frames = (b"\x0b" + message_text(m, end).encode() + b"\x1c\r" for m in MESSAGES)
    return b"\n".join(frames)


def messages(data: bytes, **options: object) -> list[Message]:
    return list(read_messages(io.BytesIO(data), **options))  # type: ignore[arg-type]


FILES = {
    "batch-CR": batch("\r"),
    "batch-LF": batch("\n"),
    "batch-CRLF": batch("\r\n"),
    "mllp-CRLF": mllp("\r\n"),
    "mllp-CR": mllp("\r"),
    "bare-CR": b"".join(message_text(m, "\r").encode() for m in MESSAGES),
}


@pytest.mark.parametrize("data", FILES.values(), ids=FILES.keys())
def test_every_field_lands_exactly_as_sent(data: bytes) -> None:
    parsed = messages(data)
    assert [m.number for m in parsed] == [1, 2]
    for message, expected in zip(parsed, MESSAGES, strict=True):
        assert [(s.segment_id, s.segment_index, s.fields) for s in message.segments] == [
            (sid, index, fields) for index, (sid, fields) in enumerate(expected, 1)
        ]
        assert message.segment_count == len(expected)


def test_the_message_columns_are_msh_10_9_7_and_4() -> None:
    adt, oru = messages(FILES["batch-CR"])
    assert (adt.message_control_id, adt.message_type, adt.message_time, adt.sending_facility) == (
        f"CTRL-{CANARY}",
        "ADT^A08^ADT_A01",
        "20240501083000",
        "GOOD HEALTH HOSPITAL",
    )
    assert (oru.message_control_id, oru.message_type, oru.message_time) == (
        "LAB-0002",
        "ORU^R01",
        "202405011200",
    )


def test_escape_sequences_repeats_and_z_segments_are_kept_as_sent() -> None:
    adt = messages(FILES["mllp-CRLF"])[0]
    pid = adt.segments[2]
    assert pid.fields[4] == "O'BRIEN\\S\\JR^PAT^Q"  # PID-5
    assert pid.fields[2] == f"{CANARY}^^^GHH^MR~123-45-6789^^^SSA^SS"  # PID-3, two repeats
    assert [s.segment_index for s in adt.segments if s.segment_id == "OBX"] == [5, 6]
    assert adt.segments[5].fields[4] == "120\\F\\80"
    zpi = adt.segments[6]
    assert (zpi.segment_id, zpi.fields) == ("ZPI", ["1", "ward note \\T\\ more\\E\\", "a&b"])


@pytest.mark.parametrize("data", FILES.values(), ids=FILES.keys())
def test_fields_agree_with_python_hl7(data: bytes) -> None:
    """python-hl7 parses each message on its own; str() of its fields is the text as sent."""
    for message in messages(data):
        text = "\r".join(segment_text(s.segment_id, s.fields) for s in message.segments)
        theirs = python_hl7.parse(text)
        assert len(theirs) == message.segment_count
        for segment, their in zip(message.segments, theirs, strict=True):
            assert str(their[0]) == segment.segment_id
            start = 1 if segment.segment_id == "MSH" else 0  # python-hl7: MSH[1] is MSH-1 too
            assert [str(f) for f in their[1:]][start:] == segment.fields[start:]


def test_reading_a_byte_at_a_time_changes_nothing() -> None:
    for data in FILES.values():
        assert messages(data, chunk_bytes=1) == messages(data)


def test_segment_tables_gain_columns_as_fields_appear() -> None:
    tables = SegmentTables()
    first, second = messages(FILES["batch-CR"])
    grown = tables.add(first)
    assert grown["pid"] == segment_columns("PID", 11)
    assert grown["obx"] == [f"obx_{n}" for n in range(1, 12)]
    assert grown["zpi"] == ["zpi_1", "zpi_2", "zpi_3"]
    assert grown["msh"][:2] == ["msh_1", "msh_2"]
    again = tables.add(second)  # ORU: no wider PID or OBX, a new OBR
    assert again == {"obr": ["obr_1", "obr_2", "obr_3", "obr_4"]}
    wider = messages(b"MSH|^~\\&|A|B|||1||ADT^A01|X9|P|2.5\rPID|1|2|3|4|5|6|7|8|9|10|11|12\r")
    assert tables.add(wider[0]) == {"pid": ["pid_12"]}
    assert tables.columns("PID")[-1] == "pid_12"


BAD = (
    b"MSH|^~\\&|A|B|||1||ADT^A01|OK-1|P|2.5\rPID|1||" + CANARY.encode() + b"\r"
    b"MSH|^~\\&|A|B|||1||ADT^A01||P|2.5\rPID|1||" + CANARY.encode() + b"\r"  # no MSH-10
    b"\x0bPID|1||" + CANARY.encode() + b"\rPV1|1\x1c\r"  # a frame without MSH
    b"MSH|^~\\&|A|B|||1||ADT^A01|OK-4|P|2.5\rpid|" + CANARY.encode() + b"\r"  # bad segment id
    b"MSH|^~\\&|A|B|||1||ADT^A01|OK-5|P|2.5\rPID|1||\xe9" + CANARY.encode() + b"\r"  # latin-1
    b"MSH\r"  # no field separator
    b"MSH|^~\\&|A|B|||1||ADT^A01|OK-7|P|2.5\r"
)


def test_bad_messages_are_named_by_number_and_reason() -> None:
    bad: list[BadRow] = []
    good = messages(BAD, on_bad=bad.append)
    assert [m.message_control_id for m in good] == ["OK-1", "OK-7"]
    assert [(b.number, b.reason) for b in bad] == [
        (2, "no-control-id"),
        (3, "no-msh"),
        (4, "bad-segment"),
        (5, "undecodable"),
        (6, "bad-msh"),
    ]
    assert str(bad[2]) == "message 4: segment 2 has no valid segment id (three letters or " \
        "digits) (bad-segment)"  # fmt: skip
    assert CANARY.encode() in bad[0].raw  # the raw message rides along, for a rejects table
    for row in bad:
        assert CANARY not in str(row) and CANARY not in repr(row)


def test_another_encoding_reads_what_utf8_refuses() -> None:
    bad: list[BadRow] = []
    good = messages(BAD, encoding="latin-1", on_bad=bad.append)
    assert "OK-5" in [m.message_control_id for m in good]
    assert good[1].segments[1].fields[2] == "\xe9" + CANARY


def test_by_default_the_first_bad_message_refuses_the_file() -> None:
    with pytest.raises(BadRowError) as refused:
        messages(BAD)
    assert str(refused.value) == "message 2: MSH-10 (message control id) is empty (no-control-id)"
    assert CANARY not in str(refused.value) and CANARY not in repr(refused.value)
    assert refused.value.bad.number == 2
