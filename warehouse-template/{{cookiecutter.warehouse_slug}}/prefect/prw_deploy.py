"""Every scheduled ingest flow of the {{ cookiecutter.warehouse_name }}, as code.

The flows are in prefect/flows.json, written from the `flows` answer in .cruft.json:
change them with scripts/regenerate.py (see the README), not by hand, or the next
regeneration will conflict with your edit.

    python prefect/prw_deploy.py --dry-run   # show what would be deployed; needs no server
    python prefect/prw_deploy.py             # create or update every deployment below
    python prefect/prw_deploy.py --prune     # ...and delete deployments no longer listed
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import prefect
from cron_descriptor import get_description
from prefect import get_client
from prefect.automations import Automation
from prefect.blocks.notifications import (
    CustomWebhookNotificationBlock,
    MicrosoftTeamsWebhook,
    NotificationBlock,
    SlackWebhook,
)
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import WorkPoolFilter, WorkPoolFilterName
from prefect.client.schemas.objects import StateType
from prefect.context import SyncClientContext
from prefect.deployments.runner import RunnerDeployment
from prefect.events.actions import ChangeFlowRunState, SendNotification
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.runner.storage import GitRepository
from prefect.schedules import Cron
from prefect.server.schemas.schedules import CronSchedule
from prefect.workers.process import ProcessWorker

WORK_POOL = {{ cookiecutter.work_pool | tojson }}
NEXT_RUNS = 3
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
    schedule = CronSchedule(cron=entry.cron, timezone=entry.timezone)
    return list(asyncio.run(schedule.get_dates(count, start=datetime.now(timezone.utc))))


def describe(entry: FlowEntry) -> str:
    """A few lines a person can check before deploying."""
    runs = ", ".join(f"{run:%a %Y-%m-%d %H:%M %Z}" for run in next_runs(entry))
    env = ", ".join(sorted(entry.env)) or "-"
    return "\n".join(
        [
            f"{entry.deployment}",
            f"  source:     {entry.repo} (branch {entry.branch})",
            f"  entrypoint: {entry.entrypoint}",
            f"  schedule:   {entry.cron} = {get_description(entry.cron)} ({entry.timezone})",
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
    try:
        automation.id = Automation.read(name=ZOMBIE_AUTOMATION).id
    except ValueError:  # not there yet
        automation.create()
        print(f"Created automation {ZOMBIE_AUTOMATION!r}")
        return
    automation.update()


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
    try:
        existing = Automation.read(name=NOTIFY_AUTOMATION)
    except ValueError:  # not there
        existing = None
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
    if existing is None:
        automation.create()
        print(f"Created automation {NOTIFY_AUTOMATION!r}: failed runs are reported")
        return
    automation.id = existing.id
    automation.update()


def load_deployment(entry: FlowEntry) -> RunnerDeployment:
    """Clone the flow's repo once and build its deployment from the flow found there.

    This is what `flow.from_source(repo, entrypoint).to_deployment(...)` does in Prefect 3
    (Flow.to_deployment calls RunnerDeployment.from_storage), without from_source's own
    extra clone of the repo."""
    return RunnerDeployment.from_storage(
        storage=GitRepository(url=entry.repo, branch=entry.branch),
        entrypoint=entry.entrypoint,
        name=entry.deployment,
        schedule=Cron(entry.cron, timezone=entry.timezone),
        parameters=entry.parameters,
        job_variables={"env": entry.env},
        concurrency_limit=entry.concurrency_limit,
        # The version would be inferred from *this* checkout's git commit, one git call per
        # flow, and describe the warehouse, not the flow's repo.
        version_type="prefect:simple",
    )


def load_deployments(flows: list[FlowEntry]) -> tuple[list[RunnerDeployment], list[str]]:
    """Build each flow's deployment; return them and the names that failed. (Threads do not
    help here: cloning and loading a flow is CPU-bound, about 30 ms per flow.)"""
    deployments: list[RunnerDeployment] = []
    failed: list[str] = []
    for entry in flows:
        try:
            deployments.append(load_deployment(entry))
        except Exception as exc:  # one bad entry must not hide the others
            print(f"FAILED to load {entry.deployment}: {exc}", file=sys.stderr)
            failed.append(entry.deployment)
    return deployments, failed


def apply_deployments(deployments: list[RunnerDeployment]) -> tuple[set[UUID], list[str]]:
    """Deploy in one batch; Prefect only reports failures in a table, so check the ids."""
    if not deployments:
        return set(), []
    try:
        ids = set(
            prefect.deploy(
                *deployments,
                work_pool_name=WORK_POOL,
                print_next_steps_message=False,
                ignore_warnings=True,
            )
        )
    except Exception as exc:  # a batch of one raises instead of reporting
        print(f"FAILED to deploy: {exc}", file=sys.stderr)
        ids = set()
    if len(ids) == len(deployments):  # each deployment got its own id: none failed
        return ids, []
    failed = []
    with get_client(sync_client=True) as client:
        for deployment in deployments:
            try:
                name = f"{deployment.flow_name}/{deployment.name}"
                current = client.read_deployment_by_name(name)
            except ObjectNotFound:
                current = None
            if current is None or current.id not in ids:
                failed.append(deployment.name)
    return ids, failed


def prune(keep: set[UUID]) -> None:
    """Delete the work pool's deployments that this file no longer lists."""
    in_pool = WorkPoolFilter(name=WorkPoolFilterName(any_=[WORK_POOL]))
    with get_client(sync_client=True) as client:
        stale, offset = [], 0
        while page := client.read_deployments(work_pool_filter=in_pool, offset=offset):
            stale += [deployment for deployment in page if deployment.id not in keep]
            offset += len(page)
        for deployment in stale:
            client.delete_deployment(deployment.id)
            print(f"Deleted deployment {deployment.name!r} (no longer in flows.json)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print the plan; no server needed")
    parser.add_argument("--prune", action="store_true", help="delete unlisted deployments")
    args = parser.parse_args(argv)

    try:
        url = notify_url(dict(os.environ))
    except SettingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(FLOWS)} deployment(s) for work pool {WORK_POOL!r}\n")
    for entry in FLOWS:
        print(describe(entry) + "\n")
    if args.dry_run:
        print("Dry run: nothing was deployed.")
        return 0

    # One API client for the whole run: otherwise Prefect builds a new one (and its TLS
    # context) for every call, about 30 ms each.
    with SyncClientContext.get_or_create():
        ensure_work_pool()
        ensure_zombie_automation()
        ensure_notify_automation(url)
        deployments, failed = load_deployments(FLOWS)
        ids, failed_to_apply = apply_deployments(deployments)
        failed += failed_to_apply
        if failed:
            print(f"FAILED deployments: {', '.join(failed)}", file=sys.stderr)
            return 1
        if args.prune:
            prune(keep=ids)
    print(f"Deployed {len(ids)} deployment(s) to work pool {WORK_POOL!r}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
