"""Every scheduled ingest flow of the {{ cookiecutter.warehouse_name }}, as code.

The flows are in prefect/flows.json, written from the `flows` answer in .cruft.json:
change them with scripts/regenerate.py (see the README), not by hand, or the next
regeneration will conflict with your edit.

    python prefect/prw_deploy.py --dry-run       # describe flows.json; needs no server
    python prefect/prw_deploy.py --plan          # what a deploy would change (exit 2: changes)
    python prefect/prw_deploy.py                 # create or update what changed
    python prefect/prw_deploy.py --prune         # ...and delete this warehouse's unlisted ones
    python prefect/prw_deploy.py --resume NAME   # unpause (a deploy never does; --pause NAME)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import httpx
from cron_descriptor import get_description
from prefect import get_client
from prefect.automations import Automation
from prefect.blocks.notifications import (
    CustomWebhookNotificationBlock,
    MicrosoftTeamsWebhook,
    NotificationBlock,
    SlackWebhook,
)
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import (
    DeploymentScheduleCreate,
    DeploymentUpdate,
    WorkPoolCreate,
)
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterName,
    DeploymentFilterTags,
    FlowFilter,
    FlowFilterId,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.responses import DeploymentResponse
from prefect.client.schemas.schedules import CronSchedule as ClientCronSchedule
from prefect.context import SyncClientContext
from prefect.events.actions import ChangeFlowRunState, SendNotification
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.flows import load_flow_arguments_from_entrypoint
from prefect.runner.storage import GitRepository
from prefect.server.schemas.schedules import CronSchedule
from prefect.settings import get_current_settings
from prefect.utilities.callables import parameter_schema_from_entrypoint
from prefect.workers.process import ProcessWorker

WORK_POOL = {{ cookiecutter.work_pool | tojson }}
NEXT_RUNS = 3
# Every deployment this warehouse makes carries this tag: --prune deletes only deployments
# that have it, never one a person or another team made in the same pool.
MARKER_TAG = "warehouse:{{ cookiecutter.warehouse_slug }}"
IN_POOL = WorkPoolFilter(name=WorkPoolFilterName(any_=[WORK_POOL]))
WRITES_AT_ONCE = 8  # concurrent creates/updates through the one API client
CLONES_AT_ONCE = 8  # concurrent shallow clones of the flows' repositories
HEADS_AT_ONCE = 16  # concurrent `git ls-remote`s: each mostly waits on the git server
PAGE = 200  # the server's largest page of a read
# A SQLite database takes one writer at a time: the server answers 503 to a colliding write,
# and Prefect's client waits 2, 4, 8, 16, 32 s before its retries (the client waits what a
# 503's Retry-After asks instead). A lock clears in milliseconds: these are the Retry-After
# seconds of a request's 1st, 2nd, ... 503 that came without one, the later ones outlasting a
# server restart (39 s in all).
BUSY_RETRY_AFTER = (0.05, 0.25, 1.25, 6.25, 31.25)
GIT_CLONE_STEP = "prefect.deployments.steps.git_clone"
PLAN_ACTIONS = ("create", "update", "unchanged", "prune", "unlisted")
# A flow run whose heartbeats stop (its worker or machine died without a word) is marked
# Crashed after this long, which also frees its deployment's concurrency slot. The worker
# unit sends a heartbeat every 30 s (PREFECT_FLOWS_HEARTBEAT_FREQUENCY).
ZOMBIE_AUTOMATION = "crash-zombie-flow-runs"
NO_HEARTBEAT_FOR = timedelta(seconds=90)
# Every flow run of the work pool that ends Failed or Crashed is reported to the webhook in
# this deploy-environment variable. A webhook URL carries its token, so it never goes in this
# repository: prw_deploy.py saves it on the server as a block secret. Unset: the notification
# setup on the server stays as it is. A flow's retries pass through AwaitingRetry, not
# Failed: one message per run that finally failed.
NOTIFY_URL_SETTING = "PRH_NOTIFY_URL"
NOTIFY_URL = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/%@+=&?:,-]*)?")
NOTIFY_AUTOMATION = "notify-failed-flow-runs"
NOTIFY_BLOCK = f"{WORK_POOL}-failed-flow-runs"
{%- raw %}
NOTIFY_SUBJECT = "Prefect: {{ deployment.name }} {{ flow_run.state.name }}"
NOTIFY_BODY = """Deployment: {{ deployment.name }}
Flow run: {{ flow_run.name }}
State: {{ flow_run.state.name }}: {{ flow_run.state.message }}
{{ flow_run|ui_url }}"""
{%- endraw %}


@dataclass(frozen=True)
class FlowEntry:
    """One deployment: which flow to run (git repo, branch, entrypoint) and when."""

    deployment: str
    repo: str
    branch: str
    entrypoint: str
    cron: str
    timezone: str
    parameters: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    concurrency_limit: int = 1  # runs of one project share a venv: never overlap them


def load_flows(path: Path) -> list[FlowEntry]:
    """flows.json: each deployment's entry with every field filled in."""
    entries: dict[str, dict[str, Any]] = json.loads(path.read_text())
    return [FlowEntry(deployment=name, **entry) for name, entry in entries.items()]


FLOWS = load_flows(Path(__file__).with_name("flows.json"))


def next_runs(entry: FlowEntry, count: int = NEXT_RUNS) -> list[datetime]:
    """The next run times, computed the way the Prefect scheduler computes them."""
    if not entry.cron:
        return []
    schedule = CronSchedule(cron=entry.cron, timezone=entry.timezone)
    return list(asyncio.run(schedule.get_dates(count, start=datetime.now(timezone.utc))))


def schedule_in_words(entry: FlowEntry) -> str:
    if not entry.cron:
        return "none (cron is empty: runs only when started by hand or by an automation)"
    return f"{entry.cron} = {get_description(entry.cron)} ({entry.timezone})"


def describe(entry: FlowEntry) -> str:
    """A few lines a person can check before deploying."""
    runs = ", ".join(f"{run:%a %Y-%m-%d %H:%M %Z}" for run in next_runs(entry)) or "-"
    env = ", ".join(sorted(entry.env)) or "-"
    return "\n".join(
        [
            f"{entry.deployment}",
            f"  source:     {entry.repo} (branch {entry.branch})",
            f"  entrypoint: {entry.entrypoint}",
            f"  schedule:   {schedule_in_words(entry)}",
            f"  next runs:  {runs}",
            f"  limit:      {entry.concurrency_limit} concurrent run(s)",
            f"  parameters: {entry.parameters or '-'}",
            f"  env:        {env}",
        ]
    )


def ensure_work_pool() -> None:
    """Create the process work pool with Prefect's default job template if it is missing."""
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(WORK_POOL)
            return
        except ObjectNotFound:
            pass
        pool = WorkPoolCreate(
            name=WORK_POOL,
            type="process",
            base_job_template=ProcessWorker.get_default_base_job_template(),
        )
        try:
            client.create_work_pool(pool)
            print(f"Created work pool {WORK_POOL!r}")
        except ObjectAlreadyExists:
            pass


def ensure_zombie_automation() -> None:
    """Create or update the automation that crashes flow runs whose heartbeats stopped
    (Prefect's documented zombie-run detection for a self-hosted server)."""
    automation = Automation(
        name=ZOMBIE_AUTOMATION,
        description="Crash flow runs that stopped sending heartbeats",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=NO_HEARTBEAT_FOR,
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message="No heartbeat: the worker or its machine stopped during the run",
            )
        ],
    )
    save_automation(automation, read_automation(ZOMBIE_AUTOMATION), "")


def read_automation(name: str) -> Automation | None:
    try:
        return Automation.read(name=name)
    except ValueError:  # not there
        return None


def save_automation(automation: Automation, existing: Automation | None, created: str) -> None:
    """Create *automation*, or update *existing* to it; an unchanged one is not written (a
    routine deploy writes nothing that did not change)."""
    if existing is None:
        automation.create()
        print(f"Created automation {automation.name!r}{created}")
        return
    automation.id = existing.id
    if automation.model_dump(exclude={"id"}) != existing.model_dump(exclude={"id"}):
        automation.update()
        print(f"Updated automation {automation.name!r}")


{% raw -%}
def notification_block(url: str) -> NotificationBlock:
    """Slack and Teams (a Power Automate workflow URL: Microsoft retired the office.com
    webhooks) get their own block; any other URL gets a JSON POST of {"subject", "body"}.
    The URL is kept as a secret on the server."""
    host = urlsplit(url).hostname or ""
    if host == "hooks.slack.com":
        return SlackWebhook(url=url)
    if host.endswith((".logic.azure.com", ".powerplatform.com")):
        return MicrosoftTeamsWebhook(url=url)
    return CustomWebhookNotificationBlock(
        name=NOTIFY_BLOCK,
        url="{{url}}",
        method="POST",
        json_data={"subject": "{{subject}}", "body": "{{body}}"},
        secrets={"url": url},
    )
{%- endraw %}


class SettingError(ValueError):
    """A deploy-environment setting is unusable; the message says which and why."""


def require_api_url() -> None:
    """Without an API URL Prefect would start a throwaway server of its own and deploy there."""
    if not get_current_settings().api.url:
        raise SettingError("PREFECT_API_URL is not set: export it (see the README)")


def notify_url(environ: dict[str, str]) -> str | None:
    """The webhook from the deploy environment: None when unset, "" to stop notifying."""
    url = environ.get(NOTIFY_URL_SETTING)
    if url and not NOTIFY_URL.fullmatch(url):
        raise SettingError(
            f"{NOTIFY_URL_SETTING} is not an http(s) URL without credentials, quotes or spaces"
        )
    return url


def ensure_notify_automation(url: str | None) -> None:
    """Create or update the automation that reports failed and crashed flow runs of the work
    pool to *url*; delete it when *url* is empty; leave it as it is when None."""
    if url is None:
        print(f"Notifications unchanged ({NOTIFY_URL_SETTING} is not set)")
        return
    existing = read_automation(NOTIFY_AUTOMATION)
    if not url:
        if existing is not None:
            existing.delete()
            print(f"Deleted automation {NOTIFY_AUTOMATION!r} ({NOTIFY_URL_SETTING} is empty)")
        return
    block_id = notification_block(url).save(NOTIFY_BLOCK, overwrite=True)
    automation = Automation(
        name=NOTIFY_AUTOMATION,
        description=f"Report failed and crashed flow runs of work pool {WORK_POOL!r}",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
            match=ResourceSpecification({"prefect.resource.id": "prefect.flow-run.*"}),
            match_related=ResourceSpecification(
                {"prefect.resource.role": "work-pool", "prefect.resource.name": WORK_POOL}
            ),
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[
            SendNotification(block_document_id=block_id, subject=NOTIFY_SUBJECT, body=NOTIFY_BODY)
        ],
    )
    save_automation(automation, existing, ": failed runs are reported")


# --- deployments: read the flows from their repos, compare with the server, write changes ---


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


SHALLOW_CLONE = (
    *("clone", "--quiet", "--depth=1", "--single-branch", "--no-checkout", "--no-local"),
    "--template=",  # no sample hooks: half the files a clone writes and deletes
)


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


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], capture_output=True, text=True)


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
        current, source = found[0], server_fields(found[0])
        if (current.version, source["repo"], source["branch"], source["entrypoint"]) == (
            heads[entry.repo, entry.branch],
            entry.repo,
            entry.branch,
            entry.entrypoint,
        ):
            schema = current.parameter_openapi_schema
            targets.append(Target(entry, flow_names[current.flow_id], schema, current.version))
    return targets


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def cron_schedule(entry: FlowEntry) -> ClientCronSchedule:
    return ClientCronSchedule(cron=entry.cron, timezone=entry.timezone)


def pull_step(entry: FlowEntry) -> dict[str, Any]:
    """The step a worker runs before each flow run: clone the flow's repo."""
    return GitRepository(url=entry.repo, branch=entry.branch).to_pull_step()


def wanted_fields(target: Target) -> dict[str, Any]:
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
        "pool": WORK_POOL,
        "marker": MARKER_TAG,
    }


def server_fields(deployment: DeploymentResponse) -> dict[str, Any]:
    """The same fields as the server holds them."""
    schedules = [schedule.schedule for schedule in deployment.schedules]
    crons = [getattr(schedule, "cron", type(schedule).__name__) for schedule in schedules]
    zones = [getattr(schedule, "timezone", None) or "UTC" for schedule in schedules]
    steps = [step.get(GIT_CLONE_STEP, {}) for step in deployment.pull_steps or []]
    source = next((step for step in steps if step), {})
    limit = deployment.global_concurrency_limit
    return {
        "schedule": "; ".join(crons) or None,
        "timezone": "; ".join(zones) or None,
        "entrypoint": deployment.entrypoint,
        "repo": source.get("repository"),
        "branch": source.get("branch"),
        "commit": deployment.version,  # the commit it was last written from
        "parameters": deployment.parameters,
        "parameter schema": deployment.parameter_openapi_schema,
        "env": (deployment.job_variables or {}).get("env", {}),
        "limit": limit.limit if limit else None,
        "pool": deployment.work_pool_name,
        "marker": MARKER_TAG if MARKER_TAG in deployment.tags else None,
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


def step_for(target: Target, current: DeploymentResponse | None) -> Step:
    name = target.entry.deployment
    if current is None:
        return Step("create", name, target)
    old, new = server_fields(current), wanted_fields(target)
    changes = {key: (old[key], value) for key, value in new.items() if old[key] != value}
    return Step("update" if changes else "unchanged", name, target, current, changes)


def unlisted_steps(steps: list[Step], marked: list[DeploymentResponse], prune: bool) -> list[Step]:
    """The marked deployments of the pool that flows.json no longer names: pruned (with
    --prune) or kept. An entry that failed to load is still named: its deployment is never a
    prune candidate."""
    kept = {step.current.id for step in steps if step.current}
    named = {entry.deployment for entry in FLOWS}
    action = "prune" if prune else "unlisted"
    return [
        Step(action, deployment.name, current=deployment)
        for deployment in marked
        if deployment.id not in kept and deployment.name not in named
    ]


async def read_all(read: Callable[..., Awaitable[list[Any]]], **filters: Any) -> list[Any]:
    """Every page of one of the client's read_* calls."""
    found: list[Any] = []
    while page := await read(**filters, offset=len(found), limit=PAGE):
        found += page
    return found


async def read_marked(client: PrefectClient) -> tuple[list[DeploymentResponse], dict[UUID, str]]:
    """The deployments of the pool that carry this warehouse's marker, and their flows' names
    by flow id."""
    marked = await read_all(
        client.read_deployments,
        work_pool_filter=IN_POOL,
        deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=[MARKER_TAG])),
    )
    ids = FlowFilter(id=FlowFilterId(any_=sorted({d.flow_id for d in marked})))
    flows = await read_all(client.read_flows, flow_filter=ids) if marked else []
    return marked, {flow.id: flow.name for flow in flows}


async def read_named(client: PrefectClient) -> tuple[list[DeploymentResponse], dict[UUID, str]]:
    """The deployments that have a name flows.json lists, of any flow, in any pool (marked or
    not: another pool's, a hand-made one), and their flows' names by flow id."""
    names = DeploymentFilter(name=DeploymentFilterName(any_=[e.deployment for e in FLOWS]))
    named = await read_all(client.read_deployments, deployment_filter=names)
    ids = FlowFilter(id=FlowFilterId(any_=sorted({d.flow_id for d in named})))
    flows = await read_all(client.read_flows, flow_filter=ids) if named else []
    return named, {flow.id: flow.name for flow in flows}


async def load_plan(
    client: PrefectClient, prune: bool, flow_ids: FlowIds, start: Callable[[Step], None]
) -> tuple[list[Step], list[str]]:
    """The plan and one error line per entry that could not be read; each create and update
    is passed to *start* as soon as it is decided (a deploy writes it while other repos are
    still being cloned), and each flow's id found is added to *flow_ids*. A repo whose branch
    head is the commit its deployments were written from is not cloned (see
    recorded_targets); the others are cloned and their flows read."""
    sources = sorted({(entry.repo, entry.branch) for entry in FLOWS})
    heads, (marked, flow_names), (named, named_flows) = await asyncio.gather(
        asyncio.to_thread(branch_heads, sources), read_marked(client), read_named(client)
    )
    flow_names |= named_flows
    flow_ids.add(flow_names)
    server = {f"{flow_names[d.flow_id]}/{d.name}": d for d in [*named, *marked]}
    steps: list[Step] = []

    def decide(targets: list[Target]) -> None:
        for target in targets:
            steps.append(step := step_for(target, server.get(target.full_name)))
            if step.action in WRITES:
                start(step)

    recorded = recorded_targets(FLOWS, heads, marked, flow_names)
    decide(recorded)
    skipped = {target.entry.deployment for target in recorded}
    to_read = [entry for entry in FLOWS if entry.deployment not in skipped]
    errors: list[Failed] = []
    with tempfile.TemporaryDirectory(prefix="prw-deploy-") as workdir:
        async for cloned, failed in cloned_targets(to_read, Path(workdir)):
            errors += failed
            decide(cloned)
    order = {entry.deployment: n for n, entry in enumerate(FLOWS)}
    steps.sort(key=lambda step: order[step.name])
    errors.sort(key=lambda error: order[error[0]])
    return steps + unlisted_steps(steps, marked, prune), [f"{n}: {why}" for n, why in errors]


class FlowIds:
    """Each flow's id by name: those read from the server, the others created once per run
    (a deployment needs its flow's id; many deployments can share one flow)."""

    def __init__(self, client: PrefectClient) -> None:
        self.client = client
        self.known: dict[str, UUID] = {}
        self.creating: dict[str, asyncio.Lock] = {}

    def add(self, names: dict[UUID, str]) -> None:
        self.known |= {name: flow_id for flow_id, name in names.items()}

    async def of(self, name: str) -> UUID:
        async with self.creating.setdefault(name, asyncio.Lock()):
            if name not in self.known:
                self.known[name] = await self.client.create_flow_from_name(name)
        return self.known[name]


async def create(client: PrefectClient, step: Step, flow_ids: FlowIds) -> None:
    """A new deployment, unpaused, with its schedule active."""
    target = step.target
    entry = target.entry
    schedules = [DeploymentScheduleCreate(schedule=cron_schedule(entry))] if entry.cron else []
    await client.create_deployment(
        flow_id=await flow_ids.of(target.flow_name),
        name=entry.deployment,
        work_pool_name=WORK_POOL,
        schedules=schedules,
        paused=False,
        concurrency_limit=entry.concurrency_limit,
        parameters=entry.parameters,
        parameter_openapi_schema=target.parameter_schema,
        tags=[MARKER_TAG],
        version=target.commit,
        entrypoint=entry.entrypoint,
        pull_steps=[pull_step(entry)],
        job_variables={"env": entry.env} if entry.env else {},  # none: nothing to validate
    )


async def update(client: PrefectClient, step: Step, _: FlowIds) -> None:
    """Every field but `paused` and the schedules; then the schedule (see sync_schedule)."""
    target, current = step.target, step.current
    entry = target.entry
    changes = DeploymentUpdate(
        version=target.commit,
        entrypoint=entry.entrypoint,
        pull_steps=[pull_step(entry)],
        parameters=entry.parameters,
        parameter_openapi_schema=target.parameter_schema,
        job_variables={**(current.job_variables or {}), "env": entry.env},
        concurrency_limit=entry.concurrency_limit,
        work_pool_name=WORK_POOL,
        tags=sorted({*current.tags, MARKER_TAG}),
    )
    await client.update_deployment(current.id, changes)
    await sync_schedule(client, current, entry)


async def sync_schedule(client: PrefectClient, current: DeploymentResponse, entry: FlowEntry):
    """The entry's cron on the server, never touching a schedule's `active`: a changed cron
    keeps its schedule on or off as it was; a cron removed in flows.json deletes the
    schedule (an update with an empty list would keep it); the first schedule of a
    deployment that had none starts active."""
    existing = list(current.schedules)
    if entry.cron and not existing:
        await client.create_deployment_schedules(current.id, [(cron_schedule(entry), True)])
    elif entry.cron:
        first, *existing = existing
        wanted = cron_schedule(entry)
        if (getattr(first.schedule, "cron", None), first.schedule.timezone) != (
            wanted.cron,
            wanted.timezone,
        ):
            await client.update_deployment_schedule(current.id, first.id, schedule=wanted)
    for extra in existing:
        await client.delete_deployment_schedule(current.id, extra.id)


async def delete(client: PrefectClient, step: Step, _: FlowIds) -> None:
    await client.delete_deployment(step.current.id)
    print(f"Deleted deployment {step.name!r} (no longer in flows.json)")


WRITES: dict[str, Callable[[PrefectClient, Step, FlowIds], Awaitable[None]]] = {
    "create": create,
    "update": update,
    "prune": delete,
}


class Pace:
    """How many writes at once: one, then one more after each write the server answered, up to
    WRITES_AT_ONCE; one for the rest of the run once it answers 503 (busy: a SQLite database
    takes one writer at a time and refuses a colliding one). A 503 without a Retry-After gets
    one from BUSY_RETRY_AFTER, which Prefect's client waits before trying again."""

    def __init__(self) -> None:
        self.at_once, self.writing, self.busy = 1, 0, False
        self.turn = asyncio.Condition()
        self.refused: weakref.WeakKeyDictionary[httpx.Request, int] = weakref.WeakKeyDictionary()

    def client(self) -> PrefectClient:
        return get_client(httpx_settings={"event_hooks": {"response": [self.on_response]}})

    async def on_response(self, response: httpx.Response) -> None:
        if response.status_code == 503 and "Retry-After" not in response.headers:
            self.at_once, self.busy = 1, True
            times = self.refused[response.request] = self.refused.get(response.request, -1) + 1
            seconds = BUSY_RETRY_AFTER[min(times, len(BUSY_RETRY_AFTER) - 1)]
            response.headers["Retry-After"] = str(seconds)

    async def __aenter__(self) -> None:
        async with self.turn:
            await self.turn.wait_for(lambda: self.writing < self.at_once)
            self.writing += 1

    async def __aexit__(self, *_: object) -> None:
        async with self.turn:
            self.writing -= 1
            if not self.busy:
                self.at_once = min(self.at_once + 1, WRITES_AT_ONCE)
            self.turn.notify_all()


async def write(client: PrefectClient, step: Step, flow_ids: FlowIds, pace: Pace) -> str | None:
    """Apply one create, update or prune at the server's *pace*; None, or a line naming the
    failure (the other writes go on)."""
    async with pace:
        try:
            await WRITES[step.action](client, step, flow_ids)
        except Exception as exc:  # name it, keep going
            return f"{step.name}: {step.action} failed: {one_line(exc)}"
    return None


def print_plan(plan: list[Step]) -> None:
    for step in plan:
        print("\n".join(step.lines()))
    counts = {action: sum(s.action == action for s in plan) for action in PLAN_ACTIONS}
    print(", ".join(f"{count} {action}" for action, count in counts.items() if count) or "empty")


async def plan_and_apply(apply: bool, prune: bool) -> tuple[bool, list[str]]:
    """Print the plan; with *apply*, write it (each create and update from when it is decided,
    the prunes once the plan is whole). Returns (anything to change?, one line per entry that
    could not be read or written)."""
    pace = Pace()
    async with pace.client() as client:
        flow_ids = FlowIds(client)
        writes: list[asyncio.Task[str | None]] = []

        def start(step: Step) -> None:
            if apply:
                writes.append(asyncio.create_task(write(client, step, flow_ids, pace)))

        try:
            plan, errors = await load_plan(client, prune, flow_ids, start)
            print_plan(plan)
            for step in plan:
                if step.action == "prune":
                    start(step)
        finally:  # the writes already started finish, also when reading failed
            failures = await asyncio.gather(*writes)
        changes = any(step.action in WRITES for step in plan)
        return changes, errors + [failure for failure in failures if failure]


async def set_paused(names: list[str], paused: bool) -> list[str]:
    """Pause or resume deployments of the pool by name, with their schedules."""
    errors = []
    async with get_client() as client:
        named = DeploymentFilter(name=DeploymentFilterName(any_=names))
        found = await read_all(
            client.read_deployments, work_pool_filter=IN_POOL, deployment_filter=named
        )
        for name in names:
            matches = [deployment for deployment in found if deployment.name == name]
            if len(matches) != 1:
                errors.append(f"{name}: {len(matches)} deployments of that name in {WORK_POOL!r}")
                continue
            try:
                await set_one_paused(client, matches[0], paused)
            except Exception as exc:
                errors.append(f"{name}: {one_line(exc)}")
    return errors


async def set_one_paused(client: PrefectClient, deployment: DeploymentResponse, paused: bool):
    switch = client.pause_deployment if paused else client.resume_deployment
    await switch(deployment.id)
    for schedule in deployment.schedules:
        await client.update_deployment_schedule(deployment.id, schedule.id, active=not paused)
    print(f"{'Paused' if paused else 'Resumed'} deployment {deployment.name!r}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="describe flows.json; no server")
    mode.add_argument("--plan", action="store_true", help="show what a deploy would change")
    mode.add_argument("--resume", nargs="+", metavar="NAME", help="unpause these deployments")
    mode.add_argument("--pause", nargs="+", metavar="NAME", help="pause these deployments")
    parser.add_argument("--prune", action="store_true", help="delete unlisted deployments")
    return parser.parse_args(argv)


def report(errors: list[str]) -> None:
    for error in errors:
        print(f"error: {error}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.resume or args.pause:
        return switch(args.pause or args.resume, paused=bool(args.pause))
    if args.dry_run:
        return dry_run()
    if args.plan:
        return plan(args.prune)
    return deploy(args.prune)


def dry_run() -> int:
    try:
        notify_url(dict(os.environ))
    except SettingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(FLOWS)} deployment(s) for work pool {WORK_POOL!r}\n")
    for entry in FLOWS:
        print(describe(entry) + "\n")
    print("Dry run: nothing was deployed.")
    return 0


def switch(names: list[str], paused: bool) -> int:
    """--pause / --resume: exit 0, or 1 naming each deployment that failed."""
    try:
        require_api_url()
        errors = asyncio.run(set_paused(names, paused))
    except Exception as exc:  # the setting, or the server unreachable
        errors = [one_line(exc)]
    report(errors)
    return 1 if errors else 0


def plan(prune: bool) -> int:
    """Exit 0: the server matches flows.json; 2: a deploy would change it; 1: an error."""
    try:
        require_api_url()
    except SettingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        changes, errors = asyncio.run(plan_and_apply(apply=False, prune=prune))
    except Exception as exc:
        errors = [f"cannot read the server {get_current_settings().api.url}: {one_line(exc)}"]
        changes = False
    report(errors)
    return 1 if errors else 2 if changes else 0


def deploy(prune: bool) -> int:
    try:
        require_api_url()
        url = notify_url(dict(os.environ))
    except SettingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        # One API client for the set-up: otherwise Prefect builds a new one (and its TLS
        # context) for every call, about 30 ms each.
        with SyncClientContext.get_or_create():
            ensure_work_pool()
            ensure_zombie_automation()
            ensure_notify_automation(url)
        _, errors = asyncio.run(plan_and_apply(apply=True, prune=prune))
    except Exception as exc:  # the server unreachable or refusing: one line, not a traceback
        report([f"cannot deploy to {get_current_settings().api.url}: {one_line(exc)}"])
        return 1
    report(errors)
    if errors:
        return 1
    print(f"Work pool {WORK_POOL!r} matches flows.json ({len(FLOWS)} deployment(s)).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
