"""What a deploy keeps on the server besides the deployments: the process work pool, the
automation that crashes runs whose heartbeats stopped, and the one that reports failed runs to
the team's webhook (its URL from the deploy environment, never the repository)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from urllib.parse import urlsplit

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
