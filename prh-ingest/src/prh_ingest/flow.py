"""What every source's flow does: each project's `prefect/<flow>.py` names its project and
source and calls `load_source`.

A flow runs the project's `ingest.py <source>` in one shell step (prefect-shell's
ShellOperation), the way the team's runbook does, but fail-fast and from the project folder
whatever the current directory. Settings come from `prefect/.env`; variables already in the
environment win, so a worker's environment or a deployment's `env` overrides the file. The
file a setting names is fetched, when it has to be, by the project's `prefect/source_file.py`.
With pipenv or uv all of a project's flows share its one venv: the dependency step installs
under an exclusive lock, and each ingest runs under a shared one, so two sources load side by
side.

Each load shows in the Prefect UI: ingest.py prints a JSON summary line, and the flow turns it
into a table artifact keyed `<slug>-<source>-loads` (the Artifacts page keeps that source's
history); a failed load's one-line error becomes a markdown artifact
(`<slug>-<source>-load-failures`).

This module runs in the flow's process (the worker's, or the developer's for a local run): it
needs prefect, prefect-shell and python-dotenv, never SQLAlchemy or a database driver (the
load itself runs in the shell step, on the project's own dependencies).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values
from prefect import Flow, Task, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from prefect_shell import ShellOperation

from prh_ingest import freshness, naming
from prh_ingest.load import BAD_INPUT_EXIT_CODE, CANNOT_START_EXIT_CODE, SHORT_LOAD_EXIT_CODE
from prh_ingest.load.summary import SUMMARY_KIND

# Failures a retry cannot fix: ingest.py cannot start (69: a module missing), bash cannot
# run a command (126) or find it (127).
CANNOT_START_EXIT_CODES = (CANNOT_START_EXIT_CODE, 126, 127)
SUMMARY_COLUMNS = (
    "file",
    "size_bytes",
    "sha256",
    "rows",
    "table",
    "mode",
    "columns_added",
    "same_as_load",  # a re-send of bytes already loaded: unchanged
    "row_check",  # ok, short-warn (landed) or short-refuse
    "usual_rows",
    "rejected_rows",
    "seconds",
)
# prefect/source_file.py's local_source_file(flow_name, setting_name, path, setting): the
# file to load, on this machine, for the while of the load.
SourceFile = Callable[[str, str, str, Callable[[str], str]], AbstractContextManager[str]]


@dataclass(frozen=True)
class Project:
    """What a flow needs to know of its project."""

    slug: str
    folder: Path  # the project's folder (the flow file's parent's parent)
    # The shell step's command before the source, as the project's dependency manager runs
    # ingest.py: with pipenv or uv, prefect/sync-venv.sh first brings the project's one shared
    # venv up to date (under a lock); `{python}` stands for the interpreter running the flow.
    ingest_command: str

    @property
    def settings_file(self) -> Path:
        return self.folder / "prefect" / ".env"


def source_setting(project: Project, source: str) -> str:
    """`epic` -> `<PREFIX>_EPIC_SOURCE_FILE` (the naming contract)."""
    return naming.source_setting(project.slug, source)


def ingest_commands(project: Project, source: str) -> list[str]:
    """One bash script. ShellOperation adds no `set -e`, so the first line makes any failing
    command fail the run; the second runs the ingest as the project's dependency manager does."""
    command = project.ingest_command.replace("{python}", shlex.quote(sys.executable))
    return ["set -euo pipefail", f"{command} {source}"]


class BadSourceFile(RuntimeError):
    """ingest.py rejected the source file: retrying would not help."""


class ShortLoadRefused(BadSourceFile):
    """ingest.py's row check refused a short load (exit 66): the flow's `accept_short_load`
    parameter lets it land on a new run."""


class CannotStart(RuntimeError):
    """ingest.py could not start (e.g. a module is missing): retrying would not help."""


def load_settings(project: Project) -> dict[str, str]:
    """Settings from prefect/.env that the environment does not already set."""
    from_file = dotenv_values(project.settings_file)
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


def uses_template_loader(project: Project) -> bool:
    """False when ingest.py is the project's own (scripts/adopt.py lists it in .cruft.json's
    skip): then its settings are its own, and the template's sink setting is not required."""
    try:
        skip = json.loads((project.folder / ".cruft.json").read_text()).get("skip", [])
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
def run_ingest(project: Project, source: str, path: str, env: dict[str, str]) -> None:
    """Run the dependency step and `ingest.py <source>` on `path` as one fail-fast shell script."""
    env = {**env, source_setting(project, source): path}
    commands = ingest_commands(project, source)
    with ShellOperation(commands=commands, env=env, working_dir=project.folder) as shell:
        process = shell.trigger()
        try:
            process.wait_for_completion()
        except RuntimeError:
            show_load(project, source, load_summary(process.fetch_result()), process.return_code)
            if process.return_code == SHORT_LOAD_EXIT_CODE:
                raise ShortLoadRefused(
                    "ingest.py refused a short load: see the run's load-failures artifact; "
                    "run the flow with accept_short_load=true to accept it"
                ) from None
            if process.return_code == BAD_INPUT_EXIT_CODE:
                rejected = f"{source_setting(project, source)}={path}"
                raise BadSourceFile(f"ingest.py rejected {rejected}") from None
            if process.return_code in CANNOT_START_EXIT_CODES:
                code = process.return_code
                raise CannotStart(f"ingest.py could not start (exit {code})") from None
            raise
        summary = load_summary(process.fetch_result())
        show_load(project, source, summary, process.return_code)
    emitted = freshness.emit_load_events(project.slug, source, summary)
    if emitted:
        get_run_logger().info("Emitted %s", ", ".join(emitted))


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


def show_load(project: Project, source: str, summary: dict | None, return_code: int | None) -> None:
    """The load as an artifact of this run: a table row, or the failure's one line."""
    if summary is not None and summary.get("ok"):
        row = {name: summary.get(name) for name in SUMMARY_COLUMNS}
        row["columns_added"] = ", ".join(row["columns_added"] or []) or "none"
        row["same_as_load"] = (
            "new data" if row["same_as_load"] is None else f"unchanged: load {row['same_as_load']}"
        )
        key = naming.loads_artifact_key(project.slug, source)
        create_table_artifact([row], key=key, description=f"{source} load")
        return
    if summary is None and return_code == 0:
        return  # the project's own ingest.py (scripts/adopt.py kept it) prints no summary
    before = f"ingest.py exited {return_code} before loading: see the run's logs"
    error = summary["error"] if summary else before
    markdown = f"**{source} load failed** (exit {return_code})\n\n    error: {error}\n"
    key = naming.load_failures_artifact_key(project.slug, source)
    create_markdown_artifact(markdown, key=key, description=f"{source} load failed")


def load_source(
    project: Project,
    flow_name: str,
    source: str,
    source_file: SourceFile,
    accept_short_load: bool = False,
) -> None:
    """The body of every source's flow: load the file its setting names into the sink.
    *accept_short_load* (the flow's parameter, for one run) lets a short load the row check
    would refuse land."""
    logger = get_run_logger()
    settings = load_settings(project)
    setting_name = source_setting(project, source)
    path = setting(settings, setting_name)
    if uses_template_loader(project):
        setting(settings, naming.sink_setting(project.slug))  # fail before any work when unset
    logger.info("Loading %s=%s", setting_name, path)
    named = lambda name: setting(settings, name)  # noqa: E731
    if accept_short_load:
        settings = {**settings, naming.accept_short_load_setting(project.slug, source): "1"}
        logger.info("Accepting a short load for this run (accept_short_load)")
    with source_file(flow_name, setting_name, path, named) as local_path:
        run_ingest(project, source, local_path, settings)


def run_as_script(flow: Flow) -> int:
    """`python prefect/<flow>.py`: run the flow once; exit 0 when it completed."""
    state = flow(return_state=True)
    return 0 if state.is_completed() else 1
