"""Baking warehouses, and template + warehouse git repos for the regeneration tests."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import cruft
from cookiecutter.main import cookiecutter

from support.baking import REPO_DIR, run
from support.services import offline_env

TEMPLATE_DIR = REPO_DIR / "warehouse-template"
TEMPLATE_SUBDIR = "warehouse-template"
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
GIT_IDENTITY = ("-c", "user.name=test", "-c", "user.email=test@example.invalid")


def dry_run_env(home: Path) -> dict[str, str]:
    """Prefect isolated in *home*, its API a closed port: proof that nothing needs a server."""
    return {**offline_env(home), "PREFECT_API_URL": "http://127.0.0.1:9/api"}


def bake_warehouse(output_dir: Path, template: Path = TEMPLATE_DIR, **answers: Any) -> Path:
    """`cookiecutter warehouse-template --no-input` with *answers*; returns the warehouse."""
    baked = cookiecutter(
        str(template), no_input=True, output_dir=str(output_dir), extra_context=answers
    )
    return Path(baked)


def run_python(
    argv: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """This venv's python (it has prefect, cruft and cookiecutter), like the deploy venv."""
    return run([sys.executable, *argv], cwd=cwd, env=env)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *GIT_IDENTITY, *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def template_repo(root: Path) -> Path:
    """A git repo holding a copy of this repo's warehouse-template, as a user's clone would."""
    repo = root / "template"
    shutil.copytree(TEMPLATE_DIR, repo / TEMPLATE_SUBDIR)
    git(repo, "init", "-q", "-b", "main")
    commit_all(repo, "template")
    return repo


def cruft_warehouse(template: Path, output_dir: Path, flows: dict[str, Any]) -> Path:
    """`cruft create --directory warehouse-template` with *flows*, committed in its own repo."""
    cruft.create(
        str(template),
        output_dir=output_dir,
        directory=TEMPLATE_SUBDIR,
        extra_context={"flows": flows},
        no_input=True,
    )
    warehouse = output_dir / WAREHOUSE
    git(warehouse, "init", "-q", "-b", "main")
    commit_all(warehouse, "baked")
    return warehouse


def regenerate(warehouse: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The warehouse's documented regeneration command."""
    return run_python(["scripts/regenerate.py", *args], cwd=warehouse)


def tree(root: Path) -> dict[str, bytes]:
    """Every file below *root* (outside .git) and its bytes."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and ".git" not in path.relative_to(root).parts
    }


def cruft_flows(warehouse: Path) -> dict[str, Any]:
    state = json.loads((warehouse / ".cruft.json").read_text())
    return state["context"]["cookiecutter"]["flows"]


def with_exec_start(unit_text: str, executable: Path) -> str:
    """The unit with ExecStart's program replaced by *executable*, arguments kept."""
    return re.sub(r"^ExecStart=\S+", f"ExecStart={executable}", unit_text, flags=re.MULTILINE)


def exposure(unit: Path) -> float:
    """`systemd-analyze security --offline=true` overall exposure (0 safe … 10 exposed)."""
    result = run(["systemd-analyze", "security", "--offline=true", str(unit)], cwd=unit.parent)
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1))
