"""Flow entries the deploy tests share: as a baked ingest project prints them, and a warehouse."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prh_ingest.deploy import Warehouse

ENTRY: dict[str, Any] = {
    "repo": "https://github.com/org/clinic-cal.git",
    "entrypoint": "prefect/clinic-cal-epic-ingest.py:clinic_cal_epic_ingest",
    "cron": "0 6 * * *",
}
CLINIC_CAL = {"clinic-cal-epic-ingest": ENTRY}


def warehouse_with(root: Path, flows: object, timezone: str = "UTC") -> Warehouse:
    """A warehouse whose prefect/flows.json holds *flows* (JSON text as is, else dumped)."""
    path = root / "prefect" / "flows.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(flows if isinstance(flows, str) else json.dumps(flows, indent=2) + "\n")
    return Warehouse(slug="prh-warehouse", work_pool="ingest", flows_file=path, timezone=timezone)
