"""Baking ingest projects and running what they contain, for the template tests."""

from __future__ import annotations

import atexit
import functools
import json
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from prh_ingest import naming
from pytest_cookies.plugin import Cookies, Result

from contract.template import PROJECT_SCRIPTS
from support import package
from support.commands import BIN, REPO_DIR, run, tool_env

SAMPLE_ROWS = 20
# The default bake's names, by the naming contract.
SLUG, SOURCE = "clinic-cal", "epic"
FLOW_NAME = naming.flow_name(SLUG, SOURCE)
FLOW_FILE = f"prefect/{FLOW_NAME}.py"
SOURCE_SETTING = naming.source_setting(SLUG, SOURCE)
SINK_SETTING = naming.sink_setting(SLUG)
TABLE = naming.table_name(SLUG, SOURCE)


INGEST_TEMPLATE_DIR = str(REPO_DIR)  # what cookies.bake(template=...) takes for an ingest project


def baked(result: Result) -> Path:
    """The project folder of a pytest-cookies bake, once it is asserted to have succeeded."""
    assert result.exit_code == 0, result.exception
    assert result.exception is None
    return result.project_path


def write_cookiecutter_config(home: Path) -> Path:
    """A user config in *home* as pytest-cookies' fixtures write one (its own replay and clone
    folders, never the user's) whose default `prh_ingest` answer is the package under test:
    every project a test bakes installs this checkout's engine, never a release."""
    config = {
        "cookiecutters_dir": str(home / "cookiecutters"),
        "replay_dir": str(home / "replay"),
        "default_context": {"prh_ingest": package.answer()},
    }
    path = home / "config.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


@functools.cache
def cookiecutter_config() -> Path:
    """The user config for bakes outside a test's fixtures; removed when the process ends."""
    home = Path(tempfile.mkdtemp(prefix="cookiecutter-user-"))
    atexit.register(shutil.rmtree, home, True)
    return write_cookiecutter_config(home)


def cookies_into(output_dir: Path) -> Cookies:
    """pytest-cookies' baker, baking into *output_dir* itself: for the fixtures and benchmarks
    that choose where a project goes (tests take the `cookies` or `cookies_session` fixture)."""

    def output_factory(_name: str) -> Path:
        output_dir.mkdir(parents=True, exist_ok=True)
        return output_dir

    return Cookies(INGEST_TEMPLATE_DIR, output_factory, cookiecutter_config())


def bake_ingest_project(output_dir: Path, **answers: object) -> Path:
    """An ingest project baked with *answers* into *output_dir*; returns its folder."""
    return baked(cookies_into(output_dir).bake(extra_context=answers, template=INGEST_TEMPLATE_DIR))


def cookiecutter_cli(output_dir: Path, *answers: str) -> subprocess.CompletedProcess[str]:
    """The command a user types: `cookiecutter <repo> --no-input -o DIR key=value ...`."""
    argv = [str(BIN / "cookiecutter"), str(REPO_DIR), "--no-input", "-o", str(output_dir)]
    return run([*argv, *answers], cwd=output_dir.parent)


def unrendered_files(project: Path) -> list[str]:
    """Text files that still hold Jinja markers (the scripts from contract/ are copied as is)."""
    leftovers = []
    for path in sorted(project.rglob("*")):
        copied = str(path.relative_to(project)) in PROJECT_SCRIPTS
        if path.is_file() and path.suffix != ".xlsx" and not copied:
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


# The generated README's worker install, after this sentence (`__worker_install`).
WORKER_INSTALL_INTRO = "The warehouse's installer puts them there"


def readme_worker_install(project: Path) -> str:
    """The shell lines of the baked README's worker-install block, as written."""
    section = (project / "README.md").read_text().split(WORKER_INSTALL_INTRO)[1]
    return section.split("```bash\n")[1].split("```")[0]


def sudo_stand_in(directory: Path, *appended: str) -> Path:
    """A `sudo` for where the tests already run as root and there is none: it runs the command
    as is, with *appended* arguments after it; returns the folder to put first on PATH."""
    directory.mkdir(parents=True, exist_ok=True)
    stand_in = directory / "sudo"
    stand_in.write_text(f'#!/bin/sh\nexec "$@" {shlex.join(appended)}\n')
    stand_in.chmod(0o755)
    return directory
