"""Writing the plan: creates and updates as soon as they are decided, prunes once the plan is
whole, at a pace the server keeps up with; and the operator's pause and resume. A deploy never
changes whether a deployment or its schedule is paused."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import httpx
from prefect import get_client
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import DeploymentScheduleCreate, DeploymentUpdate
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
from prefect.client.schemas.responses import DeploymentResponse
from prefect.client.schemas.schedules import CronSchedule
from prefect.runner.storage import GitRepository

from prh_ingest.deploy.flows_file import FlowEntry
from prh_ingest.deploy.plan import (
    WRITE_ACTIONS,
    Step,
    Wanted,
    load_plan,
    one_line,
    plan_lines,
    read_all,
)

WRITES_AT_ONCE = 8  # concurrent creates/updates through the one API client
# A SQLite database takes one writer at a time: the server answers 503 to a colliding write,
# and Prefect's client waits 2, 4, 8, 16, 32 s before its retries (the client waits what a
# 503's Retry-After asks instead). A lock clears in milliseconds: these are the Retry-After
# seconds of a request's 1st, 2nd, ... 503 that came without one, the later ones outlasting a
# server restart (39 s in all).
BUSY_RETRY_AFTER = (0.05, 0.25, 1.25, 6.25, 31.25)


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


def cron_schedule(entry: FlowEntry) -> CronSchedule:
    return CronSchedule(cron=entry.cron, timezone=entry.timezone)


def pull_step(entry: FlowEntry) -> dict[str, Any]:
    """The step a worker runs before each flow run: clone the flow's repo."""
    return GitRepository(url=entry.repo, branch=entry.branch).to_pull_step()


async def create(client: PrefectClient, step: Step, flow_ids: FlowIds, wanted: Wanted) -> None:
    """A new deployment, unpaused, with its schedule active."""
    target = step.target
    entry = target.entry
    schedules = [DeploymentScheduleCreate(schedule=cron_schedule(entry))] if entry.cron else []
    await client.create_deployment(
        flow_id=await flow_ids.of(target.flow_name),
        name=entry.deployment,
        work_pool_name=wanted.pool,
        schedules=schedules,
        paused=False,
        concurrency_limit=entry.concurrency_limit,
        parameters=entry.parameters,
        parameter_openapi_schema=target.parameter_schema,
        tags=[wanted.marker],
        version=target.commit,
        entrypoint=entry.entrypoint,
        pull_steps=[pull_step(entry)],
        job_variables={"env": entry.env} if entry.env else {},  # none: nothing to validate
    )


async def update(client: PrefectClient, step: Step, _: FlowIds, wanted: Wanted) -> None:
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
        work_pool_name=wanted.pool,
        tags=sorted({*current.tags, wanted.marker}),
    )
    await client.update_deployment(current.id, changes)
    await sync_schedule(client, current, entry)


async def sync_schedule(
    client: PrefectClient, current: DeploymentResponse, entry: FlowEntry
) -> None:
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


async def delete(client: PrefectClient, step: Step, _: FlowIds, __: Wanted) -> None:
    await client.delete_deployment(step.current.id)
    print(f"Deleted deployment {step.name!r} (no longer in flows.json)")


WRITES: dict[str, Callable[[PrefectClient, Step, FlowIds, Wanted], Awaitable[None]]] = {
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


async def write(
    client: PrefectClient, step: Step, flow_ids: FlowIds, wanted: Wanted, pace: Pace
) -> str | None:
    """Apply one create, update or prune at the server's *pace*; None, or a line naming the
    failure (the other writes go on)."""
    async with pace:
        try:
            await WRITES[step.action](client, step, flow_ids, wanted)
        except Exception as exc:  # name it, keep going
            return f"{step.name}: {step.action} failed: {one_line(exc)}"
    return None


async def plan_and_apply(wanted: Wanted, apply: bool, prune: bool) -> tuple[bool, list[str]]:
    """Print the plan; with *apply*, write it (each create and update from when it is decided,
    the prunes once the plan is whole). Returns (anything to change?, one line per entry that
    could not be read or written)."""
    pace = Pace()
    async with pace.client() as client:
        flow_ids = FlowIds(client)
        writes: list[asyncio.Task[str | None]] = []

        def start(step: Step) -> None:
            if apply:
                writes.append(asyncio.create_task(write(client, step, flow_ids, wanted, pace)))

        try:
            plan, errors = await load_plan(client, wanted, prune, flow_ids.add, start)
            print("\n".join(plan_lines(plan)))
            for step in plan:
                if step.action == "prune":
                    start(step)
        finally:  # the writes already started finish, also when reading failed
            failures = await asyncio.gather(*writes)
        changes = any(step.action in WRITE_ACTIONS for step in plan)
        return changes, errors + [failure for failure in failures if failure]


async def set_paused(wanted: Wanted, names: list[str], paused: bool) -> list[str]:
    """Pause or resume deployments of the pool by name, with their schedules."""
    errors = []
    async with get_client() as client:
        named = DeploymentFilter(name=DeploymentFilterName(any_=names))
        found = await read_all(
            client.read_deployments, work_pool_filter=wanted.in_pool(), deployment_filter=named
        )
        for name in names:
            matches = [deployment for deployment in found if deployment.name == name]
            if len(matches) != 1:
                errors.append(f"{name}: {len(matches)} deployments of that name in {wanted.pool!r}")
                continue
            try:
                await set_one_paused(client, matches[0], paused)
            except Exception as exc:
                errors.append(f"{name}: {one_line(exc)}")
    return errors


async def set_one_paused(
    client: PrefectClient, deployment: DeploymentResponse, paused: bool
) -> None:
    switch = client.pause_deployment if paused else client.resume_deployment
    await switch(deployment.id)
    for schedule in deployment.schedules:
        await client.update_deployment_schedule(deployment.id, schedule.id, active=not paused)
    print(f"{'Paused' if paused else 'Resumed'} deployment {deployment.name!r}")
