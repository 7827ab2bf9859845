"""What a deploy keeps on the server besides the deployments: the process work pool, the
automation that crashes runs whose heartbeats stopped, the one that reports failed runs to
the team's webhook (its URL from the deploy environment, never the repository), and the
warehouse's freshness and late-run automations (issue 27, built by prh_ingest.freshness),
planned, applied only when changed and pruned like its deployments."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit
from uuid import UUID

from prefect import get_client
from prefect.automations import Automation
from prefect.blocks.notifications import (
    CustomWebhookNotificationBlock,
    MicrosoftTeamsWebhook,
    NotificationBlock,
    SlackWebhook,
)
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState, SendNotification
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.settings import get_current_settings
from prefect.workers.process import ProcessWorker

from prh_ingest import freshness
from prh_ingest.deploy.flows_file import FlowEntry
from prh_ingest.deploy.plan import one_line, summary

# A flow run whose heartbeats stop (its worker or machine died without a word) is marked
# Crashed after this long, which also frees its deployment's concurrency slot. The worker
# unit sends a heartbeat every 30 s (PREFECT_FLOWS_HEARTBEAT_FREQUENCY).
ZOMBIE_AUTOMATION = "crash-zombie-flow-runs"
NO_HEARTBEAT_FOR = timedelta(seconds=90)
# Every flow run of the work pool that ends Failed or Crashed is reported to the webhook in
# this deploy-environment variable. A webhook URL carries its token, so it never goes in the
# repository: the deploy saves it on the server as a block secret. Unset: the notification
# setup on the server stays as it is. A flow's retries pass through AwaitingRetry, not
# Failed: one message per run that finally failed.
NOTIFY_URL_SETTING = "PRH_NOTIFY_URL"
NOTIFY_URL = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/%@+=&?:,-]*)?")
NOTIFY_AUTOMATION = "notify-failed-flow-runs"
NOTIFY_SUBJECT = "Prefect: {{ deployment.name }} {{ flow_run.state.name }}"
NOTIFY_BODY = """Deployment: {{ deployment.name }}
Flow run: {{ flow_run.name }}
State: {{ flow_run.state.name }}: {{ flow_run.state.message }}
{{ flow_run|ui_url }}"""


class SettingError(ValueError):
    """A deploy-environment setting is unusable; the message says which and why."""


def require_api_url() -> None:
    """Without an API URL Prefect would start a throwaway server of its own and deploy there."""
    if not get_current_settings().api.url:
        raise SettingError("PREFECT_API_URL is not set: export it (see the README)")


def notify_url(environ: Mapping[str, str]) -> str | None:
    """The webhook from the deploy environment: None when unset, "" to stop notifying."""
    url = environ.get(NOTIFY_URL_SETTING)
    if url and not NOTIFY_URL.fullmatch(url):
        raise SettingError(
            f"{NOTIFY_URL_SETTING} is not an http(s) URL without credentials, quotes or spaces"
        )
    return url


def notify_block_name(pool: str) -> str:
    return f"{pool}-failed-flow-runs"


def ensure_work_pool(pool: str) -> None:
    """Create the process work pool with Prefect's default job template if it is missing."""
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
            return
        except ObjectNotFound:
            pass
        created = WorkPoolCreate(
            name=pool,
            type="process",
            base_job_template=ProcessWorker.get_default_base_job_template(),
        )
        try:
            client.create_work_pool(created)
            print(f"Created work pool {pool!r}")
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


def notification_block(url: str, pool: str) -> NotificationBlock:
    """Slack and Teams (a Power Automate workflow URL: Microsoft retired the office.com
    webhooks) get their own block; any other URL gets a JSON POST of {"subject", "body"}.
    The URL is kept as a secret on the server."""
    host = urlsplit(url).hostname or ""
    if host == "hooks.slack.com":
        return SlackWebhook(url=url)
    if host.endswith((".logic.azure.com", ".powerplatform.com")):
        return MicrosoftTeamsWebhook(url=url)
    return CustomWebhookNotificationBlock(
        name=notify_block_name(pool),
        url="{{url}}",
        method="POST",
        json_data={"subject": "{{subject}}", "body": "{{body}}"},
        secrets={"url": url},
    )


def ensure_notify_automation(url: str | None, pool: str) -> None:
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
    block_id = notification_block(url, pool).save(notify_block_name(pool), overwrite=True)
    automation = Automation(
        name=NOTIFY_AUTOMATION,
        description=f"Report failed and crashed flow runs of work pool {pool!r}",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
            match=ResourceSpecification({"prefect.resource.id": "prefect.flow-run.*"}),
            match_related=ResourceSpecification(
                {"prefect.resource.role": "work-pool", "prefect.resource.name": pool}
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


# --- freshness and late runs (issue 27): planned and pruned like the deployments ---

# The block --plan compares with when PRH_NOTIFY_URL is set but no deploy has saved it yet.
NOT_SAVED_YET = UUID(int=0)
DONE = {"create": "Created", "update": "Updated", "prune": "Deleted"}
NOTIFY_BLOCKS = (CustomWebhookNotificationBlock, SlackWebhook, MicrosoftTeamsWebhook)


@dataclass
class AutomationStep:
    """What the plan does with one of the warehouse's automations."""

    action: str  # create, update, unchanged, prune or unlisted (kept)
    name: str
    wanted: Automation | None = None
    current: Automation | None = None
    entry: FlowEntry | None = None  # a freshness automation's entry

    def line(self) -> str:
        return f"{self.action:<10}automation {self.name}"


def notify_block_id(pool: str, url: str | None) -> UUID | None:
    """The notification block the warehouse's automations send through: the one a deploy
    saved for PRH_NOTIFY_URL; none when it is set empty (notifications stopped)."""
    if url == "":
        return None
    with get_client(sync_client=True) as client:
        for block in NOTIFY_BLOCKS:
            try:
                return client.read_block_document_by_name(
                    notify_block_name(pool), block.get_block_type_slug(), include_secrets=False
                ).id
            except ObjectNotFound:
                continue
    return NOT_SAVED_YET if url else None


def wanted_automations(
    warehouse_slug: str, flows: list[FlowEntry], block_id: UUID
) -> list[tuple[Automation, FlowEntry | None]]:
    """The late-run automation and one freshness automation per entry with `freshness`."""
    wanted: list[tuple[Automation, FlowEntry | None]] = [
        (freshness.late_run_automation(warehouse_slug, block_id), None)
    ]
    for entry in flows:
        if entry.freshness:
            slug, source = entry.slug_and_source()
            within = freshness.parse_duration(entry.freshness)
            automation = freshness.freshness_automation(
                warehouse_slug, entry.deployment, slug, source, within, block_id
            )
            wanted.append((automation, entry))
    return wanted


def plan_automations(
    warehouse_slug: str, flows: list[FlowEntry], block_id: UUID | None, prune: bool
) -> tuple[list[AutomationStep], list[str]]:
    """The automation steps against the server's automations. Without a notification block
    nothing is wanted: an entry with freshness is an error line."""
    if block_id is None:
        wanted = []
        errors = [
            f"{entry.deployment}: freshness needs the warehouse's notification webhook: "
            f"set {NOTIFY_URL_SETTING} (see the README)"
            for entry in flows
            if entry.freshness
        ]
    else:
        wanted, errors = wanted_automations(warehouse_slug, flows, block_id), []
    with get_client(sync_client=True) as client:
        on_server = client.read_automations()
    return automation_steps(warehouse_slug, wanted, on_server, prune), errors


def automation_steps(
    warehouse_slug: str,
    wanted: list[tuple[Automation, FlowEntry | None]],
    on_server: list[Automation],
    prune: bool,
) -> list[AutomationStep]:
    """Each wanted automation compared (freshness.comparable) with the one of its name on the
    server; the warehouse's own (its tag) that are no longer wanted are pruned (with --prune)
    or kept; another's are never touched."""
    by_name = {automation.name: automation for automation in on_server}
    steps = []
    for automation, entry in wanted:
        current = by_name.get(automation.name)
        if current is None:
            action = "create"
        elif freshness.comparable(automation) == freshness.comparable(current):
            action = "unchanged"
        else:
            action = "update"
        steps.append(AutomationStep(action, automation.name, automation, current, entry))
    names = {automation.name for automation, _ in wanted}
    steps += [
        AutomationStep("prune" if prune else "unlisted", automation.name, current=automation)
        for automation in on_server
        if freshness.is_warehouses(automation, warehouse_slug) and automation.name not in names
    ]
    return steps


def automation_lines(steps: list[AutomationStep]) -> list[str]:
    return [step.line() for step in steps] + [f"automations: {summary(steps)}"]


def apply_automations(steps: list[AutomationStep]) -> list[str]:
    """Write the steps that change something; after a freshness automation is created or
    updated, start its window (freshness.emit_watch) so a source never loaded is reported.
    One line per step that failed (the others go on)."""
    errors = []
    for step in steps:
        try:
            if step.action == "create":
                step.wanted.create()
            elif step.action == "update":
                step.wanted.id = step.current.id
                step.wanted.update()
            elif step.action == "prune":  # the server's copy: deleted by its id
                with get_client(sync_client=True) as client:
                    client.delete_automation(step.current.id)
            else:
                continue
        except Exception as exc:  # name it, keep going
            errors.append(f"automation {step.name}: {step.action} failed: {one_line(exc)}")
            continue
        print(f"{DONE[step.action]} automation {step.name!r}")
        if step.entry is not None:
            watch(step.entry)
    return errors


def watch(entry: FlowEntry) -> None:
    slug, source = entry.slug_and_source()
    with get_client(sync_client=True) as client:
        last = freshness.last_load(client, slug, source)
    freshness.emit_watch(slug, source, last)
