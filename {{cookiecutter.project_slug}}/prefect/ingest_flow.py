"""What every source's flow does (the template's code): each `prefect/<flow>.py` only names
its source and calls `load_source`.

A flow runs `ingest.py <source>` in one shell step (prefect-shell's ShellOperation), the way
the team's runbook does, but fail-fast and from the project folder whatever the current
directory. Settings come from `prefect/.env`; variables already in the environment win, so a
worker's environment or a deployment's `env` overrides the file. The file a setting names
is fetched, when it has to be, by `prefect/source_file.py`. With pipenv or uv all of the
project's flows share its one venv: the dependency step installs under an exclusive lock, and
each ingest runs under a shared one, so two sources load side by side.

Each load shows in the Prefect UI: ingest.py prints a JSON summary line, and the flow
turns it into a table artifact keyed `<slug>-<source>-loads` (the Artifacts page keeps that
source's history); a failed load's one-line error becomes a markdown artifact
(`<slug>-<source>-load-failures`).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

from dotenv import dotenv_values
from prefect import Flow, Task, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from prefect_shell import ShellOperation
from source_file import local_source_file

PROJECT_DIR = Path(__file__).resolve().parent.parent
SETTINGS_FILE = PROJECT_DIR / "prefect" / ".env"
SETTINGS_PREFIX = "{{ cookiecutter | env_prefix }}"
SINK_SETTING = "{{ cookiecutter | sink_setting }}"
PROJECT_SLUG = "{{ cookiecutter.project_slug }}"
BAD_INPUT_EXIT_CODE = 65  # ingest.py's exit code for a missing, unreadable or malformed source
# Failures a retry cannot fix: ingest.py cannot start (69: a module missing), bash cannot
# run a command (126) or find it (127).
CANNOT_START_EXIT_CODES = (69, 126, 127)
SUMMARY_KIND = "prh-ingest-load"  # ingest.py's JSON summary line
SUMMARY_COLUMNS = ("file", "size_bytes", "sha256", "rows", "table", "mode", "columns_added", "seconds")

# One bash script. ShellOperation adds no `set -e`, so the first line makes any failing
# command fail the run. The second runs the ingest the way this project's dependency manager
# does: with pipenv or uv, prefect/sync-venv.sh first brings the project's one shared venv up
# to date (under a lock); `{python}` stands for the interpreter running this flow.
INGEST_COMMAND = {{ cookiecutter.__ingest_command | tojson }}


def source_setting(source: str) -> str:
    """`epic` -> `<PREFIX>_EPIC_SOURCE_FILE` (the naming contract)."""
    return f"{SETTINGS_PREFIX}_{source.upper().replace('-', '_')}_SOURCE_FILE"


def ingest_commands(source: str) -> list[str]:
    command = INGEST_COMMAND.replace("{python}", shlex.quote(sys.executable))
    return ["set -euo pipefail", f"{command} {source}"]


def loads_artifact_key(source: str) -> str:
    """`epic` -> `<slug>-epic-loads` (the naming contract; lowercase letters, digits, dashes)."""
    return f"{PROJECT_SLUG}-{source}-loads"


class BadSourceFile(RuntimeError):
    """ingest.py rejected the source file: retrying would not help."""


class CannotStart(RuntimeError):
    """ingest.py could not start (e.g. a module is missing): retrying would not help."""


def load_settings() -> dict[str, str]:
    """Settings from prefect/.env that the environment does not already set."""
    from_file = dotenv_values(SETTINGS_FILE)
    return {
        name: value
        for name, value in from_file.items()
        if value is not None and name not in os.environ
    }


def setting(settings: dict[str, str], name: str) -> str:
    value = os.environ.get(name) or settings.get(name)
    if not value:
        raise ValueError(f"{name} is not set: add it to prefect/.env or the environment")
    return value


def uses_template_loader() -> bool:
    """False when ingest.py is the project's own (scripts/adopt.py lists it in .cruft.json's
    skip): then its settings are its own, and the template's sink setting is not required."""
    try:
        skip = json.loads((PROJECT_DIR / ".cruft.json").read_text()).get("skip", [])
    except FileNotFoundError:
        return True
    return "ingest.py" not in skip


def retry_unless_bad_source(task: Task, task_run: TaskRun, state: State) -> bool:
    """Retry a failed ingest unless the source file itself was rejected."""
    try:
        state.result()
    except (BadSourceFile, CannotStart):
        return False
    except Exception:  # any other failure may be transient
        return True
    return False


@task(retries=2, retry_delay_seconds=[30, 120], retry_condition_fn=retry_unless_bad_source)
def run_ingest(source: str, path: str, env: dict[str, str]) -> None:
    """Run the dependency step and `ingest.py <source>` on `path` as one fail-fast shell script."""
    env = {**env, source_setting(source): path}
    commands = ingest_commands(source)
    with ShellOperation(commands=commands, env=env, working_dir=PROJECT_DIR) as shell:
        process = shell.trigger()
        try:
            process.wait_for_completion()
        except RuntimeError:
            show_load(source, load_summary(process.fetch_result()), process.return_code)
            if process.return_code == BAD_INPUT_EXIT_CODE:
                raise BadSourceFile(f"ingest.py rejected {source_setting(source)}={path}") from None
            if process.return_code in CANNOT_START_EXIT_CODES:
                raise CannotStart(f"ingest.py could not start (exit {process.return_code})") from None
            raise
        show_load(source, load_summary(process.fetch_result()), process.return_code)


def load_summary(output: list[str]) -> dict | None:
    """ingest.py's JSON summary line, from the shell step's output (None if it printed none)."""
    for line in reversed(output):
        if line.startswith("{"):
            try:
                summary = json.loads(line)
            except ValueError:
                continue
            if isinstance(summary, dict) and summary.get("summary") == SUMMARY_KIND:
                return summary
    return None


def show_load(source: str, summary: dict | None, return_code: int | None) -> None:
    """The load as an artifact of this run: a table row, or the failure's one line."""
    if summary is not None and summary.get("ok"):
        row = {name: summary.get(name) for name in SUMMARY_COLUMNS}
        row["columns_added"] = ", ".join(row["columns_added"] or []) or "none"
        create_table_artifact([row], key=loads_artifact_key(source), description=f"{source} load")
        return
    if summary is None and return_code == 0:
        return  # the project's own ingest.py (scripts/adopt.py kept it) prints no summary
    error = summary["error"] if summary else f"ingest.py exited {return_code} before loading: see the run's logs"
    markdown = f"**{source} load failed** (exit {return_code})\n\n    error: {error}\n"
    key = f"{PROJECT_SLUG}-{source}-load-failures"
    create_markdown_artifact(markdown, key=key, description=f"{source} load failed")


def load_source(flow_name: str, source: str) -> None:
    """The body of every source's flow: load the file its setting names into the sink."""
    logger = get_run_logger()
    settings = load_settings()
    setting_name = source_setting(source)
    path = setting(settings, setting_name)
    if uses_template_loader():
        setting(settings, SINK_SETTING)  # fail before any work when the sink is not set
    logger.info("Loading %s=%s", setting_name, path)
    with local_source_file(flow_name, setting_name, path, lambda name: setting(settings, name)) as local_path:
        run_ingest(source, local_path, settings)


def run_as_script(flow: Flow) -> int:
    """`python prefect/<flow>.py`: run the flow once; exit 0 when it completed."""
    state = flow(return_state=True)
    return 0 if state.is_completed() else 1
