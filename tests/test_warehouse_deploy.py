"""prw_deploy.py for real, against the session's live Prefect server: it names the deployments
that failed and exits non-zero, and --prune removes deployments no longer listed; its
freshness automations are planned and pruned the same way, and --status reads the loads. A pool of
its own keeps these deployments apart from the end-to-end site's."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from prh_ingest import naming
from support.commands import run_python
from support.flow_runs import PrefectApi
from support.git import bare_repo, commit_all, git, head
from support.services import PrefectServer
from support.warehouse import bake_warehouse

pytestmark = pytest.mark.e2e

POOL = "deploy-check"
ZOMBIE = "crash-zombie-flow-runs"  # the automation prw_deploy.py keeps
HELLO_FLOW = """from prefect import flow


@flow(name="hello-ingest")
def hello_ingest(who: str = "world") -> str:
    return who
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A bare git repo holding one trivial flow, as a pushed ingest project would."""
    root = tmp_path_factory.mktemp("flow-repo")
    (root / "hello/prefect").mkdir(parents=True)
    (root / "hello/prefect/hello.py").write_text(HELLO_FLOW)
    return str(bare_repo(root / "hello", root))


def entry(repo: str, function: str = "hello_ingest", **extra: object) -> dict:
    return {
        "repo": repo,
        "entrypoint": f"prefect/hello.py:{function}",
        "cron": "0 6 * * *",
        **extra,
    }


def deploy(server: PrefectServer, output_dir: Path, flows: dict, *args: str, pool: str = POOL):
    """Bake a warehouse with *flows* into *output_dir* and run its prw_deploy.py."""
    warehouse = bake_warehouse(output_dir, work_pool=pool, flows=flows)
    return run_python(["prefect/prw_deploy.py", *args], warehouse, server.env)


def pool_deployments(api: PrefectApi, pool: str = POOL) -> list[str]:
    body = {"work_pools": {"name": {"any_": [pool]}}}
    return sorted(deployment["name"] for deployment in api.post("/deployments/filter", body))


def test_a_failed_deployment_is_named_and_the_rest_deployed(
    prefect_server: PrefectServer, repo: str, tmp_path: Path
) -> None:
    flows = {
        "hello-ingest": entry(repo, timezone="America/New_York", env={"HELLO_MODE": "test"}),
        "broken-ingest": entry(repo, function="no_such_flow"),
        "misplaced-ingest": {**entry(repo), "entrypoint": "prefect/gone.py:hello_ingest"},
        "unreachable-ingest": {**entry(repo), "repo": "/nonexistent/unreachable.git"},
    }
    result = deploy(prefect_server, tmp_path, flows)
    assert result.returncode == 1
    assert result.stderr == (
        "error: broken-ingest: cannot read prefect/hello.py:no_such_flow: "
        "Could not find object 'no_such_flow' in 'prefect/hello.py'\n"
        f"error: misplaced-ingest: prefect/gone.py is not in {repo} (branch main)\n"
        "error: unreachable-ingest: cannot clone /nonexistent/unreachable.git (branch main): "
        "fatal: repository '/nonexistent/unreachable.git' does not exist\n"
    ), result.stderr
    api = PrefectApi(prefect_server.api_url)
    assert api.get(f"/work_pools/{POOL}")["type"] == "process"
    deployment = api.deployment("hello-ingest/hello-ingest")
    schedule = deployment["schedules"][0]["schedule"]
    assert (schedule["cron"], schedule["timezone"]) == ("0 6 * * *", "America/New_York")
    assert deployment["global_concurrency_limit"]["limit"] == 1
    assert deployment["job_variables"] == {"env": {"HELLO_MODE": "test"}}


def test_prune_removes_deployments_no_longer_listed(
    prefect_server: PrefectServer, repo: str, tmp_path: Path
) -> None:
    both = {"hello-ingest": entry(repo), "retired-ingest": entry(repo)}
    api = PrefectApi(prefect_server.api_url)
    first = deploy(prefect_server, tmp_path / "both", both)
    assert first.returncode == 0, first.stdout + first.stderr
    assert {"hello-ingest", "retired-ingest"} <= set(pool_deployments(api))

    second = deploy(prefect_server, tmp_path / "one", {"hello-ingest": entry(repo)}, "--prune")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Deleted deployment 'retired-ingest'" in second.stdout
    assert "retired-ingest" not in pool_deployments(api)
    assert "hello-ingest" in pool_deployments(api)


def test_deploy_keeps_exactly_one_zombie_run_automation(
    prefect_server: PrefectServer, repo: str, tmp_path: Path
) -> None:
    """Runs whose heartbeats stop are crashed by one automation, however often we deploy; a
    deploy rewrites it only when it differs from what the deploy would write."""
    api = PrefectApi(prefect_server.api_url)
    flows = {"hello-ingest": entry(repo)}

    def zombie_automations() -> list[dict]:
        found = api.post("/automations/filter", {})
        return [automation for automation in found if automation["name"] == ZOMBIE]

    written = []
    for attempt in ("first", "again"):
        result = deploy(prefect_server, tmp_path / attempt, flows)
        assert result.returncode == 0, result.stdout + result.stderr
        written += [automation["updated"] for automation in zombie_automations()]
    assert written[0] == written[1]  # unchanged: not written again
    (disabled,) = zombie_automations()
    api.patch(f"/automations/{disabled['id']}", {"enabled": False})
    result = deploy(prefect_server, tmp_path / "changed", flows)
    assert f"Updated automation {ZOMBIE!r}" in result.stdout, result.stdout + result.stderr
    named = zombie_automations()
    assert len(named) == 1
    assert named[0]["enabled"] is True
    trigger, (action,) = named[0]["trigger"], named[0]["actions"]
    assert (trigger["posture"], trigger["within"]) == ("Proactive", 90.0)
    assert trigger["after"] == ["prefect.flow-run.heartbeat"]
    assert (action["type"], action["state"]) == ("change-flow-run-state", "CRASHED")


def schedules_of(api: PrefectApi, name: str) -> list[tuple[str, bool]]:
    """(cron, active) of each schedule of deployment `<flow>/<deployment>`."""
    schedules = api.deployment(name)["schedules"]
    return [(schedule["schedule"]["cron"], schedule["active"]) for schedule in schedules]


def test_a_paused_deployment_stays_paused_through_a_deploy_until_resumed(
    prefect_server: PrefectServer, repo: str, tmp_path: Path
) -> None:
    """An operator's pause (deployment and schedule, as the UI's toggles do) survives a
    deploy that changes the cron; only --resume undoes it."""
    api = PrefectApi(prefect_server.api_url)
    name = "hello-ingest/paused-ingest"
    first = deploy(prefect_server, tmp_path / "first", {"paused-ingest": entry(repo)})
    assert first.returncode == 0, first.stdout + first.stderr
    deployment = api.deployment(name)
    assert deployment["paused"] is False
    api.patch(f"/deployments/{deployment['id']}", {"paused": True})
    schedule_id = deployment["schedules"][0]["id"]
    api.patch(f"/deployments/{deployment['id']}/schedules/{schedule_id}", {"active": False})

    later = {"paused-ingest": entry(repo, cron="0 7 * * *")}
    changed = deploy(prefect_server, tmp_path / "changed", later)
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert "update    paused-ingest, paused (kept)\n" in changed.stdout
    assert api.deployment(name)["paused"] is True
    assert schedules_of(api, name) == [("0 7 * * *", False)]
    assert api.flow_runs(deployment["id"], ["SCHEDULED"]) == []

    warehouse = tmp_path / "changed" / "prh-warehouse"
    resumed = run_python(
        ["prefect/prw_deploy.py", "--resume", "paused-ingest"], warehouse, prefect_server.env
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert api.deployment(name)["paused"] is False
    assert schedules_of(api, name) == [("0 7 * * *", True)]

    paused = run_python(
        ["prefect/prw_deploy.py", "--pause", "paused-ingest"], warehouse, prefect_server.env
    )
    assert paused.returncode == 0, paused.stdout + paused.stderr
    assert api.deployment(name)["paused"] is True
    assert schedules_of(api, name) == [("0 7 * * *", False)]


def test_resume_names_each_deployment_it_cannot_find(
    prefect_server: PrefectServer, repo: str, tmp_path: Path
) -> None:
    first = deploy(prefect_server, tmp_path, {"resumed-ingest": entry(repo)})
    assert first.returncode == 0, first.stdout + first.stderr
    resumed = run_python(
        ["prefect/prw_deploy.py", "--resume", "resumed-ingest", "no-such-ingest"],
        tmp_path / "prh-warehouse",
        prefect_server.env,
    )
    assert resumed.returncode == 1
    assert resumed.stderr == "error: no-such-ingest: 0 deployments of that name in 'deploy-check'\n"
    assert "Resumed deployment 'resumed-ingest'" in resumed.stdout


def plan(warehouse: Path, server: PrefectServer, *args: str):
    return run_python(["prefect/prw_deploy.py", "--plan", *args], warehouse, server.env)


def test_plan_names_the_one_changed_field_and_a_deploy_writes_only_that_deployment(
    prefect_server: PrefectServer, repo: str, tmp_path: Path
) -> None:
    api = PrefectApi(prefect_server.api_url)
    pool = "plan-check"
    flows = {name: entry(repo) for name in ("plan-a-ingest", "plan-b-ingest", "plan-c-ingest")}
    first = deploy(prefect_server, tmp_path / "first", flows, pool=pool)
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.count("create    plan-") == 3
    before = {name: api.deployment(f"hello-ingest/{name}") for name in flows}

    same = plan(tmp_path / "first/prh-warehouse", prefect_server)
    assert same.returncode == 0, same.stdout + same.stderr
    assert [line.split() for line in same.stdout.splitlines()[-4:]] == [
        ["unchanged", "plan-a-ingest"],
        ["unchanged", "plan-b-ingest"],
        ["unchanged", "plan-c-ingest"],
        ["3", "unchanged"],
    ]

    flows["plan-b-ingest"] = entry(repo, cron="30 7 * * *")
    changed = bake_warehouse(tmp_path / "changed", work_pool=pool, flows=flows)
    planned = plan(changed, prefect_server)
    assert planned.returncode == 2, planned.stdout + planned.stderr
    assert "update    plan-b-ingest\n    schedule: '0 6 * * *' -> '30 7 * * *'\n" in planned.stdout
    assert planned.stdout.count("update    ") == 1
    assert planned.stdout.endswith("1 update, 2 unchanged\n")

    applied = run_python(["prefect/prw_deploy.py"], changed, prefect_server.env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    after = {name: api.deployment(f"hello-ingest/{name}") for name in flows}
    assert after["plan-b-ingest"]["updated"] != before["plan-b-ingest"]["updated"]
    assert schedules_of(api, "hello-ingest/plan-b-ingest") == [("30 7 * * *", True)]
    for name in ("plan-a-ingest", "plan-c-ingest"):
        assert after[name]["updated"] == before[name]["updated"], name
    assert plan(changed, prefect_server).returncode == 0


def test_plan_exits_1_naming_an_entry_it_cannot_read(
    prefect_server: PrefectServer, repo: str, tmp_path: Path
) -> None:
    flows = {"plan-broken-ingest": entry(repo, function="gone")}
    warehouse = bake_warehouse(tmp_path, work_pool="plan-check", flows=flows)
    planned = plan(warehouse, prefect_server)
    assert planned.returncode == 1
    assert planned.stderr.startswith("error: plan-broken-ingest: cannot read prefect/hello.py:gone")


def test_a_schedule_removed_from_an_entry_is_removed_on_the_server(
    prefect_server: PrefectServer, repo: str, tmp_path: Path
) -> None:
    api = PrefectApi(prefect_server.api_url)
    name = "hello-ingest/unscheduled-ingest"
    first = deploy(prefect_server, tmp_path / "first", {"unscheduled-ingest": entry(repo)})
    assert first.returncode == 0, first.stdout + first.stderr
    assert schedules_of(api, name) == [("0 6 * * *", True)]
    removed = deploy(
        prefect_server, tmp_path / "removed", {"unscheduled-ingest": entry(repo, cron="")}
    )
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert "    schedule: '0 6 * * *' -> None\n" in removed.stdout
    assert schedules_of(api, name) == []


def test_prune_deletes_only_this_warehouses_unlisted_deployments(
    prefect_server: PrefectServer, repo: str, tmp_path: Path
) -> None:
    """A deployment a person made in the same pool (no marker tag) is never pruned."""
    api = PrefectApi(prefect_server.api_url)
    pool = "prune-check"
    both = {"kept-ingest": entry(repo), "retired-ingest": entry(repo)}
    first = deploy(prefect_server, tmp_path / "both", both, pool=pool)
    assert first.returncode == 0, first.stdout + first.stderr
    flow_id = api.deployment("hello-ingest/kept-ingest")["flow_id"]
    api.post("/deployments/", {"name": "hand-made", "flow_id": flow_id, "work_pool_name": pool})

    one = bake_warehouse(tmp_path / "one", work_pool=pool, flows={"kept-ingest": entry(repo)})
    kept = plan(one, prefect_server)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert "unlisted  retired-ingest\n" in kept.stdout
    listed = plan(one, prefect_server, "--prune")
    assert listed.returncode == 2, listed.stdout + listed.stderr
    assert "prune     retired-ingest\n" in listed.stdout
    assert "hand-made" not in listed.stdout

    pruned = run_python(["prefect/prw_deploy.py", "--prune"], one, prefect_server.env)
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert pool_deployments(api, pool) == ["hand-made", "kept-ingest"]


def test_a_branch_that_did_not_move_is_not_cloned_and_a_pushed_commit_is(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    """The deployment records the commit its flow was read from (its version). While the
    branch head is still that commit, a plan or deploy asks git for the head only: this repo,
    its objects moved away, lists its branch but cannot be cloned. A pushed commit is read."""
    api = PrefectApi(prefect_server.api_url)
    source = tmp_path / "hello"
    (source / "prefect").mkdir(parents=True)
    (source / "prefect/hello.py").write_text(HELLO_FLOW)
    bare = bare_repo(source, tmp_path)
    name = "hello-ingest/commit-ingest"
    first = deploy(
        prefect_server, tmp_path, {"commit-ingest": entry(str(bare))}, pool="commit-check"
    )
    assert first.returncode == 0, first.stdout + first.stderr
    deployed = api.deployment(name)
    assert deployed["version"] == head(source)
    warehouse = tmp_path / "prh-warehouse"

    (bare / "objects").rename(tmp_path / "objects")
    (bare / "objects").mkdir()
    try:
        same = plan(warehouse, prefect_server)
        assert same.returncode == 0, same.stdout + same.stderr
        assert same.stdout.endswith("unchanged commit-ingest\n1 unchanged\n"), same.stdout
        again = run_python(["prefect/prw_deploy.py"], warehouse, prefect_server.env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert api.deployment(name)["updated"] == deployed["updated"]
    finally:
        shutil.rmtree(bare / "objects")
        (tmp_path / "objects").rename(bare / "objects")

    old = head(source)
    flow = HELLO_FLOW.replace('who: str = "world"', 'who: str = "world", greeting: str = "hi"')
    (source / "prefect/hello.py").write_text(flow)
    commit_all(source, "a greeting parameter")
    git(source, "push", "-q", str(bare), "main")
    planned = plan(warehouse, prefect_server)
    assert planned.returncode == 2, planned.stdout + planned.stderr
    assert (
        "update    commit-ingest\n"
        f"    commit: {old[:12]!r} -> {head(source)[:12]!r}\n"
        "    parameter schema: ['who'] -> ['greeting', 'who']\n"
    ) in planned.stdout
    applied = run_python(["prefect/prw_deploy.py"], warehouse, prefect_server.env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    updated = api.deployment(name)
    assert updated["version"] == head(source)
    assert sorted(updated["parameter_openapi_schema"]["properties"]) == ["greeting", "who"]


def test_an_unmarked_deployment_of_the_same_flow_and_name_is_updated_in_place_and_kept_paused(
    prefect_server: PrefectServer, repo: str, tmp_path: Path
) -> None:
    """A deployment made before the marker (by hand, by the old prw_deploy.py, in another
    pool) is found by its name: the plan says update, the deploy keeps its id and its pause
    and adds the marker; it is never created a second time."""
    api = PrefectApi(prefect_server.api_url)
    flow_id = api.post("/flows/", {"name": "hello-ingest"})["id"]
    api.post("/work_pools/", {"name": "elsewhere", "type": "process"})
    made = api.post(
        "/deployments/",
        {"name": "adopted-ingest", "flow_id": flow_id, "work_pool_name": "elsewhere"},
    )
    api.patch(f"/deployments/{made['id']}", {"paused": True})
    flows = {"adopted-ingest": entry(repo)}
    warehouse = bake_warehouse(tmp_path / "adopt", work_pool=POOL, flows=flows)
    planned = plan(warehouse, prefect_server)
    assert planned.returncode == 2, planned.stdout + planned.stderr
    assert "update    adopted-ingest, paused (kept)\n" in planned.stdout
    deployed = run_python(["prefect/prw_deploy.py"], warehouse, prefect_server.env)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    adopted = api.deployment("hello-ingest/adopted-ingest")
    assert (adopted["id"], adopted["paused"]) == (made["id"], True)
    assert adopted["work_pool_name"] == POOL
    assert naming.warehouse_tag("prh-warehouse") in adopted["tags"]


# --- freshness (issue 27): the warehouse's automations and --status; windows of an hour,
# nothing fires here (tests/e2e/test_freshness.py shows the notifications) ---

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


@pytest.fixture(scope="module")
def watching(prefect_server: PrefectServer, repo: str, tmp_path_factory: pytest.TempPathFactory):
    """A warehouse of its own (its slug tags its automations) deployed with two watched
    sources, fp/a and fp/b. The tests below run in this order: the last one prunes b."""
    warehouse = bake_warehouse(
        tmp_path_factory.mktemp("watching"), warehouse_name="Fresh Plan", work_pool="fresh-plan"
    )
    flows = {"fp-a-ingest": watched(repo, "fp/a"), "fp-b-ingest": watched(repo, "fp/b")}
    first = prw_deploy(warehouse, prefect_server, flows)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "create    automation freshness-fp-a-ingest\n" in first.stdout
    assert "Created automation 'late-runs-fresh-plan'\n" in first.stdout
    return warehouse, flows


def test_plan_shows_a_freshness_automation_unchanged_until_its_freshness_changes(
    prefect_server: PrefectServer, repo: str, watching: tuple[Path, dict]
) -> None:
    warehouse, flows = watching
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


def test_status_exits_2_while_a_watched_source_never_loaded_and_0_when_all_are_fresh(
    prefect_server: PrefectServer, watching: tuple[Path, dict]
) -> None:
    warehouse, flows = watching
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
    # b without freshness: shown, not watched, and it does not fail the check.
    b_unwatched = {key: value for key, value in flows["fp-b-ingest"].items() if key != "freshness"}
    fresh_only = {"fp-a-ingest": flows["fp-a-ingest"], "fp-b-ingest": b_unwatched}
    shown = prw_deploy(warehouse, prefect_server, fresh_only, "--status")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert shown.stdout.splitlines()[2].split() == [
        "fp/b", "fp-b-ingest", "-", "-", "-", "not", "watched", "(no", "freshness)"
    ]


def test_prune_deletes_only_this_warehouses_own_automations(
    prefect_server: PrefectServer, watching: tuple[Path, dict]
) -> None:
    warehouse, flows = watching
    api = PrefectApi(prefect_server.api_url)
    # Another warehouse's automation and a hand-made one, copies of b's.
    (b,) = [a for a in api.post("/automations/filter", {}) if a["name"] == "freshness-fp-b-ingest"]
    body = {k: v for k, v in b.items() if k not in ("id", "created", "updated")}
    api.post("/automations/", {**body, "name": "freshness-other", "tags": ["warehouse:other"]})
    api.post("/automations/", {**body, "name": "hand-made-freshness", "tags": []})
    one = {"fp-a-ingest": flows["fp-a-ingest"]}
    pruned = prw_deploy(warehouse, prefect_server, one, "--prune")
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert "prune     automation freshness-fp-b-ingest\n" in pruned.stdout
    assert "Deleted automation 'freshness-fp-b-ingest'\n" in pruned.stdout
    names = automation_names(api)
    assert "freshness-fp-b-ingest" not in names
    assert {"freshness-fp-a-ingest", "late-runs-fresh-plan"} <= names
    assert {"freshness-other", "hand-made-freshness"} <= names
