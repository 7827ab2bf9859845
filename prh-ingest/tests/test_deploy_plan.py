"""The plan, in-process: what each entry of flows.json becomes against what the server holds
(create, update with the fields that changed, unchanged, prune or unlisted), and the whole plan
read through a stand-in client from a real git repository. The same plan against a live
server: tests/test_warehouse_deploy.py."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from deploy_entries import ENTRY
from prefect.client.schemas.objects import DeploymentSchedule
from prefect.client.schemas.responses import DeploymentResponse
from prefect.client.schemas.schedules import CronSchedule
from prh_ingest.deploy import plan
from prh_ingest.deploy.flows_file import FlowEntry, completed
from prh_ingest.deploy.plan import (
    GIT_CLONE_STEP,
    Target,
    Wanted,
    load_plan,
    plan_lines,
    step_for,
    unlisted_steps,
)

MARKER = "warehouse:prh-warehouse"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
SCHEMA = {"type": "object", "properties": {"who": {"type": "string"}}}
FLOW = """from prefect import flow


@flow(name="hello-ingest")
def hello_ingest(who: str = "world") -> str:
    return who
"""


def entry(name: str = "hello-ingest", **changes: Any) -> FlowEntry:
    fields = completed({name: {**ENTRY, **changes}}, "UTC")[name]
    return FlowEntry(deployment=name, **fields)


def wanted(*entries: FlowEntry) -> Wanted:
    return Wanted("ingest", MARKER, list(entries))


def deployed(target: Target, **changes: Any) -> DeploymentResponse:
    """The deployment a deploy of *target* writes, with *changes*."""
    e = target.entry
    now = datetime.now(UTC)
    fields: dict[str, Any] = {
        "id": uuid.uuid4(),
        "name": e.deployment,
        "flow_id": uuid.uuid5(uuid.NAMESPACE_DNS, target.flow_name),
        "version": target.commit,
        "entrypoint": e.entrypoint,
        "pull_steps": [{GIT_CLONE_STEP: {"repository": e.repo, "branch": e.branch}}],
        "schedules": [
            DeploymentSchedule(
                id=uuid.uuid4(),
                schedule=CronSchedule(cron=e.cron, timezone=e.timezone),
                active=True,
            )
        ],
        "tags": [MARKER],
        "work_pool_name": "ingest",
        "parameters": e.parameters,
        "parameter_openapi_schema": target.parameter_schema,
        "job_variables": {"env": e.env},
        "paused": False,
        "global_concurrency_limit": {
            "id": uuid.uuid4(),
            "name": f"deployment:{e.deployment}",
            "limit": e.concurrency_limit,
            "active": True,
            "active_slots": 0,
            "slot_decay_per_second": 0,
            "created": now,
            "updated": now,
        },
    }
    return DeploymentResponse(**(fields | changes))


def test_a_new_entry_is_created_and_a_deployed_one_unchanged() -> None:
    target = Target(entry(), "hello-ingest", SCHEMA, COMMIT)
    assert step_for(target, None, wanted(target.entry)).action == "create"
    same = step_for(target, deployed(target), wanted(target.entry))
    assert (same.action, same.changes, same.lines()) == (
        "unchanged",
        {},
        ["unchanged hello-ingest"],
    )


def test_an_update_names_each_changed_field_and_keeps_a_pause() -> None:
    before = Target(entry(env={"MODE": "a", "KEPT": "x"}), "hello-ingest", SCHEMA, COMMIT)
    current = deployed(before, paused=True)
    after = Target(
        entry(cron="30 7 * * *", env={"MODE": "b", "KEPT": "x"}, concurrency_limit=2),
        "hello-ingest",
        {"type": "object", "properties": {"who": {}, "greeting": {}}},
        "f" * 40,
    )
    step = step_for(after, current, wanted(after.entry))
    assert step.lines() == [
        "update    hello-ingest, paused (kept)",
        "    schedule: '0 6 * * *' -> '30 7 * * *'",
        f"    commit: {COMMIT[:12]!r} -> {'f' * 12!r}",
        "    parameter schema: ['who'] -> ['greeting', 'who']",
        "    env: value of MODE changed",  # values can be paths or hosts: never shown
        "    limit: 1 -> 2",
    ]


def test_an_unmarked_deployment_of_another_pool_is_updated_in_place() -> None:
    target = Target(entry(), "hello-ingest", SCHEMA, COMMIT)
    step = step_for(target, deployed(target, tags=[], work_pool_name="elsewhere"), wanted())
    assert step.changes == {"pool": ("elsewhere", "ingest"), "marker": (None, MARKER)}


def test_a_cron_emptied_removes_the_schedule() -> None:
    target = Target(entry(), "hello-ingest", SCHEMA, COMMIT)
    unscheduled = Target(entry(cron=""), "hello-ingest", SCHEMA, COMMIT)
    step = step_for(unscheduled, deployed(target), wanted())
    assert step.lines()[1:] == ["    schedule: '0 6 * * *' -> None", "    timezone: 'UTC' -> None"]


@pytest.mark.parametrize(("prune", "action"), [(False, "unlisted"), (True, "prune")])
def test_only_marked_deployments_no_entry_names_are_pruned(prune: bool, action: str) -> None:
    listed = Target(entry("kept-ingest"), "hello-ingest", SCHEMA, COMMIT)
    failed = Target(entry("failed-ingest"), "hello-ingest", SCHEMA, COMMIT)  # could not be read
    retired = Target(entry("retired-ingest"), "hello-ingest", SCHEMA, COMMIT)
    marked = [deployed(t) for t in (listed, failed, retired)]
    steps = [step_for(listed, marked[0], wanted())]
    unlisted = unlisted_steps(steps, marked, wanted(listed.entry, failed.entry), prune)
    assert [(s.action, s.name) for s in unlisted] == [(action, "retired-ingest")]
    assert plan_lines(steps + unlisted)[-1] == f"1 unchanged, 1 {action}"


# --- the whole plan, through a stand-in client -------------------------------------------------


class Server:
    """What load_plan reads of a Prefect client: deployments by pool and tag or by name."""

    def __init__(self, deployments: list[DeploymentResponse], flows: dict[uuid.UUID, str]):
        self.deployments, self.flows = deployments, flows

    async def read_deployments(self, work_pool_filter=None, deployment_filter=None, **page):
        found = self.deployments
        if work_pool_filter is not None:
            found = [d for d in found if d.work_pool_name in work_pool_filter.name.any_]
        if deployment_filter.tags is not None:
            found = [d for d in found if set(deployment_filter.tags.all_) <= set(d.tags)]
        if deployment_filter.name is not None:
            found = [d for d in found if d.name in deployment_filter.name.any_]
        return found[page["offset"] : page["offset"] + page["limit"]]

    async def read_flows(self, flow_filter, **page):
        found = [
            type("Flow", (), {"id": i, "name": self.flows[i]})()
            for i in flow_filter.id.any_
            if i in self.flows
        ]
        return found[page["offset"] : page["offset"] + page["limit"]]


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A bare repository holding one flow, as a pushed ingest project would; and its head."""
    root = tmp_path_factory.mktemp("repo")
    (root / "work/prefect").mkdir(parents=True)
    (root / "work/prefect/hello.py").write_text(FLOW)
    git("init", "-q", "-b", "main", cwd=root / "work")
    git("add", "-A", cwd=root / "work")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "flow", cwd=root / "work")
    git("clone", "-q", "--bare", "work", "hello.git", cwd=root)
    return str(root / "hello.git"), git("rev-parse", "HEAD", cwd=root / "work")


def plan_of(server: Server, flows: list[FlowEntry], prune: bool = False):
    started: list[str] = []

    async def planned():
        return await load_plan(
            server, wanted(*flows), prune, lambda _: None, lambda s: started.append(s.name)
        )

    steps, errors = asyncio.run(planned())
    return steps, errors, started


def test_the_plan_reads_each_flow_from_its_repo_and_names_what_cannot_be_read(
    repo: tuple[str, str],
) -> None:
    url, head = repo
    hello = entry(repo=url, entrypoint="prefect/hello.py:hello_ingest")
    flows = [
        hello,
        entry("gone-ingest", repo=url, entrypoint="prefect/hello.py:gone"),
        entry("missing-ingest", repo=url, entrypoint="prefect/nope.py:hello_ingest"),
        entry("nowhere-ingest", repo="/nonexistent/x.git", entrypoint="prefect/x.py:x"),
    ]
    steps, errors, started = plan_of(Server([], {}), flows)
    assert [(s.action, s.name) for s in steps] == [("create", "hello-ingest")]
    assert (steps[0].target.flow_name, steps[0].target.commit) == ("hello-ingest", head)
    assert sorted(steps[0].target.parameter_schema["properties"]) == ["who"]
    assert started == ["hello-ingest"]  # written while the plan is still being read
    assert errors == [
        "gone-ingest: cannot read prefect/hello.py:gone: "
        "Could not find object 'gone' in 'prefect/hello.py'",
        f"missing-ingest: prefect/nope.py is not in {url} (branch main)",
        "nowhere-ingest: cannot clone /nonexistent/x.git (branch main): "
        "fatal: repository '/nonexistent/x.git' does not exist",
    ]


def test_a_branch_that_did_not_move_is_planned_from_the_deployment(
    repo: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deployment's version is the branch head: nothing is cloned, and the retired
    deployment is pruned."""
    url, head = repo

    def no_clone(*_: object) -> str:
        raise AssertionError("cloned a repository whose branch did not move")

    monkeypatch.setattr(plan, "clone", no_clone)
    hello = entry(repo=url, entrypoint="prefect/hello.py:hello_ingest")
    target = Target(hello, "hello-ingest", SCHEMA, head)
    retired = deployed(Target(entry("retired-ingest"), "hello-ingest", SCHEMA, COMMIT))
    current = deployed(target)
    server = Server([current, retired], {current.flow_id: "hello-ingest"})
    steps, errors, started = plan_of(server, [hello], prune=True)
    assert errors == []
    assert [(s.action, s.name) for s in steps] == [
        ("unchanged", "hello-ingest"),
        ("prune", "retired-ingest"),
    ]
    assert started == []  # prunes start once the plan is whole (apply.plan_and_apply)
