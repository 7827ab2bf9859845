"""prw_deploy.py's freshness automations and --status for real, against the session's live
Prefect server (issue 27): --plan sees a deployed automation as unchanged until its entry's
freshness changes, --prune deletes only this warehouse's own automations, and --status
exits 2 while a watched source has never loaded. Windows of an hour: nothing fires here
(tests/e2e/test_freshness.py shows the notifications)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from prh_ingest import naming
from support.commands import run_python
from support.flow_runs import PrefectApi
from support.git import bare_repo
from support.services import PrefectServer
from support.warehouse import bake_warehouse

pytestmark = pytest.mark.e2e

HELLO_FLOW = """from prefect import flow


@flow(name="hello-ingest")
def hello_ingest() -> None:
    pass
"""
# A webhook nobody listens on: the automations need the block it makes, nothing is sent.
NOTIFY = {"PRH_NOTIFY_URL": "http://127.0.0.1:9/hook"}
# What the flow emits after a load (prh_ingest.freshness.emit_load_events), from a process
# of its own: the summary ingest.py prints.
LOADED = """import sys
from prefect.events.worker import EventsWorker
from prh_ingest import freshness
summary = {"ok": True, "rows": 120, "size_bytes": 2048, "mode": "append", "table": "t"}
freshness.emit_load_events(sys.argv[1], sys.argv[2], summary)
EventsWorker.drain_all()
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("fresh-repo")
    (root / "hello/prefect").mkdir(parents=True)
    (root / "hello/prefect/hello.py").write_text(HELLO_FLOW)
    return str(bare_repo(root / "hello", root))


def watched(repo: str, source: str, freshness: str = "1h") -> dict:
    return {
        "repo": repo,
        "entrypoint": "prefect/hello.py:hello_ingest",
        "cron": "",
        "freshness": freshness,
        "source": source,
    }


def prw_deploy(
    warehouse: Path, server: PrefectServer, flows: dict, *args: str
) -> subprocess.CompletedProcess[str]:
    """Write *flows* to the warehouse's flows.json (the team's file) and run prw_deploy.py."""
    (warehouse / "prefect/flows.json").write_text(json.dumps(flows, indent=2) + "\n")
    return run_python(["prefect/prw_deploy.py", *args], warehouse, server.env | NOTIFY)


def automation_names(api: PrefectApi) -> set[str]:
    return {automation["name"] for automation in api.post("/automations/filter", {})}


def test_plan_shows_an_automation_unchanged_until_its_freshness_changes_and_status_exits_2(
    prefect_server: PrefectServer, repo: str, tmp_path: Path
) -> None:
    warehouse = bake_warehouse(tmp_path, warehouse_name="Fresh Plan", work_pool="fresh-plan")
    flows = {"fp-a-ingest": watched(repo, "fp/a"), "fp-b-ingest": watched(repo, "fp/b")}
    first = prw_deploy(warehouse, prefect_server, flows)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "create    automation freshness-fp-a-ingest\n" in first.stdout
    assert "Created automation 'late-runs-fresh-plan'\n" in first.stdout

    same = prw_deploy(warehouse, prefect_server, flows, "--plan")
    assert same.returncode == 0, same.stdout + same.stderr
    assert same.stdout.endswith(
        "unchanged automation late-runs-fresh-plan\n"
        "unchanged automation freshness-fp-a-ingest\n"
        "unchanged automation freshness-fp-b-ingest\n"
        "automations: 3 unchanged\n"
    ), same.stdout

    longer = {**flows, "fp-a-ingest": watched(repo, "fp/a", freshness="2h")}
    changed = prw_deploy(warehouse, prefect_server, longer, "--plan")
    assert changed.returncode == 2, changed.stdout + changed.stderr
    assert "update    automation freshness-fp-a-ingest\n" in changed.stdout
    assert changed.stdout.endswith("automations: 1 update, 2 unchanged\n"), changed.stdout

    loaded = run_python(["-c", LOADED, "fp", "a"], warehouse, prefect_server.env)
    assert loaded.returncode == 0, loaded.stderr
    api = PrefectApi(prefect_server.api_url)
    api.wait_for_event("prh.ingest.loaded", naming.source_resource("fp", "a"), timeout=20)
    both = prw_deploy(warehouse, prefect_server, flows, "--status")
    assert both.returncode == 2, both.stdout + both.stderr
    rows = [line.split() for line in both.stdout.splitlines()]
    assert rows[0] == ["SOURCE", "DEPLOYMENT", "LAST", "LOAD", "(UTC)", "AGE", "ROWS", "STATE"]
    assert (rows[1][:2], rows[1][-2:]) == (["fp/a", "fp-a-ingest"], ["120", "fresh"])
    assert rows[2] == ["fp/b", "fp-b-ingest", "-", "-", "-", "never"]
    fresh_only = {"fp-a-ingest": flows["fp-a-ingest"]}
    assert prw_deploy(warehouse, prefect_server, fresh_only, "--status").returncode == 0


def test_prune_deletes_only_this_warehouses_own_automations(
    prefect_server: PrefectServer, repo: str, tmp_path: Path
) -> None:
    api = PrefectApi(prefect_server.api_url)
    warehouse = bake_warehouse(tmp_path, warehouse_name="Fresh Prune", work_pool="fresh-prune")
    flows = {"pr-a-ingest": watched(repo, "pr/a"), "pr-b-ingest": watched(repo, "pr/b")}
    first = prw_deploy(warehouse, prefect_server, flows)
    assert first.returncode == 0, first.stdout + first.stderr
    # Another warehouse's automation and a hand-made one, copies of b's.
    (b,) = [a for a in api.post("/automations/filter", {}) if a["name"] == "freshness-pr-b-ingest"]
    body = {k: v for k, v in b.items() if k not in ("id", "created", "updated")}
    api.post("/automations/", {**body, "name": "freshness-other", "tags": ["warehouse:other"]})
    api.post("/automations/", {**body, "name": "hand-made-freshness", "tags": []})

    one = {"pr-a-ingest": flows["pr-a-ingest"]}
    kept = prw_deploy(warehouse, prefect_server, one, "--plan")
    assert "unlisted  automation freshness-pr-b-ingest\n" in kept.stdout, kept.stdout
    pruned = prw_deploy(warehouse, prefect_server, one, "--prune")
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert "Deleted automation 'freshness-pr-b-ingest'\n" in pruned.stdout
    names = automation_names(api)
    assert "freshness-pr-b-ingest" not in names
    assert {"freshness-pr-a-ingest", "late-runs-fresh-prune"} <= names
    assert {"freshness-other", "hand-made-freshness"} <= names
