"""Baking warehouses: the flow entries the tests answer with, offline dry runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support import package
from support.baking import baked, cookies_into
from support.commands import REPO_DIR
from support.services import offline_env

TEMPLATE_DIR = REPO_DIR / "warehouse-template"
WAREHOUSE_TEMPLATE_DIR = str(TEMPLATE_DIR)  # what cookies.bake(template=...) takes for a warehouse
WAREHOUSE = "prh-warehouse"
UNIT = "prefect-worker-ingest.service"

# What baking the default ingest project prints (see ARCHITECTURE.md, step 3).
CLINIC_CAL = {
    "clinic-cal-epic-ingest": {
        "repo": "https://github.com/org/clinic-cal.git",
        "entrypoint": "prefect/clinic-cal-epic-ingest.py:clinic_cal_epic_ingest",
        "cron": "0 6 * * *",
    }
}
PRH_DASH = {
    "prh-dash-ingest": {
        "repo": "git@github.com:org/prh-dash.git",
        "branch": "production",
        "entrypoint": "prefect/prh-dash-ingest.py:prh_dash_ingest",
        "cron": "30 5 * * 1-5",
        "timezone": "America/Puerto_Rico",
        "parameters": {"full_refresh": True, "label": 'it\'s "quoted"', "skip": None},
        "env": {"PRH_DASH_MODE": "nightly", "DASH_URL": "https://dash.example.org/a?b=c&d=e"},
        "concurrency_limit": 2,
    }
}
LAB_RESULTS = {
    "lab-results-ingest": {
        "repo": "/srv/git/lab-results.git",
        "entrypoint": "flows/lab_results.py:lab_results_ingest",
        "cron": "*/15 * * * *",
    }
}
FLOW_SETS: dict[str, dict[str, Any]] = {
    "no-flows": {},
    "one-flow": CLINIC_CAL,
    "three-flows": {**CLINIC_CAL, **PRH_DASH, **LAB_RESULTS},
}


def dry_run_env(home: Path) -> dict[str, str]:
    """Prefect isolated in *home*, its API a closed port: proof that nothing needs a server."""
    return {**offline_env(home), "PREFECT_API_URL": "http://127.0.0.1:9/api"}


def bake_warehouse(output_dir: Path, template: Path = TEMPLATE_DIR, **answers: Any) -> Path:
    """A warehouse baked with *answers* into *output_dir*; returns its folder. Its venvs pin
    the package under test (a wheel of this checkout), unless *answers* say otherwise."""
    answers.setdefault("prh_ingest", package.answer())
    return baked(cookies_into(output_dir).bake(extra_context=answers, template=str(template)))
