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
