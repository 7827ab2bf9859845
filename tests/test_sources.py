"""Several sources in one project: a flow file, a setting and a table each, one shared venv.
The dependency step's locks let loads of the project's flows run side by side, and keep an
install from replacing the venv under a running load."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pytest_cookies.plugin import Cookies
from support.baking import INGEST_TEMPLATE_DIR, SINK_SETTING, baked, portable_bin
from support.commands import run
from support.regeneration import cruft_project, template_repo

CERNER_ENTRY = {
    "clinic-cal-cerner-ingest": {
        "repo": "https://github.com/org/clinic-cal.git",
        "entrypoint": "prefect/clinic-cal-cerner-ingest.py:clinic_cal_cerner_ingest",
        "cron": "0 6 * * *",
    }
}
FAKE_PIPENV = """#!/bin/sh
venv="$WORKON_HOME/$PIPENV_CUSTOM_VENV_NAME"
case "$1" in
  install) echo install >>"$CALLS"; mkdir -p "$venv/bin"
           ln -sf "$REAL_PYTHON" "$venv/bin/python" ;;
esac
"""


def test_the_bake_message_prints_every_source_s_warehouse_entry(
    cookies: Cookies, capfd: pytest.CaptureFixture[str]
) -> None:
    answers = {"extra_sources": {"cerner": "csv"}}
    result = cookies.bake(extra_context=answers, template=INGEST_TEMPLATE_DIR)
    assert result.exit_code == 0, result.exception
    printed = capfd.readouterr().out  # the post-generation hook's message
    entries = [json.loads(line.split("'")[1]) for line in printed.splitlines() if "--add '" in line]
    assert [list(entry) for entry in entries] == [["clinic-cal-epic-ingest"], list(CERNER_ENTRY)]
    assert entries[1] == CERNER_ENTRY  # what regenerate.py prints when the source is added later
    flows = sorted(path.name for path in (result.project_path / "prefect").glob("*-ingest.py"))
    assert flows == ["clinic-cal-cerner-ingest.py", "clinic-cal-epic-ingest.py"]


def test_each_source_loads_into_its_own_table(tmp_path: Path) -> None:
    project = cruft_project(
        template_repo(tmp_path), tmp_path / "p", extra_sources={"cerner": "csv"}
    )
    database = tmp_path / "sink.db"
    cerner = tmp_path / "cerner.csv"
    cerner.write_text("mrn,visit\n000123,2026-11-02\n")
    env = {
        **os.environ,
        SINK_SETTING: f"sqlite:///{database}",
        "CLINIC_CAL_EPIC_SOURCE_FILE": str(project / "data/sample.xlsx"),
        "CLINIC_CAL_CERNER_SOURCE_FILE": str(cerner),
    }
    for argv in (["ingest.py"], ["ingest.py", "epic"], ["ingest.py", "cerner"]):
        result = run([sys.executable, *argv], cwd=project, env=env)
        assert result.returncode == 0, result.stderr
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT count(*) FROM clinic_cal_epic").fetchone() == (20,)
        assert connection.execute("SELECT mrn FROM clinic_cal_cerner").fetchall() == [("000123",)]
    bad = run([sys.executable, "ingest.py", "cerner;drop"], cwd=project, env=env)
    assert bad.returncode == 65
    assert bad.stderr == (
        "error: source 'cerner;drop' is not a source name (lowercase words joined by -)\n"
    )


def sync_env(tmp_path: Path) -> dict[str, str]:
    """Run with only the tools a laptop without GNU tools has (no flock(1) or sha256sum)."""
    fake_bin = portable_bin(tmp_path / "fake-bin")
    (fake_bin / "pipenv").write_text(FAKE_PIPENV)
    (fake_bin / "pipenv").chmod(0o755)
    return {
        **os.environ,
        "PATH": str(fake_bin),
        "WORKON_HOME": str(tmp_path / "venvs"),
        "PIPENV_CUSTOM_VENV_NAME": "prefect-clinic-cal",
        "CALLS": str(tmp_path / "calls"),
        "REAL_PYTHON": sys.executable,
    }


def load(name: str, seconds: float) -> list[str]:
    """A stand-in load: records its start and end around a pause."""
    return [
        "bash",
        "-c",
        f'echo {name}-start >>"$CALLS"; sleep {seconds}; echo {name}-end >>"$CALLS"',
    ]


def wait_for_line(path: Path, line: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and line in path.read_text().split()):
        assert time.monotonic() < deadline, f"{line} never written"
        time.sleep(0.05)


def test_a_second_source_s_load_does_not_wait_for_a_running_one(
    tmp_path: Path, cookies: Cookies
) -> None:
    project = baked(
        cookies.bake(extra_context={"dependency_manager": "pipenv"}, template=INGEST_TEMPLATE_DIR)
    )
    env = sync_env(tmp_path)
    calls = tmp_path / "calls"
    subprocess.run(["prefect/sync-venv.sh"], cwd=project, env=env, check=True, timeout=60)
    epic = subprocess.Popen(["prefect/sync-venv.sh", *load("epic", 5)], cwd=project, env=env)
    wait_for_line(calls, "epic-start")
    cerner = subprocess.run(
        ["prefect/sync-venv.sh", *load("cerner", 0)], cwd=project, env=env, timeout=4
    )
    assert epic.wait(timeout=30) == 0 and cerner.returncode == 0
    assert calls.read_text().split() == [
        "install",
        "epic-start",
        "cerner-start",
        "cerner-end",
        "epic-end",
    ]


def test_an_install_waits_for_running_loads(tmp_path: Path, cookies: Cookies) -> None:
    project = baked(
        cookies.bake(extra_context={"dependency_manager": "pipenv"}, template=INGEST_TEMPLATE_DIR)
    )
    env = sync_env(tmp_path)
    calls = tmp_path / "calls"
    subprocess.run(["prefect/sync-venv.sh"], cwd=project, env=env, check=True, timeout=60)
    epic = subprocess.Popen(["prefect/sync-venv.sh", *load("epic", 2)], cwd=project, env=env)
    wait_for_line(calls, "epic-start")
    with (project / "Pipfile").open("a") as pipfile:  # a dependency change: the venv is stale
        pipfile.write("\n# changed\n")
    cerner = subprocess.run(
        ["prefect/sync-venv.sh", *load("cerner", 0)], cwd=project, env=env, timeout=30
    )
    assert epic.wait(timeout=30) == 0 and cerner.returncode == 0
    assert calls.read_text().split() == [
        "install",
        "epic-start",
        "epic-end",
        "install",
        "cerner-start",
        "cerner-end",
    ]
