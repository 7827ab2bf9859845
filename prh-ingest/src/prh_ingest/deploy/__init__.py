"""The warehouse's deploy tool: prefect/flows.json made true on a Prefect server.

A warehouse's `prefect/prw_deploy.py` names the warehouse (its slug, work pool, default
timezone and flows file) and calls main(); everything else is here:

    flows_file.py   prefect/flows.json: the team's file, checked every time it is read
    plan.py         read the flows from their repos and the server, and compare
    apply.py        write the plan at the server's pace; pause and resume
    automations.py  the work pool, the zombie-run and the failure-notification automations
    commands.py     the command line (--dry-run, --plan, --prune, --pause, --resume, --add)

Importing this package needs no Prefect (the warehouse template's hooks import flows_file).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prh_ingest import naming


@dataclass(frozen=True)
class Warehouse:
    """What the deploy tool needs to know of one warehouse: the template renders it into the
    warehouse's prw_deploy.py; every other name is derived here (prh_ingest.naming)."""

    slug: str
    work_pool: str
    flows_file: Path
    timezone: str = "UTC"  # of an entry that names none

    @property
    def marker_tag(self) -> str:
        """The tag on every deployment this warehouse makes: --prune deletes only these."""
        return naming.warehouse_tag(self.slug)


def main(warehouse: Warehouse, argv: list[str] | None = None) -> int:
    """`python prefect/prw_deploy.py [options]`: its exit status."""
    from prh_ingest.deploy.commands import run  # Prefect is imported only from here on

    return run(warehouse, argv)
