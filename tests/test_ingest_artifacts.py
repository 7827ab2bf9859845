"""Every load visible in the Prefect UI: the flow, run against a live server, turns
ingest.py's JSON summary line into a table artifact keyed per source, and a failed load's
one-line error into a markdown artifact; both read back from the server, with the flow
run's logs, where a malformed row's canary value never appears. A start-up failure of
ingest.py (a missing module) is one line and not retried."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from prh_ingest import naming
from support.baking import SOURCE, SOURCE_SETTING, local_run_env
from support.services import PrefectServer

SLUG = "artifacts-demo"  # its own slug: its own keys on the session's shared server
CANARY = "MRN-CANARY-0815"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from support.baking import bake_ingest_project

    out = tmp_path_factory.mktemp("artifacts")
    return bake_ingest_project(
        out, project_name="Artifacts Demo", dependency_manager="none", source_format="csv"
    )


def setting(name: str) -> str:
    return SOURCE_SETTING.replace("CLINIC_CAL", naming.env_prefix(SLUG)).replace(
        "SOURCE_FILE", name
    )


def run(project: Path, server: PrefectServer, tmp_path: Path, source: Path, **settings: str):
    env = local_run_env(server.env, project, tmp_path / "venvs", tmp_path / "sink.db")
    env.pop(SOURCE_SETTING, None)
    env.pop("CLINIC_CAL_DATABASE_URL", None)
    env[setting("SOURCE_FILE")] = str(source)
    env[naming.sink_setting(SLUG)] = f"sqlite:///{tmp_path / 'sink.db'}"
    env.update(settings)
    return run_flow_script_of(project, env)


def run_flow_script_of(project: Path, env: dict[str, str]):
    import subprocess
    import sys

    flow = f"prefect/{naming.flow_name(SLUG, SOURCE)}.py"
    return subprocess.run(
        [sys.executable, flow], cwd=project, env=env, capture_output=True, text=True, timeout=300
    )


def api(server: PrefectServer, path: str, body: dict) -> list[dict]:
    response = httpx.post(f"{server.api_url}{path}", json=body, timeout=30)
    response.raise_for_status()
    return response.json()


def artifacts(server: PrefectServer, key: str) -> list[dict]:
    body = {"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC"}
    return api(server, "/artifacts/filter", body)


def flow_run_logs(server: PrefectServer, flow_run_id: str) -> str:
    body = {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200}
    return "\n".join(log["message"] for log in api(server, "/logs/filter", body))


def test_a_load_is_a_table_artifact_keyed_per_source(
    project: Path, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    source = tmp_path / "epic.txt"
    source.write_text("mrn|visit\n0001|2026-11-01\n0002|2026-11-02\n")
    result = run(project, prefect_server, tmp_path, source)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    key = naming.loads_artifact_key(SLUG, SOURCE)
    assert key == "artifacts-demo-epic-loads"
    [artifact] = artifacts(prefect_server, key)
    assert artifact["type"] == "table"
    [row] = json.loads(artifact["data"])
    assert row["file"] == "epic.txt" and row["rows"] == 2 and row["mode"] == "append"
    assert row["table"] == "artifacts_demo_epic" and row["columns_added"] == "none"
    assert row["size_bytes"] == source.stat().st_size and len(row["sha256"]) == 64
    logs = flow_run_logs(prefect_server, artifact["flow_run_id"])
    assert "delimiter '|' (detected from the header line" in logs


def test_a_failed_load_is_a_markdown_artifact_without_patient_values(
    project: Path, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    source = tmp_path / "epic.csv"
    source.write_text("mrn,name\n0001,Jo\n0002,Jo," + CANARY + "\n")
    result = run(project, prefect_server, tmp_path, source)
    assert result.returncode != 0
    assert result.stdout.count("triggered with") + result.stderr.count("triggered with") <= 1
    [artifact] = artifacts(prefect_server, naming.load_failures_artifact_key(SLUG, SOURCE))
    assert artifact["type"] == "markdown"
    assert "row 3 has 3 values, the header has 2" in artifact["data"]
    logs = flow_run_logs(prefect_server, artifact["flow_run_id"])
    assert "row 3 has 3 values" in logs
    assert CANARY not in artifact["data"] + logs + result.stdout + result.stderr


def test_a_missing_module_fails_in_one_line_and_is_not_retried(
    project: Path, prefect_server: PrefectServer, tmp_path: Path
) -> None:
    source = tmp_path / "epic.csv"
    source.write_text("mrn\n1\n")
    transform = project / "transform.py"
    kept = transform.read_text()
    transform.write_text(kept + "\nimport prh_module_not_installed  # noqa: E402,F401\n")
    try:
        result = run(project, prefect_server, tmp_path, source)
    finally:
        transform.write_text(kept)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "error: ingest.py cannot start: No module named 'prh_module_not_installed'" in output
    assert "Traceback" not in output.split("cannot start")[0][-2000:]
    assert output.count("Retry") == 0 and output.count("AwaitingRetry") == 0, output[-3000:]
