"""The deploy tool's command line, as a warehouse's prefect/prw_deploy.py runs it.

    --dry-run        describe flows.json; needs no server
    --plan           what a deploy would change (exit 2: changes)
    (no option)      create or update what changed
    --prune          ...and delete this warehouse's unlisted deployments
    --pause/--resume NAME...   (a deploy never pauses or unpauses)
    --status         each source with freshness: last load, age, rows (exit 2: not all fresh)
    --add JSON / --remove NAME...   edit flows.json (checked; written only when valid)

Every mode that reads flows.json checks it first, offline: a bad entry is one `error:` line
naming the entry and the key, exit 1, nothing deployed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import UTC, datetime

from cron_descriptor import get_description
from prefect.context import SyncClientContext
from prefect.server.schemas.schedules import CronSchedule
from prefect.settings import get_current_settings

from prh_ingest.deploy import Warehouse, flows_file
from prh_ingest.deploy.apply import plan_and_apply, set_paused
from prh_ingest.deploy.automations import (
    SettingError,
    apply_automations,
    automation_lines,
    ensure_notify_automation,
    ensure_work_pool,
    ensure_zombie_automation,
    notify_block_id,
    notify_url,
    plan_automations,
    require_api_url,
)
from prh_ingest.deploy.flows_file import FlowEntry
from prh_ingest.deploy.plan import Wanted, one_line
from prh_ingest.deploy.status import status
from prh_ingest.naming import Invalid

NEXT_RUNS = 3


def next_runs(entry: FlowEntry, count: int = NEXT_RUNS) -> list[datetime]:
    """The next run times, computed the way the Prefect scheduler computes them."""
    if not entry.cron:
        return []
    schedule = CronSchedule(cron=entry.cron, timezone=entry.timezone)
    return list(asyncio.run(schedule.get_dates(count, start=datetime.now(UTC))))


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="prw_deploy.py", description="Make the Prefect server match prefect/flows.json."
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="describe flows.json; no server")
    mode.add_argument("--plan", action="store_true", help="show what a deploy would change")
    mode.add_argument("--resume", nargs="+", metavar="NAME", help="unpause these deployments")
    mode.add_argument("--pause", nargs="+", metavar="NAME", help="pause these deployments")
    mode.add_argument(
        "--add", action="append", metavar="JSON", help='add or replace entries: {"<name>": {...}}'
    )
    mode.add_argument("--remove", nargs="+", metavar="NAME", help="remove these entries")
    mode.add_argument("--status", action="store_true", help="is each source's last load fresh?")
    parser.add_argument("--prune", action="store_true", help="delete unlisted deployments")
    return parser.parse_args(argv)


def report(errors: list[str]) -> None:
    for error in errors:
        print(f"error: {error}", file=sys.stderr)


def run(warehouse: Warehouse, argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.resume or args.pause:  # by name, on the server: flows.json is not read
        return switch(warehouse, args.pause or args.resume, paused=bool(args.pause))
    try:
        if args.add or args.remove:
            return edit(warehouse, args.add or [], args.remove or [])
        flows = flows_file.load(warehouse.flows_file, warehouse.timezone)
    except Invalid as exc:
        report([str(exc)])
        return 1
    wanted = Wanted(warehouse.work_pool, warehouse.marker_tag, flows)
    if args.dry_run:
        return dry_run(wanted)
    if args.status:
        return show_status(flows)
    if args.plan:
        return plan(warehouse, wanted, args.prune)
    return deploy(warehouse, wanted, args.prune)


def edit(warehouse: Warehouse, add: list[str], remove: list[str]) -> int:
    """--add / --remove: flows.json rewritten with every entry checked, or left as it was."""
    where = flows_file.shown_path(warehouse.flows_file)
    if remove:
        flows_file.remove(warehouse.flows_file, remove, warehouse.timezone)
        print(f"Removed {', '.join(remove)} from {where}.")
        print("Next: commit, then deploy with --prune so the deployment leaves the server too.")
        return 0
    names = flows_file.add(warehouse.flows_file, add, warehouse.timezone)
    print(f"Added {', '.join(names)} to {where}.")
    print("Next: check `python prefect/prw_deploy.py --dry-run`, commit, then deploy.")
    return 0


def dry_run(wanted: Wanted) -> int:
    try:
        notify_url(os.environ)
    except SettingError as exc:
        report([str(exc)])
        return 2
    print(f"{len(wanted.flows)} deployment(s) for work pool {wanted.pool!r}\n")
    for entry in wanted.flows:
        print(describe(entry) + "\n")
    print("Dry run: nothing was deployed.")
    return 0


def switch(warehouse: Warehouse, names: list[str], paused: bool) -> int:
    """--pause / --resume: exit 0, or 1 naming each deployment that failed."""
    wanted = Wanted(warehouse.work_pool, warehouse.marker_tag, [])
    try:
        require_api_url()
        errors = asyncio.run(set_paused(wanted, names, paused))
    except Exception as exc:  # the setting, or the server unreachable
        errors = [one_line(exc)]
    report(errors)
    return 1 if errors else 0


def show_status(flows: list[FlowEntry]) -> int:
    """--status: exit 0 when every source is fresh, 2 otherwise, 1 on an error."""
    try:
        require_api_url()
        return status(flows)
    except Exception as exc:  # the setting, or the server unreachable
        report([f"cannot read the server {get_current_settings().api.url}: {one_line(exc)}"])
        return 1


def plan(warehouse: Warehouse, wanted: Wanted, prune: bool) -> int:
    """Exit 0: the server matches flows.json; 2: a deploy would change it; 1: an error."""
    try:
        require_api_url()
        url = notify_url(os.environ)
    except SettingError as exc:
        report([str(exc)])
        return 1
    try:
        changes, errors = asyncio.run(plan_and_apply(wanted, apply=False, prune=prune))
        with SyncClientContext.get_or_create():
            block_id = notify_block_id(wanted.pool, url)
            steps, failed = plan_automations(warehouse.slug, wanted.flows, block_id, prune)
        if steps:
            print("\n".join(automation_lines(steps)))
        changes = changes or any(step.action in ("create", "update", "prune") for step in steps)
        errors += failed
    except Exception as exc:
        errors = [f"cannot read the server {get_current_settings().api.url}: {one_line(exc)}"]
        changes = False
    report(errors)
    return 1 if errors else 2 if changes else 0


def deploy(warehouse: Warehouse, wanted: Wanted, prune: bool) -> int:
    try:
        require_api_url()
        url = notify_url(os.environ)
    except SettingError as exc:
        report([str(exc)])
        return 2
    try:
        # One API client for the set-up: otherwise Prefect builds a new one (and its TLS
        # context) for every call, about 30 ms each.
        with SyncClientContext.get_or_create():
            ensure_work_pool(wanted.pool)
            ensure_zombie_automation()
            ensure_notify_automation(url, wanted.pool)
        _, errors = asyncio.run(plan_and_apply(wanted, apply=True, prune=prune))
        with SyncClientContext.get_or_create():
            block_id = notify_block_id(wanted.pool, url)
            steps, failed = plan_automations(warehouse.slug, wanted.flows, block_id, prune)
            if steps:
                print("\n".join(automation_lines(steps)))
            errors += failed + apply_automations(steps)
    except Exception as exc:  # the server unreachable or refusing: one line, not a traceback
        report([f"cannot deploy to {get_current_settings().api.url}: {one_line(exc)}"])
        return 1
    report(errors)
    if errors:
        return 1
    print(f"Work pool {wanted.pool!r} matches flows.json ({len(wanted.flows)} deployment(s)).")
    return 0
