"""The plan: each entry of flows.json read from its repo (or from the deployment, when its
branch has not moved), compared with the server, as create, update, unchanged, prune or
unlisted, with the fields that changed."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterName,
    DeploymentFilterTags,
    FlowFilter,
    FlowFilterId,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.client.schemas.responses import DeploymentResponse
from prefect.flows import load_flow_arguments_from_entrypoint
from prefect.utilities.callables import parameter_schema_from_entrypoint

from prh_ingest.deploy.flows_file import FlowEntry

CLONES_AT_ONCE = 8  # concurrent shallow clones of the flows' repositories
HEADS_AT_ONCE = 16  # concurrent `git ls-remote`s: each mostly waits on the git server
PAGE = 200  # the server's largest page of a read
GIT_CLONE_STEP = "prefect.deployments.steps.git_clone"
PLAN_ACTIONS = ("create", "update", "unchanged", "prune", "unlisted")
WRITE_ACTIONS = ("create", "update", "prune")


@dataclass(frozen=True)
class Wanted:
    """What flows.json asks of the server: its entries, in the warehouse's work pool, each
    deployment carrying the warehouse's marker tag."""

    pool: str
    marker: str
    flows: list[FlowEntry]

    def in_pool(self) -> WorkPoolFilter:
        return WorkPoolFilter(name=WorkPoolFilterName(any_=[self.pool]))


class EntryError(Exception):
    """One entry cannot be deployed; the message is one line saying why."""


@dataclass(frozen=True)
class Target:
    """One entry as the server should hold it. The flow's name and parameter schema are read
    from the entrypoint's source at *commit*, the head of the entry's branch (or taken from
    the deployment when that is the commit it was last written from)."""

    entry: FlowEntry
    flow_name: str
    parameter_schema: dict[str, Any]
    commit: str

    @property
    def full_name(self) -> str:
        return f"{self.flow_name}/{self.entry.deployment}"


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# --- reading the flows from their repositories -------------------------------------------------

SHALLOW_CLONE = (
    *("clone", "--quiet", "--depth=1", "--single-branch", "--no-checkout", "--no-local"),
    "--template=",  # no sample hooks: half the files a clone writes and deletes
)


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], capture_output=True, text=True)


def clone(repo: str, branch: str, paths: list[str], into: Path) -> str:
    """A shallow clone of one branch with only the flow files checked out: reading a flow
    needs its file, and a full checkout of many repos is slow to write and to delete.
    (--no-local: a repository on a local path is cloned shallow too, not hard-linked.)
    Returns the commit checked out."""
    cloned = git(*SHALLOW_CLONE, f"--branch={branch}", "--", repo, str(into))
    if cloned.returncode == 0:  # a path the branch lacks is the entry's error, not the repo's
        cloned = git("-C", str(into), "ls-tree", "-r", "--name-only", "HEAD", "--", *paths)
    if cloned.returncode == 0 and cloned.stdout.split():
        cloned = git("-C", str(into), "checkout", "HEAD", "--", *cloned.stdout.split())
    if cloned.returncode == 0:
        cloned = git("-C", str(into), "rev-parse", "HEAD")
    if cloned.returncode != 0:
        reason = (cloned.stderr.strip().splitlines() or ["git failed"])[-1]
        raise EntryError(f"cannot clone {repo} (branch {branch}): {reason}")
    return cloned.stdout.strip()


def branch_heads(sources: list[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
    """The commit at the head of each (repo, branch), asked of the git server without
    cloning, HEADS_AT_ONCE at a time; None where it cannot be read (the clone that follows
    names the reason)."""

    def head(source: tuple[str, str]) -> str | None:
        listed = git("ls-remote", "--", source[0], f"refs/heads/{source[1]}")
        return (listed.stdout.split() or [None])[0] if listed.returncode == 0 else None

    with ThreadPoolExecutor(HEADS_AT_ONCE) as pool:
        return dict(zip(sources, pool.map(head, sources), strict=True))


# Prefect reads a flow's source with sys.path changed for the while and set back after
# (prefect.utilities.importtools.safe_load_namespace, "not thread safe"): the clones run in
# threads, but one flow is read at a time, or one repo's folder could stay on sys.path for
# another's imports.
READING_ONE_FLOW = threading.Lock()


def read_flow(checkout: Path, commit: str, entry: FlowEntry) -> Target:
    """The flow's name and parameter schema from its source file: Prefect reads the
    decorator and the signature without importing the flow's own dependencies."""
    path, function = entry.entrypoint.rsplit(":", 1)
    if not (checkout / path).is_file():
        raise EntryError(f"{path} is not in {entry.repo} (branch {entry.branch})")
    located = f"{checkout / path}:{function}"
    try:
        with READING_ONE_FLOW:
            decorator = load_flow_arguments_from_entrypoint(located, arguments={"name"})
            schema = parameter_schema_from_entrypoint(located)
    except Exception as exc:  # a missing function, a syntax error: name the entry
        reason = one_line(exc).replace(f"{checkout}/", "")
        raise EntryError(f"cannot read {entry.entrypoint}: {reason}") from None
    flow_name = decorator.get("name") or function.replace("_", "-")
    return Target(entry, flow_name, schema.model_dump(exclude_unset=True), commit)


Failed = tuple[str, str]  # an entry that could not be read: its deployment's name, and why


async def cloned_targets(
    flows: list[FlowEntry], workdir: Path
) -> AsyncIterator[tuple[list[Target], list[Failed]]]:
    """Each repository (and branch) cloned once, CLONES_AT_ONCE at a time (a clone mostly
    waits on the git server), its flows read and the clone deleted. Yields, as clones finish,
    the targets read and one error line per entry that failed: a deploy writes those while
    the others still clone."""
    by_source: dict[tuple[str, str], list[FlowEntry]] = {}
    for entry in flows:
        by_source.setdefault((entry.repo, entry.branch), []).append(entry)

    def clone_and_read(n: int, entries: list[FlowEntry]) -> tuple[list[Target], list[Failed]]:
        into = workdir / str(n)
        paths = sorted({entry.entrypoint.split(":")[0] for entry in entries})
        targets, errors = [], []
        try:
            commit = clone(entries[0].repo, entries[0].branch, paths, into)
            for entry in entries:
                try:
                    targets.append(read_flow(into, commit, entry))
                except EntryError as exc:
                    errors.append((entry.deployment, str(exc)))
        except EntryError as exc:
            errors += [(entry.deployment, str(exc)) for entry in entries]
        shutil.rmtree(into, ignore_errors=True)
        return targets, errors

    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(CLONES_AT_ONCE) as pool:
        cloning = [
            loop.run_in_executor(pool, clone_and_read, n, by_source[source])
            for n, source in enumerate(sorted(by_source))
        ]
        while cloning:
            done, pending = await asyncio.wait(cloning, return_when=asyncio.FIRST_COMPLETED)
            cloning = list(pending)
            read = [future.result() for future in done]
            yield [t for found, _ in read for t in found], [f for _, fails in read for f in fails]


def recorded_targets(
    flows: list[FlowEntry],
    heads: dict[tuple[str, str], str | None],
    marked: list[DeploymentResponse],
    flow_names: dict[UUID, str],
) -> list[Target]:
    """The entries whose deployment was last written from the commit that is still the head
    of their branch (the deployment's version records it), from the same repo, branch and
    entrypoint: their flow name and parameter schema are the deployment's, no clone needed.
    A pushed commit or a changed entrypoint is cloned and read again."""
    named: dict[str, list[DeploymentResponse]] = {}
    for deployment in marked:
        named.setdefault(deployment.name, []).append(deployment)
    targets = []
    for entry in flows:
        found = named.get(entry.deployment, [])
        if len(found) != 1 or not found[0].version:
            continue
        current, source = found[0], git_source(found[0])
        if (current.version, source["repo"], source["branch"], source["entrypoint"]) == (
            heads[entry.repo, entry.branch],
            entry.repo,
            entry.branch,
            entry.entrypoint,
        ):
            schema = current.parameter_openapi_schema
            targets.append(Target(entry, flow_names[current.flow_id], schema, current.version))
    return targets


# --- comparing ----------------------------------------------------------------------------------


def wanted_fields(target: Target, wanted: Wanted) -> dict[str, Any]:
    """The fields the plan compares, as flows.json wants them."""
    entry = target.entry
    return {
        "schedule": entry.cron or None,
        "timezone": entry.timezone if entry.cron else None,
        "entrypoint": entry.entrypoint,
        "repo": entry.repo,
        "branch": entry.branch,
        "commit": target.commit,
        "parameters": entry.parameters,
        "parameter schema": target.parameter_schema,
        "env": entry.env,
        "limit": entry.concurrency_limit,
        "pool": wanted.pool,
        "marker": wanted.marker,
    }


def git_source(deployment: DeploymentResponse) -> dict[str, Any]:
    """Where the deployment's pull step clones its flow from, and its entrypoint."""
    steps = [step.get(GIT_CLONE_STEP, {}) for step in deployment.pull_steps or []]
    source = next((step for step in steps if step), {})
    return {
        "entrypoint": deployment.entrypoint,
        "repo": source.get("repository"),
        "branch": source.get("branch"),
    }


def server_fields(deployment: DeploymentResponse, marker: str) -> dict[str, Any]:
    """The same fields as the server holds them."""
    schedules = [schedule.schedule for schedule in deployment.schedules]
    crons = [getattr(schedule, "cron", type(schedule).__name__) for schedule in schedules]
    zones = [getattr(schedule, "timezone", None) or "UTC" for schedule in schedules]
    limit = deployment.global_concurrency_limit
    return {
        "schedule": "; ".join(crons) or None,
        "timezone": "; ".join(zones) or None,
        **git_source(deployment),
        "commit": deployment.version,  # the commit it was last written from
        "parameters": deployment.parameters,
        "parameter schema": deployment.parameter_openapi_schema,
        "env": (deployment.job_variables or {}).get("env", {}),
        "limit": limit.limit if limit else None,
        "pool": deployment.work_pool_name,
        "marker": marker if marker in deployment.tags else None,
    }


def shown_change(name: str, old: Any, new: Any) -> str:
    """One changed field, old -> new. Env values can be paths or hosts: keys only."""
    if name == "env":
        if sorted(old) == sorted(new):
            return f"env: value of {', '.join(k for k in new if old[k] != new[k])} changed"
        return f"env keys: {sorted(old)} -> {sorted(new)}"
    if name == "parameter schema":
        return f"parameter schema: {params_of(old)} -> {params_of(new)}"
    if name == "commit":  # 12 hex digits name a commit well enough to read
        return f"commit: {old and old[:12]!r} -> {new[:12]!r}"
    return f"{name}: {old!r} -> {new!r}"


def params_of(schema: dict[str, Any] | None) -> list[str]:
    return sorted((schema or {}).get("properties", {}))


@dataclass
class Step:
    """What the plan does with one deployment."""

    action: str  # create, update, unchanged, prune or unlisted (kept)
    name: str
    target: Target | None = None
    current: DeploymentResponse | None = None
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        paused = ", paused (kept)" if self.current and self.current.paused else ""
        head = f"{self.action:<10}{self.name}{paused}"
        return [head] + [f"    {shown_change(k, *change)}" for k, change in self.changes.items()]


def step_for(target: Target, current: DeploymentResponse | None, wanted: Wanted) -> Step:
    name = target.entry.deployment
    if current is None:
        return Step("create", name, target)
    old, new = server_fields(current, wanted.marker), wanted_fields(target, wanted)
    changes = {key: (old[key], value) for key, value in new.items() if old[key] != value}
    return Step("update" if changes else "unchanged", name, target, current, changes)


def unlisted_steps(
    steps: list[Step], marked: list[DeploymentResponse], wanted: Wanted, prune: bool
) -> list[Step]:
    """The marked deployments of the pool that flows.json no longer names: pruned (with
    --prune) or kept. An entry that failed to load is still named: its deployment is never a
    prune candidate."""
    kept = {step.current.id for step in steps if step.current}
    named = {entry.deployment for entry in wanted.flows}
    action = "prune" if prune else "unlisted"
    return [
        Step(action, deployment.name, current=deployment)
        for deployment in marked
        if deployment.id not in kept and deployment.name not in named
    ]


def plan_lines(plan: list[Step]) -> list[str]:
    """The plan as printed: each step's lines, then the count of each action."""
    return [line for step in plan for line in step.lines()] + [summary(plan) or "empty"]


def summary(steps: list[Any]) -> str:
    """How many steps of each action: `1 update, 2 unchanged`."""
    counts = {action: sum(s.action == action for s in steps) for action in PLAN_ACTIONS}
    return ", ".join(f"{count} {action}" for action, count in counts.items() if count)


# --- reading the server -------------------------------------------------------------------------


async def read_all(read: Callable[..., Awaitable[list[Any]]], **filters: Any) -> list[Any]:
    """Every page of one of the client's read_* calls."""
    found: list[Any] = []
    while page := await read(**filters, offset=len(found), limit=PAGE):
        found += page
    return found


async def read_marked(
    client: PrefectClient, wanted: Wanted
) -> tuple[list[DeploymentResponse], dict[UUID, str]]:
    """The deployments of the pool that carry this warehouse's marker, and their flows' names
    by flow id."""
    marked = await read_all(
        client.read_deployments,
        work_pool_filter=wanted.in_pool(),
        deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=[wanted.marker])),
    )
    ids = FlowFilter(id=FlowFilterId(any_=sorted({d.flow_id for d in marked})))
    flows = await read_all(client.read_flows, flow_filter=ids) if marked else []
    return marked, {flow.id: flow.name for flow in flows}


async def read_named(
    client: PrefectClient, wanted: Wanted
) -> tuple[list[DeploymentResponse], dict[UUID, str]]:
    """The deployments that have a name flows.json lists, of any flow, in any pool (marked or
    not: another pool's, a hand-made one), and their flows' names by flow id."""
    names = DeploymentFilter(name=DeploymentFilterName(any_=[e.deployment for e in wanted.flows]))
    named = await read_all(client.read_deployments, deployment_filter=names)
    ids = FlowFilter(id=FlowFilterId(any_=sorted({d.flow_id for d in named})))
    flows = await read_all(client.read_flows, flow_filter=ids) if named else []
    return named, {flow.id: flow.name for flow in flows}


async def load_plan(
    client: PrefectClient,
    wanted: Wanted,
    prune: bool,
    found_flows: Callable[[dict[UUID, str]], None],
    start: Callable[[Step], None],
) -> tuple[list[Step], list[str]]:
    """The plan and one error line per entry that could not be read; each create and update
    is passed to *start* as soon as it is decided (a deploy writes it while other repos are
    still being cloned), and the flows found on the server to *found_flows*. A repo whose
    branch head is the commit its deployments were written from is not cloned (see
    recorded_targets); the others are cloned and their flows read."""
    flows = wanted.flows
    sources = sorted({(entry.repo, entry.branch) for entry in flows})
    heads, (marked, flow_names), (named, named_flows) = await asyncio.gather(
        asyncio.to_thread(branch_heads, sources),
        read_marked(client, wanted),
        read_named(client, wanted),
    )
    flow_names |= named_flows
    found_flows(flow_names)
    server = {f"{flow_names[d.flow_id]}/{d.name}": d for d in [*named, *marked]}
    steps: list[Step] = []

    def decide(targets: list[Target]) -> None:
        for target in targets:
            steps.append(step := step_for(target, server.get(target.full_name), wanted))
            if step.action in WRITE_ACTIONS:
                start(step)

    recorded = recorded_targets(flows, heads, marked, flow_names)
    decide(recorded)
    skipped = {target.entry.deployment for target in recorded}
    to_read = [entry for entry in flows if entry.deployment not in skipped]
    errors: list[Failed] = []
    with tempfile.TemporaryDirectory(prefix="prw-deploy-") as workdir:
        async for cloned, failed in cloned_targets(to_read, Path(workdir)):
            errors += failed
            decide(cloned)
    order = {entry.deployment: n for n, entry in enumerate(flows)}
    steps.sort(key=lambda step: order[step.name])
    errors.sort(key=lambda error: order[error[0]])
    unlisted = unlisted_steps(steps, marked, wanted, prune)
    return steps + unlisted, [f"{n}: {why}" for n, why in errors]
