"""FHIR Bulk Data NDJSON through the loader (prh_ingest.load.messages), on both sinks: one table
per resource type, each resource's JSON equal to what was sent (jsonb on PostgreSQL, text on
SQLite), plain and gzipped, non-ASCII names; a bad line refuses the file in one line with its
number and nothing is written; the canary never reaches the output."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from loading import KEY, TABLE, Sink, ingest, rejected
from prh_ingest import naming
from test_formats_fhir import CANARY, OBSERVATIONS, PATIENTS, ndjson

FORMAT_SETTING = f"{KEY}_FORMAT"


def stored(sink: Sink, resource_type: str) -> list[tuple]:
    table = naming.part_table_name("clinic-cal", "epic", resource_type)
    rows = sink.query(f"SELECT id, last_updated, resource FROM {table}")  # noqa: S608
    as_json = [
        (i, last, value if isinstance(value, dict) else json.loads(value))
        for i, last, value in rows
    ]
    return sorted(as_json, key=lambda row: row[0])


def sent(resources: list[dict]) -> list[tuple]:
    rows = [(r["id"], r.get("meta", {}).get("lastUpdated"), r) for r in resources]
    return sorted(rows, key=lambda row: row[0])


@pytest.mark.parametrize("gzipped", [False, True], ids=["ndjson", "ndjson.gz"])
def test_each_resource_lands_as_equal_json(sink: Sink, tmp_path: Path, gzipped: bool) -> None:
    for resources in (PATIENTS, OBSERVATIONS):
        data = ndjson(resources)
        source = tmp_path / f"{resources[0]['resourceType']}.000.ndjson"
        if gzipped:
            source = source.with_name(source.name + ".gz")
            data = gzip.compress(data)
        source.write_bytes(data)
        result = ingest(source, sink)
        assert result.returncode == 0, result.stderr
        assert f"loaded {len(resources)} rows" in result.stdout
        assert CANARY not in result.stdout + result.stderr
    assert stored(sink, "Patient") == sent(PATIENTS)
    assert stored(sink, "Observation") == sent(OBSERVATIONS)
    counts = sorted(row[0] for row in sink.query(f"SELECT row_count FROM {TABLE}_loads"))  # noqa: S608
    assert counts == sorted([len(PATIENTS), len(OBSERVATIONS)])


def test_the_format_setting_reads_any_name_and_the_same_bytes_add_nothing(
    sink: Sink, tmp_path: Path
) -> None:
    source = tmp_path / "bulk_export.json"
    source.write_bytes(ndjson(PATIENTS))
    assert ingest(source, sink, **{FORMAT_SETTING: "fhir-ndjson"}).returncode == 0
    again = ingest(source, sink, **{FORMAT_SETTING: "fhir-ndjson"})
    assert again.returncode == 0, again.stderr
    assert "loaded 0 rows" in again.stdout
    assert stored(sink, "Patient") == sent(PATIENTS)


@pytest.mark.parametrize(
    ("line", "reason"),
    [("{not json", "not-json"), ('{"id": "x1"}', "no-resource-type"),
     ('{"resourceType": "Patient"}', "no-id")],
    ids=["not-json", "no-resource-type", "no-id"],
)  # fmt: skip
def test_a_bad_line_refuses_the_file_by_its_number(
    sink: Sink, tmp_path: Path, line: str, reason: str
) -> None:
    good = tmp_path / "Patient.000.ndjson"
    good.write_bytes(ndjson(PATIENTS))
    assert ingest(good, sink).returncode == 0
    source = tmp_path / "Patient.001.ndjson"
    source.write_bytes(ndjson(OBSERVATIONS[:1]) + f"{line}\n".encode() + ndjson(OBSERVATIONS[1:]))
    result = ingest(source, sink)
    message = rejected(result, source)
    assert message.startswith("line 2: ") and reason in message, message
    assert CANARY not in result.stdout + result.stderr
    assert stored(sink, "Patient") == sent(PATIENTS)  # nothing of the bad file written


def updated(resource: dict, **changes: object) -> dict:
    return {**resource, **changes, "meta": {"lastUpdated": "2024-05-03T09:00:00Z"}}


def history(sink: Sink, resource_type: str) -> list[tuple]:
    table = naming.history_table(naming.part_table_name("clinic-cal", "epic", resource_type))
    rows = sink.query(f"SELECT id, _load_id, _replaced_by_load_id, resource FROM {table}")  # noqa: S608
    return sorted(
        (i, load, by, value if isinstance(value, dict) else json.loads(value))
        for i, load, by, value in rows
    )


def test_by_default_a_resource_sent_again_replaces_its_row_and_the_old_goes_to_history(
    sink: Sink, tmp_path: Path
) -> None:
    monday = tmp_path / "Patient.000.ndjson"
    monday.write_bytes(ndjson(PATIENTS[:2]))
    assert ingest(monday, sink).returncode == 0
    changed = updated(PATIENTS[1], active=False)
    tuesday = tmp_path / "Patient.001.ndjson"
    tuesday.write_bytes(ndjson([changed, PATIENTS[2]]))  # p2 again, changed; p.3-x new
    result = ingest(tuesday, sink)
    assert result.returncode == 0, result.stderr
    assert "loaded 2 rows" in result.stdout
    assert stored(sink, "Patient") == sent([PATIENTS[0], changed, PATIENTS[2]])
    assert history(sink, "Patient") == [("p2", 1, 2, PATIENTS[1])]
    modes = sink.query(f"SELECT load_id, load_mode FROM {TABLE}_loads ORDER BY load_id")  # noqa: S608
    assert modes == [(1, "merge"), (2, "merge")]
    # What the table said after Monday: its rows and its history, the resource of one type
    # in both (jsonb on PostgreSQL), as the loader's as-of query reads them.
    table = naming.part_table_name("clinic-cal", "epic", "Patient")
    after_monday = sink.query(
        f"SELECT id, resource FROM {table} WHERE _load_id <= 1 UNION ALL "  # noqa: S608
        f"SELECT id, resource FROM {table}_history "
        "WHERE _load_id <= 1 AND _replaced_by_load_id > 1"
    )
    as_json = [(i, r if isinstance(r, dict) else json.loads(r)) for i, r in after_monday]
    assert sorted(as_json, key=lambda row: row[0]) == [("p1", PATIENTS[0]), ("p2", PATIENTS[1])]


def test_a_resource_id_twice_in_one_file_refuses_it_by_line_unless_the_last_wins(
    sink: Sink, tmp_path: Path
) -> None:
    source = tmp_path / "Patient.000.ndjson"
    twice = updated(PATIENTS[0], active=True)
    source.write_bytes(ndjson([PATIENTS[0], PATIENTS[1], twice]))
    result = ingest(source, sink)
    message = rejected(result, source)
    assert message == (
        "key (id) repeats within the file (2 lines): lines 1 and 3 "
        "(DUPLICATE_KEYS=last lets the later row win)"
    )
    assert CANARY not in result.stdout + result.stderr
    last = {naming.duplicate_keys_setting("clinic-cal", "epic"): "last"}
    assert ingest(source, sink, **last).returncode == 0
    assert stored(sink, "Patient") == sent([twice, PATIENTS[1]])


def test_append_mode_keeps_every_version_and_a_table_keeps_its_first_mode(
    sink: Sink, tmp_path: Path
) -> None:
    monday = tmp_path / "Patient.000.ndjson"
    monday.write_bytes(ndjson(PATIENTS[:1]))
    append = {f"{KEY}_LOAD_MODE": "append"}
    assert ingest(monday, sink, **append).returncode == 0
    tuesday = tmp_path / "Patient.001.ndjson"
    changed = updated(PATIENTS[0], active=False)
    tuesday.write_bytes(ndjson([changed]))
    assert ingest(tuesday, sink).returncode == 0  # unset: the table's first mode, append
    assert [row[0] for row in stored(sink, "Patient")] == ["p1", "p1"]
    modes = sink.query(f"SELECT load_mode FROM {TABLE}_loads ORDER BY load_id")  # noqa: S608
    assert modes == [("append",), ("append",)]
    snapshot = ingest(tuesday, sink, **{f"{KEY}_LOAD_MODE": "snapshot"})
    assert rejected(snapshot, tuesday) == (
        f"{KEY}_LOAD_MODE=snapshot: this format loads in merge or append mode"
    )


def test_quarantine_sets_a_bad_line_aside_by_its_number(sink: Sink, tmp_path: Path) -> None:
    source = tmp_path / "Patient.000.ndjson"
    bad = b'{"resourceType": "Patient", "name": "' + CANARY.encode() + b'"\n'  # cut short
    source.write_bytes(ndjson(PATIENTS[:1]) + bad + ndjson(PATIENTS[1:]))
    quarantine = {f"{KEY}_BAD_ROWS": "quarantine", f"{KEY}_MAX_BAD_ROWS": "1"}
    result = ingest(source, sink, **quarantine)
    assert result.returncode == 0, result.stderr
    assert "set aside 1 unreadable row(s)" in result.stdout
    assert stored(sink, "Patient") == sent(PATIENTS)
    rejects_table = naming.rejects_table(TABLE)
    found = sink.query(f"SELECT row_number, reason, raw_line FROM {rejects_table}")  # noqa: S608
    assert [(n, reason, bytes(raw)) for n, reason, raw in found] == [(2, "not-json", bad[:-1])]
    assert CANARY not in result.stdout + result.stderr
