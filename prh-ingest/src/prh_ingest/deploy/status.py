"""`python prefect/prw_deploy.py --status`: per source (each entry with `source`), its last
load (the server's last `prh.ingest.loaded` event of the source), its age, its rows, and
fresh, late or never against the entry's `freshness`. A source without `freshness` is shown
as not watched and does not count. Exit 0 when every watched one is fresh, 2 otherwise, so a
check can run it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prefect import get_client

from prh_ingest import freshness
from prh_ingest.deploy.flows_file import FlowEntry

HEADER = ("SOURCE", "DEPLOYMENT", "LAST LOAD (UTC)", "AGE", "ROWS", "STATE")
NOT_WATCHED = "not watched (no freshness)"


def age_in_words(age: timedelta) -> str:
    seconds = max(int(age.total_seconds()), 0)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def source_row(entry: FlowEntry, event: object | None, now: datetime) -> tuple[str, ...]:
    """One row of the view; *event* is the source's last `prh.ingest.loaded` or None."""
    loaded = event.occurred if event is not None else None
    rows = event.payload.get("rows") if event is not None else None
    state = NOT_WATCHED
    if entry.freshness:
        state = freshness.freshness_state(loaded, freshness.parse_duration(entry.freshness), now)
    return (
        entry.source,
        entry.deployment,
        f"{loaded.astimezone(UTC):%Y-%m-%d %H:%M:%S}" if loaded else "-",
        age_in_words(now - loaded) if loaded else "-",
        str(rows) if isinstance(rows, int) else "-",
        state if state != "late" else f"late (over {entry.freshness})",
    )


def table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[n]) for row in rows) for n in range(len(HEADER))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def status(flows: list[FlowEntry]) -> int:
    """Print the view; its exit status (freshness.status_exit_code)."""
    sources = [entry for entry in flows if entry.source]
    if not sources:
        print("No entry of flows.json names its source: nothing to show.")
        return 0
    now = datetime.now(UTC)
    with get_client(sync_client=True) as client:
        rows = [
            source_row(entry, freshness.last_load_event(client, *entry.slug_and_source()), now)
            for entry in sources
        ]
    print("\n".join(table([HEADER, *rows])))
    watched = [row for row, entry in zip(rows, sources, strict=True) if entry.freshness]
    return freshness.status_exit_code(row[-1].split()[0] for row in watched)
