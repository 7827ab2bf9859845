"""Every load visible in the Prefect UI, through the worker: a run's load is a table
artifact keyed per source, a failed load's one-line error a markdown artifact, both read
back from the live server with the run's logs, where a malformed row's canary never shows."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from openpyxl import load_workbook
from openpyxl.utils import get_column_letter
from prh_ingest import naming
from support.site import CLINIC_CAL, Site

pytestmark = [pytest.mark.e2e, pytest.mark.network]

CANARY = "MRN-CANARY-2718"


def run_artifacts(site: Site, run_id: str, key: str) -> list[dict]:
    body = {"artifacts": {"key": {"any_": [key]}, "flow_run_id": {"any_": [run_id]}}}
    return site.api.post("/artifacts/filter", body)


def test_a_load_through_the_worker_is_a_table_artifact(site: Site) -> None:
    site.worker()
    landing = site.landing(CLINIC_CAL)
    run_id = site.run(CLINIC_CAL)
    run = site.api.wait_terminal(run_id, timeout=240)
    assert run["state_type"] == "COMPLETED", "\n".join(site.api.logs(run_id))
    key = naming.loads_artifact_key(CLINIC_CAL.slug, CLINIC_CAL.source_name)
    assert key == "clinic-cal-epic-loads"
    [artifact] = run_artifacts(site, run_id, key)
    assert artifact["type"] == "table"
    [row] = json.loads(artifact["data"])
    assert row["file"] == landing.name and row["table"] == CLINIC_CAL.table
    assert row["sha256"] == hashlib.sha256(landing.read_bytes()).hexdigest()
    assert row["size_bytes"] == landing.stat().st_size and row["mode"] == "append"


def test_a_failed_load_through_the_worker_is_a_markdown_artifact_without_values(
    site: Site,
) -> None:
    site.worker()
    landing = site.landing(CLINIC_CAL)
    workbook = load_workbook(site.sample(CLINIC_CAL))  # the table's columns, and one value more
    sheet = workbook.active
    last = get_column_letter(sheet.max_column)
    outside = sheet.cell(row=3, column=sheet.max_column + 2)
    outside.value = CANARY
    workbook.save(landing)
    try:
        run_id = site.run(CLINIC_CAL)
        run = site.api.wait_terminal(run_id, timeout=240)
    finally:
        shutil.copy(site.sample(CLINIC_CAL), landing)
    logs = "\n".join(site.api.logs_with(run_id, "error: "))
    assert run["state_type"] == "FAILED", logs
    key = naming.load_failures_artifact_key(CLINIC_CAL.slug, CLINIC_CAL.source_name)
    [artifact] = run_artifacts(site, run_id, key)
    assert artifact["type"] == "markdown"
    message = f"cell {outside.coordinate} has a value outside the header's columns A to {last}"
    assert message in artifact["data"]
    assert message in logs
    assert CANARY not in artifact["data"] and CANARY not in logs
