"""What CI runs and finds: the GitHub workflow runs what .ci/run runs, installing through it
(its package list stays in one place), and PostgreSQL is found, not assumed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from support.commands import REPO_DIR
from support.postgresql import MIN_MAJOR, server_bin

CI_RUN = REPO_DIR / ".ci/run"
WORKFLOW = REPO_DIR / ".github/workflows/ci.yml"
SETUP_ONLY = '[ "${1:-}" = setup ] && exit 0\n'  # .ci/run's line between set-up and checks


def workflow() -> dict:
    (job,) = yaml.safe_load(WORKFLOW.read_text())["jobs"].values()
    return job


def workflow_commands() -> list[str]:
    return [step["run"] for step in workflow()["steps"] if "run" in step]


def ci_run_checks() -> list[str]:
    """The commands .ci/run runs after its set-up, in order."""
    checks = CI_RUN.read_text().split(SETUP_ONLY, 1)[1]
    return [line for line in checks.splitlines() if line.strip() and not line.startswith("#")]


def test_the_workflow_runs_ci_runs_set_up_then_each_of_its_checks() -> None:
    assert ci_run_checks() == [
        "make lint", "make test", "make test-e2e", "make test-systemd", "make test-migration"
    ]
    commands = [command.removeprefix("sudo ") for command in workflow_commands()]
    assert commands == [".ci/run setup", ".ci/run setup", *ci_run_checks()]


def test_the_workflow_installs_as_root_and_boots_systemd_as_root() -> None:
    commands = workflow_commands()
    assert commands[:2] == ["sudo .ci/run setup", ".ci/run setup"]  # apt needs root
    assert "sudo make test-systemd" in commands
    assert not [command for command in commands if "apt" in command]  # .ci/run's list only


def test_the_workflow_has_ci_runs_time_and_python() -> None:
    job = workflow()
    assert job["timeout-minutes"] >= 90  # .ci/run's budget on a clean clone
    uses = [step for step in job["steps"] if "uses" in step]
    (python,) = [step for step in uses if step["uses"].startswith("actions/setup-python")]
    assert python["with"]["python-version"] == "3.11"  # the machine's python3 (Debian 12)


def fake_major(root: Path, major: str, *programs: str) -> Path:
    folder = root / major / "bin"
    folder.mkdir(parents=True)
    for name in programs:
        (folder / name).write_text("#!/bin/sh\n")
    return folder


@pytest.mark.parametrize(
    ("installed", "expected"),
    [
        ({"13": ("initdb", "pg_ctl"), "15": ("initdb", "pg_ctl")}, "15"),
        ({"15": ("initdb", "pg_ctl"), "17": ("initdb", "pg_ctl")}, "17"),
        ({"16": ("initdb", "pg_ctl"), "17": ("psql",)}, "16"),  # a client only: not a server
        ({"13": ("initdb", "pg_ctl")}, None),
        ({}, None),
    ],
    ids=["newest-over-13", "newest-of-two", "client-only-skipped", "only-13", "none"],
)
def test_postgresql_is_the_newest_installed_major_of_14_or_later(
    installed: dict[str, tuple[str, ...]], expected: str | None, tmp_path: Path
) -> None:
    for major, programs in installed.items():
        fake_major(tmp_path, major, *programs)
    found = server_bin(tmp_path, pg_config=None)
    assert found == (tmp_path / expected / "bin" if expected else None)


def test_pg_config_names_postgresql_elsewhere(tmp_path: Path) -> None:
    folder = fake_major(tmp_path / "opt", "18", "initdb", "pg_ctl")
    pg_config = tmp_path / "pg_config"
    pg_config.write_text(f"#!/bin/sh\nprintf 'PostgreSQL 18.1\\n{folder}\\n'\n")
    pg_config.chmod(0o755)
    assert server_bin(tmp_path / "none", pg_config=str(pg_config)) == folder
    fake_major(tmp_path / "debian", str(MIN_MAJOR), "initdb", "pg_ctl")
    assert server_bin(tmp_path / "debian", pg_config=str(pg_config)) == folder  # 18 > 14
