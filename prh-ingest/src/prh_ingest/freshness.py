"""Late, stale and short sources (issue 27): the prh.ingest.* events a load emits, and the
automations that report a source whose loads stopped, or a run that went Late.

- **Events.** The flow (not ingest.py: emitting needs the flow's API connection) emits one
  event per load on the source's resource `prh.source.<slug>-<source>`: `prh.ingest.loaded`
  when new data landed, `prh.ingest.unchanged` for a re-send of bytes already loaded, plus
  `prh.ingest.short` and `prh.ingest.rejects` when the load says so. A payload carries counts
  only (rows, bytes, SHA-256, mode, table), never a value of the data.
- **Freshness.** For a warehouse entry with `freshness`, a proactive automation fires when no
  `prh.ingest.loaded` arrives within the duration after the last one. Its window starts at
  each load; the deploy tool starts it with `prh.ingest.watched` after it creates or updates
  the automation (the server starts a changed trigger afresh), so a source never loaded is
  reported too. It fires once per silence: the next load starts a new window.
- **Late runs.** A reactive automation reports each flow run of the warehouse's deployments
  that the server marks Late: a stopped worker is noticed before a freshness window ends.

Both automations notify through the warehouse's existing notification block (the one
prw_deploy.py saves for PRH_NOTIFY_URL) and carry the warehouse's tag, as its deployments do,
so plan and prune know them as its own.

prefect is imported inside the functions that need it: the loader imports this package
without it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from prh_ingest import naming

if TYPE_CHECKING:
    from prefect.automations import Automation
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.events.schemas.events import ReceivedEvent as Event

LOADED = "prh.ingest.loaded"
UNCHANGED = "prh.ingest.unchanged"
SHORT = "prh.ingest.short"
REJECTS = "prh.ingest.rejects"
WATCHED = "prh.ingest.watched"  # a freshness window starts without a load (see above)
EVENTS = (LOADED, UNCHANGED, SHORT, REJECTS, WATCHED)
NEVER = "never"
FLOW_RUN_LATE = "prefect.flow-run.Late"

DURATION = re.compile(r"([1-9][0-9]{0,5})([smhd])")
DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
# Prefect 3.9 refuses a proactive trigger's `within` under 10 s (EventTrigger's validator).
MIN_FRESHNESS = timedelta(seconds=10)
DURATION_HINT = "a whole number and a unit: 45s, 90m, 26h or 2d"
SHA256 = re.compile(r"[0-9a-f]{64}")
MODES = ("append", "file", "snapshot", "merge")
TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def parse_duration(text: object) -> timedelta:
    """`26h`, `90m`, `45s`, `2d` -> a timedelta; anything else is a ValueError
    (naming.Invalid) saying what is wrong, for one `error:` line naming the entry and key."""
    if not isinstance(text, str):
        raise naming.Invalid(f"must be text like '26h', got {naming.shown(text)}")
    found = DURATION.fullmatch(text.strip())
    if not found:
        raise naming.Invalid(f"{naming.shown(text)} is not a duration: use {DURATION_HINT}")
    number, unit = found.groups()
    duration = timedelta(**{DURATION_UNITS[unit]: int(number)})
    if duration < MIN_FRESHNESS:
        raise naming.Invalid(
            f"{naming.shown(text)} is too short: Prefect watches for a missing event "
            f"{int(MIN_FRESHNESS.total_seconds())}s at the least"
        )
    return duration


def check_freshness(where: str, value: object) -> timedelta:
    """A warehouse entry's `freshness` (*where* is e.g. `flows['clinic-cal-epic-ingest']
    .freshness`): the hook's and the deploy tool's one-line error names the entry and key."""
    try:
        return parse_duration(value)
    except naming.Invalid as error:
        raise naming.Invalid(f"{where}: {error}") from None


def freshness_state(last_loaded: datetime | None, within: timedelta, now: datetime) -> str:
    """What `prw_deploy.py --status` prints for a source: fresh, late or never."""
    if last_loaded is None:
        return NEVER
    return "late" if now - last_loaded > within else "fresh"


def status_exit_code(states: Iterable[str]) -> int:
    """0 when every source is fresh, 2 otherwise, so a check can run the status view."""
    return 0 if all(state == "fresh" for state in states) else 2


# --- events: what a load tells the server, counts only ---


@dataclass(frozen=True)
class LoadEvent:
    """One prh.ingest.* event, ready to emit."""

    event: str
    resource: dict[str, str]
    payload: dict[str, Any]


def source_resource(slug: str, source: str) -> dict[str, str]:
    return {
        "prefect.resource.id": naming.source_resource(slug, source),
        "prefect.resource.name": f"{slug}-{source}",
    }


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def load_payload(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The counts of ingest.py's JSON summary line, each checked to be what it claims (a
    number, a hex digest, a known mode, a table name): a value that is not is left out, so no
    field of the summary can carry a cell's value into an event."""
    sha256 = summary.get("sha256")
    mode = summary.get("mode")
    table = summary.get("table")
    return {
        "rows": _count(summary.get("rows")),
        "bytes": _count(summary.get("size_bytes")),
        "sha256": sha256 if isinstance(sha256, str) and SHA256.fullmatch(sha256) else None,
        "mode": mode if mode in MODES else None,
        "table": table if isinstance(table, str) and TABLE.fullmatch(table) else None,
    }


def load_events(slug: str, source: str, summary: Mapping[str, Any] | None) -> list[LoadEvent]:
    """The events of one load from its summary: none for a failed load (the failure
    notification reports it), `loaded` or `unchanged` (same bytes as an earlier load), and
    `short` / `rejects` when the summary's counts say so."""
    if not summary or summary.get("ok") is not True:
        return []
    resource = source_resource(slug, source)
    payload = load_payload(summary)
    landed = UNCHANGED if summary.get("same_as_load") is not None else LOADED
    events = [LoadEvent(landed, resource, payload)]
    if summary.get("row_check") == "short-warn":
        # The counts of load.checks.RowCheck.counts(), each a number (or the operator's yes).
        short = {
            "usual_rows": summary.get("usual_rows"),
            "min_rows_ratio": summary.get("min_rows_ratio"),
            "history_loads": _count(summary.get("history_loads")),
        }
        short = {k: v for k, v in short.items() if isinstance(v, int | float)}
        short["short_accepted"] = summary.get("short_accepted") is True
        events.append(LoadEvent(SHORT, resource, {**payload, **short}))
    rejected = _count(summary.get("rejected_rows"))
    if rejected:
        events.append(LoadEvent(REJECTS, resource, {**payload, "rejected_rows": rejected}))
    return events


def emit_load_events(slug: str, source: str, summary: Mapping[str, Any] | None) -> list[str]:
    """Emit the load's events from the flow's process (Prefect relates each to the flow run
    and its deployment); returns their names, for the run's log."""
    from prefect.events import emit_event

    events = load_events(slug, source, summary)
    for event in events:
        emit_event(event=event.event, resource=event.resource, payload=event.payload)
    return [event.event for event in events]


def last_load(client: SyncPrefectClient, slug: str, source: str) -> datetime | None:
    """When the server last saw a `prh.ingest.loaded` of the source; None when its event
    history (PREFECT_EVENTS_RETENTION_PERIOD, 7 days by default) has none."""
    event = last_load_event(client, slug, source)
    return event.occurred if event else None


def last_load_event(client: SyncPrefectClient, slug: str, source: str) -> Event | None:
    """The source's last `prh.ingest.loaded` event (its payload has the load's rows)."""
    from prefect.events.filters import (
        EventFilter,
        EventNameFilter,
        EventOccurredFilter,
        EventResourceFilter,
    )

    retention = timedelta(days=3650)  # the server's own retention is the real limit
    page = client.read_events(
        EventFilter(
            occurred=EventOccurredFilter(since=datetime.now(UTC) - retention),
            event=EventNameFilter(name=[LOADED]),
            resource=EventResourceFilter(id=[naming.source_resource(slug, source)]),
        ),
        limit=1,
    )
    return page.events[0] if page.events else None


def watch_payload(last_loaded: datetime | None) -> dict[str, str]:
    return {"last_loaded": last_loaded.isoformat() if last_loaded else NEVER}


def emit_watch(slug: str, source: str, last_loaded: datetime | None) -> None:
    """Start the source's freshness window now (the deploy tool calls it after creating or
    updating the automation). Outside a flow run it waits until the event is sent; inside
    one, the run sends it before it ends."""
    from prefect.context import FlowRunContext
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    resource = source_resource(slug, source)
    emit_event(event=WATCHED, resource=resource, payload=watch_payload(last_loaded))
    if FlowRunContext.get() is None:
        EventsWorker.drain_all()


# --- automations: what the deploy tool keeps on the server ---

# The notification names the source, its deployment and the time of its last load, nothing
# else. The triggering event is the last load, or the watch that started the window.
FRESHNESS_SUBJECT = "Prefect: {source} is late"
FRESHNESS_BODY = (
    "Source: {source}\n"
    "Deployment: {deployment}\n"
    "No load within {within}\n"
    "Last load: {{% if event.event == '{loaded}' %}}{{{{ event.occurred }}}}"
    "{{% else %}}{{{{ event.payload.last_loaded }}}}{{% endif %}}"
)
LATE_SUBJECT = "Prefect: {{ deployment.name }} is late"
LATE_BODY = """Deployment: {{ deployment.name }}
Flow run: {{ flow_run.name }}
Expected start: {{ flow_run.expected_start_time }}
No worker picked it up: check the worker of its work pool.
{{ flow_run|ui_url }}"""


def freshness_automation(
    warehouse_slug: str,
    deployment: str,
    slug: str,
    source: str,
    within: timedelta,
    block_document_id: UUID,
) -> Automation:
    """The automation that reports *source* of project *slug* (deployed as *deployment*)
    when no `prh.ingest.loaded` arrives within *within* of its last load or of its watch."""
    from prefect.automations import Automation
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    name = f"{slug}-{source}"
    body = FRESHNESS_BODY.format(
        source=name, deployment=deployment, within=_in_words(within), loaded=LOADED
    )
    return Automation(
        name=naming.freshness_automation_name(deployment),
        description=f"Report {name} when no load lands within {_in_words(within)}",
        tags=[naming.warehouse_tag(warehouse_slug)],
        trigger=EventTrigger(
            after={LOADED, WATCHED},
            expect={LOADED},
            match=ResourceSpecification(
                {"prefect.resource.id": naming.source_resource(slug, source)}
            ),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=within,
        ),
        actions=[
            SendNotification(
                block_document_id=block_document_id,
                subject=FRESHNESS_SUBJECT.format(source=name),
                body=body,
            )
        ],
    )


def late_run_automation(warehouse_slug: str, block_document_id: UUID) -> Automation:
    """The automation that reports every flow run of the warehouse's deployments (their
    runs carry its tag) that the server marks Late."""
    from prefect.automations import Automation
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    tag = naming.warehouse_tag(warehouse_slug)
    return Automation(
        name=naming.late_runs_automation_name(warehouse_slug),
        description=f"Report flow runs of warehouse {warehouse_slug!r} that went Late",
        tags=[tag],
        trigger=EventTrigger(
            expect={FLOW_RUN_LATE},
            match=ResourceSpecification({"prefect.resource.id": "prefect.flow-run.*"}),
            match_related=ResourceSpecification(
                {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{tag}"}
            ),
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[
            SendNotification(
                block_document_id=block_document_id, subject=LATE_SUBJECT, body=LATE_BODY
            )
        ],
    )


def comparable(automation: Automation) -> dict[str, Any]:
    """What plan compares: the automation as JSON without the server's ids, so one read back
    from the server equals the one built from flows.json when nothing changed."""
    dumped = automation.model_dump(mode="json", exclude={"id"})
    dumped["tags"] = sorted(dumped.get("tags", []))
    trigger = dumped["trigger"]
    trigger.pop("id", None)
    for key in ("after", "expect", "for_each"):
        if key in trigger:
            trigger[key] = sorted(trigger[key])
    return dumped


def is_warehouses(automation: Automation, warehouse_slug: str) -> bool:
    """Whether *automation* is one this warehouse made (prune deletes only these)."""
    return naming.warehouse_tag(warehouse_slug) in automation.tags


def _in_words(within: timedelta) -> str:
    seconds = int(within.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
