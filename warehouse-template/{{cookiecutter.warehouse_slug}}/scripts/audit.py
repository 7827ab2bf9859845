#!/usr/bin/env python3
"""Who changed what on the Prefect server: the audit lines of prefect-gate.service as a table.

    sudo scripts/audit.py                                  # the last 7 days
    sudo scripts/audit.py --since 30d --user alice
    sudo scripts/audit.py --deployment clinic-cal-epic-ingest --since 12h

It reads /var/log/prefect-audit/audit.log and the files logrotate made of it (.1, .2.gz, …):
one JSON line per change made through the sign-in front (time, user, role, source IP,
method, route, deployment, flow run, result code). --since takes a number with m, h or d.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

AUDIT_DIR = Path("/var/log/prefect-audit")
COLUMNS = ("time", "user", "role", "source_ip", "method", "route", "deployment", "flow_run", "code")
UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def duration(text: str) -> datetime.timedelta:
    match = re.fullmatch(r"(\d+)([mhd])", text)
    if not match:
        raise argparse.ArgumentTypeError(f"'{text}' is not a duration like 30m, 12h or 7d")
    return datetime.timedelta(**{UNITS[match.group(2)]: int(match.group(1))})


def audit_files(directory: Path) -> list[Path]:
    """audit.log and its rotated files, oldest first."""

    def age(path: Path) -> int:
        number = path.name.removeprefix("audit.log").strip(".").removesuffix(".gz")
        return int(number) if number.isdigit() else 0

    return sorted(directory.glob("audit.log*"), key=age, reverse=True)


def entries(files: list[Path]) -> Iterator[dict]:
    for path in files:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as lines:
            for line in lines:
                try:
                    yield json.loads(line)
                except ValueError:
                    continue  # a line cut short by a full disk: skipped, the rest still shown


def selected(
    found: Iterator[dict], since: datetime.datetime, user: str | None, deployment: str | None
) -> list[dict]:
    return [
        entry
        for entry in found
        if datetime.datetime.fromisoformat(entry["time"]) >= since
        and (user is None or entry.get("user") == user)
        and (deployment is None or entry.get("deployment") == deployment)
    ]


def table(rows: list[dict]) -> str:
    cells = [[str(row.get(column) or "") for column in COLUMNS] for row in rows]
    header = [column.upper() for column in COLUMNS]
    widths = [max(len(row[i]) for row in [header, *cells]) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *cells]
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--since", type=duration, default=duration("7d"), help="default: 7d")
    parser.add_argument("--user", help="only this user's changes")
    parser.add_argument("--deployment", help="only changes of this deployment (or its runs)")
    parser.add_argument("--directory", type=Path, default=AUDIT_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    files = audit_files(args.directory)
    if not files:
        print(
            f"error: no audit log in {args.directory} (run as root: sudo {sys.argv[0]})",
            file=sys.stderr,
        )
        return 1
    since = datetime.datetime.now(datetime.timezone.utc) - args.since
    try:
        rows = selected(entries(files), since, args.user, args.deployment)
    except PermissionError:
        print(
            f"error: cannot read {args.directory}: run as root (sudo {sys.argv[0]})",
            file=sys.stderr,
        )
        return 1
    if rows:
        print(table(rows))
    else:
        print("No changes match.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
