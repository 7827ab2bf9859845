"""FHIR Bulk Data NDJSON: each resource as sent, plain or gzipped; bad lines by number and
reason; the COPY bytes land in a PostgreSQL jsonb column as equal JSON."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import psycopg
import pytest
from prh_ingest.formats import BadRow, BadRowError
from prh_ingest.formats.fhir import (
    COPY_COLUMNS,
    COPY_OPTIONS,
    Resource,
    copy_chunks,
    open_ndjson,
    read_resources,
)

CANARY = "CANARY-51d0c2"  # a patient identifier that must never reach a message

PATIENTS = [
    {"resourceType": "Patient", "id": "p1", "meta": {"lastUpdated": "2024-05-01T10:00:00Z"},
     "identifier": [{"system": "urn:mrn", "value": CANARY}],
     "name": [{"family": "Łukasiewicz", "given": ["Zoë", "Ångström"]}], "birthDate": "1980-01-01"},
    {"resourceType": "Patient", "id": "p2", "name": [{"text": "山田 太郎"}],
     "extension": [{"url": "urn:note", "valueString": "C:\\temp \"quoted\"\ttab \u2028 \u00e9"}]},
    {"resourceType": "Patient", "id": "p.3-x", "meta": {"lastUpdated": "2024-05-02T11:30:00+02:00"},
     "active": True, "multipleBirthInteger": 2, "deceasedBoolean": False},
]  # fmt: skip
OBSERVATIONS = [
    {"resourceType": "Observation", "id": f"o{n}", "meta": {"lastUpdated": "2024-05-01T10:00:00Z"},
     "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
     "subject": {"reference": "Patient/p1"}, "valueQuantity": {"value": 72.5 + n, "unit": "/min"},
     "note": [{"text": "Schwester Jürgen: \\n is not a newline"}]}
    for n in range(3)
]  # fmt: skip


def ndjson(resources: list[dict], end: str = "\n") -> bytes:
    """One resource a line, written as an exporter might: non-ASCII as UTF-8, escapes kept."""
    return "".join(json.dumps(r, ensure_ascii=False) + end for r in resources).encode()


def resources(data: bytes, **options: object) -> list[Resource]:
    return list(read_resources(io.BytesIO(data), **options))  # type: ignore[arg-type]


@pytest.mark.parametrize("gzipped", [False, True], ids=["ndjson", "ndjson.gz"])
@pytest.mark.parametrize("kind", [PATIENTS, OBSERVATIONS], ids=["Patient", "Observation"])
def test_each_resource_round_trips_as_sent(tmp_path: Path, kind: list[dict], gzipped: bool) -> None:
    data = ndjson(kind)
    path = tmp_path / f"{kind[0]['resourceType']}.000.ndjson"
    if gzipped:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    with open_ndjson(path) as stream:
        read = list(read_resources(stream))
    assert [r.raw for r in read] == data.splitlines()  # the text exactly as sent
    assert [json.loads(r.text) for r in read] == kind
    assert [(r.line_number, r.resource_type, r.id) for r in read] == [
        (n, x["resourceType"], x["id"]) for n, x in enumerate(kind, 1)
    ]
    assert [r.last_updated for r in read] == [x.get("meta", {}).get("lastUpdated") for x in kind]


def test_crlf_blank_lines_a_bom_and_no_final_line_end() -> None:
    data = b"\xef\xbb\xbf" + ndjson(PATIENTS, "\r\n") + b"\r\n   \n" + ndjson(OBSERVATIONS)[:-1]
    read = resources(data)
    assert [r.id for r in read] == ["p1", "p2", "p.3-x", "o0", "o1", "o2"]
    assert [r.line_number for r in read] == [1, 2, 3, 6, 7, 8]
    assert read[0].raw == ndjson(PATIENTS[:1])[:-1]


BAD_LINES = [
    (b'{"resourceType": "Patient", "id": "' + CANARY.encode() + b'"', "not-json"),
    (b'["Patient", "' + CANARY.encode() + b'"]', "not-an-object"),
    (b'{"id": "' + CANARY.encode() + b'"}', "no-resource-type"),
    (b'{"resourceType": "patient data ' + CANARY.encode() + b'", "id": "x"}', "no-resource-type"),
    (b'{"resourceType": "Patient", "name": "' + CANARY.encode() + b'"}', "no-id"),
    (b'{"resourceType": "Patient", "id": 7}', "no-id"),
    (b'{"resourceType": "Patient", "id": "x", "name": "\xff' + CANARY.encode() + b'"}', "not-utf8"),
    (b'{"resourceType": "Patient", "id": "x", "n": "' + CANARY.encode() + b'\\u0000"}',
     "not-for-jsonb"),
    (b'{"resourceType": "Patient", "id": "x", "v": NaN}', "not-json"),
    (b'{"resourceType": "Patient", "id": "x", "v": "\\ud800"}', "not-json"),
]  # fmt: skip


def test_bad_lines_are_named_by_number_and_reason() -> None:
    good = ndjson(PATIENTS[:1])
    data = good + b"".join(line + b"\n" for line, _ in BAD_LINES) + good
    bad: list[BadRow] = []
    read = resources(data, on_bad=bad.append)
    assert [r.line_number for r in read] == [1, len(BAD_LINES) + 2]
    assert [(b.number, b.reason) for b in bad] == [
        (n, reason) for n, (_, reason) in enumerate(BAD_LINES, 2)
    ]
    assert [b.raw for b in bad] == [line for line, _ in BAD_LINES]
    for row in bad:
        assert CANARY not in str(row) and CANARY not in repr(row)
    with pytest.raises(BadRowError) as refused:
        resources(data)
    assert str(refused.value) == "line 2: the line is not JSON (not-json)"


def test_a_nul_escape_written_as_text_is_not_a_nul() -> None:
    line = b'{"resourceType": "Patient", "id": "x", "n": "C:\\\\u0000"}'  # backslash, then u0000
    assert resources(line)[0].raw == line


def copy_into_postgresql(conninfo: str, chunks: list[bytes]) -> list[tuple]:
    with psycopg.connect(conninfo) as connection:
        connection.execute(
            "CREATE TABLE bulk_patient (id text, last_updated text, resource jsonb NOT NULL)"
        )
        sql = f"COPY bulk_patient ({', '.join(COPY_COLUMNS)}) FROM STDIN WITH {COPY_OPTIONS}"
        with connection.cursor() as cursor:
            with cursor.copy(sql) as copy:
                for chunk in chunks:
                    copy.write(chunk)
            return cursor.execute(
                "SELECT id, last_updated, resource::text FROM bulk_patient ORDER BY id"
            ).fetchall()


def test_copy_bytes_land_in_jsonb_as_equal_json(pg_conninfo: str) -> None:
    awkward = [
        *PATIENTS,
        {"resourceType": "Patient", "id": "quote\x1echar", "meta": {"lastUpdated": ""}},
        {"resourceType": "Patient", "id": "delim\x1fchar,\"x\"", "meta": {"lastUpdated": "\\."}},
        {"resourceType": "Patient", "id": "back\\slash", "meta": {"lastUpdated": 20240501}},
    ]
    data = ndjson(awkward) + b'{"resourceType":"Patient",\r"id":"cr-inside"}\n'
    read = resources(data)
    chunks = list(copy_chunks(read, "Patient", chunk_bytes=64))
    assert len(chunks) > 1
    rows = copy_into_postgresql(pg_conninfo, chunks)
    expected = {r.id: (r.last_updated, json.loads(r.text)) for r in read}
    assert {row[0]: (row[1], json.loads(row[2])) for row in rows} == expected
    assert expected["quote\x1echar"][0] == ""  # an empty lastUpdated stays empty, not NULL
    assert expected["back\\slash"][0] is None  # not a string: no last_updated


def test_copy_of_one_type_names_a_stray_line_by_number_only() -> None:
    read = resources(ndjson(PATIENTS[:1] + OBSERVATIONS[:1]))
    with pytest.raises(ValueError, match=r"^line 2: not a Patient resource"):
        list(copy_chunks(read, "Patient"))
    others: list[Resource] = []
    chunks = list(copy_chunks(read, "Patient", on_other=others.append))
    assert [o.id for o in others] == ["o0"] and chunks[0].startswith(b"p1\x1f")
