"""Baking ingest projects and running what they contain, for the template tests."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from cookiecutter.main import cookiecutter

from contract import naming
from support.commands import BIN, REPO_DIR, run, tool_env

SAMPLE_ROWS = 20
# The default bake's names, by the naming contract.
SLUG, SOURCE = "clinic-cal", "epic"
FLOW_NAME = naming.flow_name(SLUG, SOURCE)
FLOW_FILE = f"prefect/{FLOW_NAME}.py"
SOURCE_SETTING = naming.source_setting(SLUG, SOURCE)
SINK_SETTING = naming.sink_setting(SLUG)
TABLE = naming.table_name(SLUG, SOURCE)


def bake_ingest_project(output_dir: Path, **answers: object) -> Path:
    """`cookiecutter <repo> --no-input` with *answers*; returns the project folder."""
    return Path(
        cookiecutter(
            str(REPO_DIR), no_input=True, output_dir=str(output_dir), extra_context=answers
        )
    )


def cookiecutter_cli(output_dir: Path, *answers: str) -> subprocess.CompletedProcess[str]:
    """The command a user types: `cookiecutter <repo> --no-input -o DIR key=value ...`."""
    argv = [str(BIN / "cookiecutter"), str(REPO_DIR), "--no-input", "-o", str(output_dir)]
    return run([*argv, *answers], cwd=output_dir.parent)


def unrendered_files(project: Path) -> list[str]:
    """Text files that still hold Jinja markers (scripts/regenerate.py is copied as is)."""
    leftovers = []
    for path in sorted(project.rglob("*")):
        if path.is_file() and path.suffix != ".xlsx" and path.name != "regenerate.py":
            text = path.read_text(encoding="utf-8")
            if "{{" in text or "{%" in text or "cookiecutter." in text:
                leftovers.append(str(path.relative_to(project)))
    return leftovers


def local_run_env(base: Mapping[str, str], project: Path, venvs: Path, database: Path) -> dict:
    """The runbook's local run: the source setting points at the bundled sample; the sink and
    the shared venvs go to the test's folders instead of $HOME."""
    sample = next((project / "data").glob("sample.*"))
    return tool_env(
        {
            **base,
            SOURCE_SETTING: str(sample),
            SINK_SETTING: f"sqlite:///{database}",
            "WORKON_HOME": str(venvs),
            "UV_PROJECT_ENVIRONMENT": str(venvs / naming.venv_name(project.name)),
            "UV_CACHE_DIR": str(venvs.parent / "uv-cache"),
        }
    )


def run_flow_script(project: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """`python prefect/<flow>.py` from the project folder, as the runbook says."""
    return run([sys.executable, FLOW_FILE], cwd=project, env=env)


def table_count(database: Path, table: str = TABLE) -> int:
    with sqlite3.connect(database) as connection:
        return connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608


# What prefect/sync-venv.sh may run (macOS has them all), and what the tests' stand-ins for
# pipenv, uv and a load run. No flock(1), sha256sum or readlink: macOS ships none of them.
SYNC_STEP_TOOLS = ("bash", "cat", "dirname", "grep", "mkdir", "rm", "python3")
STAND_IN_TOOLS = ("sh", "sleep", "ln")


def portable_bin(directory: Path) -> Path:
    """A bin folder with links to only the tools the dependency step may use, to run it
    with `PATH=<folder>` as on a laptop without GNU tools; returns the folder."""
    directory.mkdir(parents=True, exist_ok=True)
    for tool in (*SYNC_STEP_TOOLS, *STAND_IN_TOOLS):
        found = sys.executable if tool == "python3" else shutil.which(tool)
        assert found, f"{tool} is not installed"
        (directory / tool).symlink_to(found)
    return directory
