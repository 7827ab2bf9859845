"""MIGRATING.md, run as written on a real Prefect 2.10 world (support.runbook_world), once on
SQLite and once on PostgreSQL: every fenced command, its placeholders filled, and every
step's Verify line asserted. The steps depend on each other, so each database kind is one
test that walks the document from step 0 to the new-VM section.

Not run here, on a shared machine without a booted systemd (tests/systemd boots one for the
units): the blocks tagged `systemd` (sudo, systemctl, `sudo scripts/install-worker.sh`, which
the test replaces by the installer's own --dry-run and the unit's ExecStart=), and the
`pip install` of step 3, for which the test switches to this repo's Prefect 3.9.1 venv."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import package, prefect2
from support.commands import BIN, REPO_DIR, tool_env
from support.flow_runs import PrefectApi
from support.git import commit_all, git, head
from support.migrating_doc import Step, fill, read_steps, stop_on_failure
from support.prefect2 import running_server, server_env
from support.processes import free_port
from support.regeneration import template_repo
from support.runbook_world import (
    CLINIC_CAL,
    PAUSED_BY_THE_TEAM,
    PRH_DASH,
    PROJECTS,
    World,
    runbook_world,
)
from support.services import PG_BIN, PostgresServer
from support.site import install_worker
from support.systemd import Unit, command_line, read_env_file

pytestmark = [pytest.mark.migration, pytest.mark.network, pytest.mark.timeout(3600)]

STEPS = read_steps()
NOT_RUN = {  # step -> tags of the blocks the test cannot run here (module docstring)
    "2": {frozenset({"systemd"})},
    "5": {frozenset({"systemd"})},
}
WORKER_VENV = "/opt/prefect-worker-ingest/venv"
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
}


def bash(script: str, cwd: Path, env: dict[str, str], timeout: float = 900):
    """One fenced block (or Verify command) as the reader's shell runs it; fails at the first
    command line that fails (stop_on_failure: also the first command of an `a && b`)."""
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", stop_on_failure(script)],
        cwd=cwd,
        env={**env, **GIT_IDENTITY},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, (
        f"{script}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    return result.stdout


def verify(step: Step, start: str, cwd: Path, env: dict[str, str], values=None, each=None):
    """Run the step's Verify commands that start with *start*; their output, joined."""
    commands = step.verify_commands(start)
    assert commands, f"step {step.key} has no Verify command starting {start!r}"
    return "\n".join(
        bash(fill([command], values or {}, each or {}), cwd, env) for command in commands
    )


def test_every_block_is_run_or_named_as_not_run() -> None:
    """The document's shape the migration test relies on: numbered steps 0 to 8, each with
    a Verify line, and only the steps NOT_RUN names hold systemd blocks."""
    assert [key for key in STEPS if key.isdigit()] == [str(n) for n in range(9)]
    for key, step in STEPS.items():
        if key.isdigit():
            assert step.verify_text, f"step {key} has no Verify line"
        systemd = {block.tags for block in step.blocks if "systemd" in block.tags}
        assert systemd == NOT_RUN.get(key, set()), key


def test_a_block_stops_at_its_first_failing_line(tmp_path: Path) -> None:
    """`bash -e` alone would run on after `false && true` and exit 0 with the last line."""
    with pytest.raises(AssertionError, match=r"block line failed \(1\): false && true"):
        bash("false && true   # a failing first command\ntouch after", tmp_path, {})
    assert not (tmp_path / "after").exists()


def shell_env(world: World, major: int) -> dict[str, str]:
    """The reader's shell at a step: Prefect *major* on PATH, the document's two variables."""
    env = {**world.client_env(major), "PREFECT_API_AUTH_STRING": ""}  # this server has none
    return env if major == 2 else tool_env(env)


def step_0_backup(world: World, postgres_url: str | None) -> None:
    step = STEPS["0"]
    env = {
        **server_env(world.server_home, world.database_url, 2),
        "PATH": shell_env(world, 2)["PATH"],
    }
    backups = world.root / "backups"
    backups.mkdir()
    if postgres_url is None:
        bash(fill(step.block("sqlite").lines, {}), backups, env)
        count = verify(step, "sqlite3", backups, env)
    else:
        env["PATH"] = f"{PG_BIN}:{env['PATH']}"  # pg_dump of the server's major
        bash(fill(step.block("postgresql").lines, {"<database url>": postgres_url}), backups, env)
        count = verify(step, "pg_restore", backups, env)
    assert int(count.strip()) > 0


def step_1_pause(world: World) -> list[str]:
    """Returns the deployments this step paused (the team's own pause stays theirs)."""
    step, env = STEPS["1"], shell_env(world, 2)
    names = [project.deployment for project in PROJECTS]
    listing = bash(fill(step.blocks[0].lines, {}, {"<flow>/<deployment>": names}), world.root, env)
    for name in names:
        assert name in listing  # whole names: not cut at 80 columns
    active = [
        name
        for name in names
        if "'is_schedule_active': True" in world.prefect(2, "deployment", "inspect", name).stdout
    ]
    assert active == [p.deployment for p in PROJECTS if p is not PAUSED_BY_THE_TEAM]
    bash(fill(step.blocks[1].lines, {}, {"<flow>/<deployment>": active}), world.root, env)
    shown = verify(step, "prefect", world.root, env, each={"<flow>/<deployment>": names})
    assert shown.count("'is_schedule_active': False") == len(names), shown
    return active


def step_2_stop_worker(world: World) -> None:
    step, env = STEPS["2"], shell_env(world, 2)
    assert world.worker is not None
    pid = str(world.worker.pid)
    found = bash(step.block().lines[0], world.root, env)
    assert re.search(rf"^{pid} ", found, re.MULTILINE), found
    bash(fill(step.block().lines[1:], {"<pid>": pid}), world.root, env)
    world.worker.popen.wait(timeout=10)
    # The machine is shared, so other sessions' workers may show: ours must not.
    left = subprocess.run(
        ["bash", "-c", step.verify_commands("pgrep")[0]], capture_output=True, text=True
    ).stdout
    assert not re.search(rf"^{pid} ", left, re.MULTILINE), left


def step_3_upgrade(world: World) -> None:
    step = STEPS["3"]
    world.stop_server()
    env = {
        **server_env(world.server_home, world.database_url, 3),
        "PATH": shell_env(world, 3)["PATH"],
    }
    bash(fill(step.block().lines, {}), world.root, env, timeout=600)
    world.start_server(3)
    env = shell_env(world, 3)
    assert verify(step, "curl", world.root, env).strip() == '"3.9.1"'
    listed = verify(step, "prefect", world.root, env)
    for project in PROJECTS:
        assert project.flow in listed


def step_4_warehouse(world: World, template: Path) -> Path:
    step, env = STEPS["4"], shell_env(world, 3)
    folder = world.root / "projects"
    values = {
        "<template url>": str(template),
        "<your PREFECT_API_URL>": world.api_url,
        "<clinic-cal git url>": str(world.project_dir(CLINIC_CAL)),
        "<prh-dash git url>": str(world.project_dir(PRH_DASH)),
    }
    bash(fill(step.block().lines, values), folder, env)
    warehouse = folder / "prh-warehouse"
    flows = json.loads((warehouse / "prefect/flows.json").read_text())
    assert sorted(flows) == sorted(project.flow for project in PROJECTS)
    dry_run = verify(step, "python", warehouse, env)
    for project in PROJECTS:
        assert project.flow in dry_run
    return warehouse


def step_5_worker(world: World, warehouse: Path) -> None:
    """install-worker.sh's own dry run writes the unit and env file; the worker starts from
    the unit's ExecStart=, with this VM's settings added to the env file as step 5 says."""
    step, env = STEPS["5"], shell_env(world, 3)
    unit, env_file = install_worker(warehouse, world.root / "vm")
    file_settings = read_env_file(env_file)
    assert file_settings["PREFECT_API_URL"] == world.api_url  # the step 4 answer
    this_vm = {"WORKON_HOME": str(world.pipenv_home())}
    for project in PROJECTS:
        this_vm[project.source_setting] = str(world.landing(project))
        this_vm[project.sink_setting] = f"sqlite:///{world.sink(project)}"
    with env_file.open("a") as settings:
        settings.writelines(f"{name}={value}\n" for name, value in this_vm.items())
    start_worker(world, unit, env_file)
    workers = json.loads(verify(step, "curl", world.root, env))
    online = [worker["name"] for worker in workers if worker["status"] == "ONLINE"]
    assert len(online) == 1 and "vm1" in online[0], workers  # the 2.10 worker is offline


def start_worker(world: World, unit: Unit, env_file: Path) -> None:
    env = world.client_env(3)
    env.update(read_env_file(env_file))
    for name, value in unit.environment().items():
        env[name] = value.replace(WORKER_VENV, sys.prefix)
    env["HOME"] = str(world.root / "worker-home")
    Path(env["HOME"]).mkdir(exist_ok=True)
    argv = command_line(unit.one("ExecStart").replace(WORKER_VENV, sys.prefix), env, {"H": "vm1"})
    world.worker = world.pool.start(argv, env=env, name="worker-3", cwd=Path(env["HOME"]))
    world.worker.wait_for_log("started!", timeout=90)


def step_6_adopt(world: World, template: Path) -> None:
    step = STEPS["6"]
    clone = world.root / "projects" / "prh-ingest-template"
    subprocess.run(["git", "clone", "-q", str(template), str(clone)], check=True)
    env = {**shell_env(world, 3), "WORKON_HOME": str(world.root / "dev-venvs")}
    adopt_clinic_cal, adopt_prh_dash = step.blocks[0], step.blocks[1]
    source = {"<package source>": package.answer()}  # the engine of this checkout, offline
    preview = bash(fill(adopt_clinic_cal.lines[:1], source), clone, env)
    assert "  keep             ingest.py" in preview and "Nothing written." in preview
    for block in (adopt_clinic_cal, adopt_prh_dash):
        linked = bash(fill(block.lines[-1:], source), clone, env)
        assert "prefect/.env: kept your settings" in linked, linked
        assert "Pipfile: added your ingest.py's packages pandas, openpyxl" in linked, linked
        assert "Pipfile: bounded python-dateutil<3.0.0" in linked, linked  # lockable
    for project in PROJECTS:
        folder = world.project_dir(project)
        own_settings = (folder / "prefect/.env").read_text()
        assert "/mnt/landing/" in own_settings  # the production paths, kept
        tested = bash(fill(step.blocks[2].lines, {}), folder, env, timeout=1800)
        summary = re.findall(r"^=+ (.+) in [\d.]+s =+$", tested, re.MULTILINE)
        assert summary and re.fullmatch(r"\d+ passed", summary[-1]), tested  # none failed
        assert git(folder, "status", "--porcelain") == ""
        verify(step, "python", folder, env)  # exits 0
        assert json.loads((folder / ".cruft.json").read_text())["commit"] == head(template)


def step_7_deploy_and_resume(world: World, warehouse: Path, paused_by_step_1: list[str]) -> None:
    step, env = STEPS["7"], shell_env(world, 3)
    deploy, resume = step.block().lines
    bash(deploy, warehouse, env)
    for project in PROJECTS:
        deployment = world.api.deployment(project.deployment)
        assert deployment["id"] == world.deployment_ids[project.deployment]  # updated in place
        assert deployment["paused"] is True, project.deployment  # the deploy unpauses nothing
        assert not any(schedule["active"] for schedule in deployment["schedules"])
        runs = world.api.flow_runs(deployment["id"], ["COMPLETED"])
        assert [run["id"] for run in runs] == world.run_ids[project.deployment]  # history kept
    names = [name.split("/")[1] for name in paused_by_step_1]
    bash(fill([resume], {}, {"<deployment>": names}), warehouse, env)
    for project in PROJECTS:
        shown = verify(
            step, "prefect", warehouse, env, each={"<flow>/<deployment>": [project.deployment]}
        )
        resumed = project.deployment in paused_by_step_1
        assert re.search(rf"│ {resumed} ", shown), shown
        assert world.api.deployment(project.deployment)["paused"] is not resumed


def step_8_run(world: World) -> None:
    """The first run after the resume: completes, the kept ingest.py appends the export's rows
    to its own table (Verify's count), no load artifact, and the old run is still there."""
    step, env = STEPS["8"], shell_env(world, 3)
    count = {"<database file>": str(world.sink(CLINIC_CAL))}
    before = int(verify(step, "sqlite3", world.root, env, count))
    watched = bash(fill(step.block().lines, {}), world.root, env, timeout=1200)
    assert "Completed" in watched.strip().splitlines()[-1], watched
    after = int(verify(step, "sqlite3", world.root, env, count))
    assert after == 2 * before > 0, (before, after)  # the runbook's ingest.py appends
    deployment_id = world.deployment_ids[CLINIC_CAL.deployment]
    runs = world.api.flow_runs(deployment_id, ["COMPLETED"])
    assert [run["id"] for run in runs][:1] == world.run_ids[CLINIC_CAL.deployment]  # kept
    assert len(runs) == 2
    assert world.api.artifacts(runs[-1]["id"]) == []  # no "load failed" for a kept ingest.py


def new_vm_transfer(world: World, warehouse: Path) -> None:
    """The section after step 8: `prefect transfer` from the upgraded server to a new, empty
    3.9.1 server (the pool comes, the deployments do not), then the warehouse's deploy there
    and the pause of the team's paused one. New ids; run history stays on the old server."""
    step = STEPS["Moving to a new server VM"]
    transfer, deploy = step.blocks
    home = world.root / "new-server-home"
    with running_server(BIN / "prefect", home, free_port(), 3) as new:
        env = shell_env(world, 3)
        values = {"<old PREFECT_API_URL>": world.api_url, "<new PREFECT_API_URL>": new.api_url}
        moved = bash(fill(transfer.lines, values), world.root, env, timeout=600)
        assert "Transfer completed" in moved, moved
        target = PrefectApi(new.api_url)
        assert target.get(f"/work_pools/{prefect2.POOL}")["type"] == "process"
        for project in PROJECTS:  # 3.9.1's transfer leaves them out, as the section says
            assert f"deployment/{project.flow}" not in moved, moved
            assert target.post("/deployments/filter", {}) == []
        paused = {"<deployment>": [PAUSED_BY_THE_TEAM.flow]}
        bash(fill(deploy.lines, values, paused), warehouse, env)
        profiles_only = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
        listing = "prefect --profile new-server deployment ls"
        listed = verify(step, listing, world.root, profiles_only)
        for project in PROJECTS:
            assert project.flow in listed, listed
            old = world.api.deployment(project.deployment)
            copy = target.deployment(project.deployment)
            assert copy["id"] != old["id"]  # new ids, as the section says
            kept_paused = project is PAUSED_BY_THE_TEAM
            assert copy["paused"] is kept_paused is old["paused"], project.deployment
            shown = verify(
                step,
                "prefect --profile new-server deployment schedule",
                world.root,
                profiles_only,
                each={"<flow>/<deployment>": [project.deployment]},
            )
            assert re.search(rf"│ {not kept_paused} ", shown), shown
            ran = [run for run in target.flow_runs(copy["id"]) if run["state_type"] != "SCHEDULED"]
            assert ran == []  # the history stays on the old server
            assert world.api.flow_runs(old["id"], ["COMPLETED"])


def this_repository(root: Path) -> Path:
    """The template repository the team clones: both templates, and the scripts
    (adopt.py) MIGRATING.md runs from a clone of it, committed in one git repo."""
    repo = template_repo(root)
    shutil.copytree(
        REPO_DIR / "scripts", repo / "scripts", ignore=shutil.ignore_patterns("__pycache__")
    )
    commit_all(repo, "scripts")
    return repo


def walk_the_document(world: World, postgres_url: str | None) -> None:
    template = this_repository(world.root / "template-origin")
    step_0_backup(world, postgres_url)
    paused_by_step_1 = step_1_pause(world)
    step_2_stop_worker(world)
    step_3_upgrade(world)
    for project in PROJECTS:
        deployment = world.api.deployment(project.deployment)
        assert deployment["id"] == world.deployment_ids[project.deployment]
        assert deployment["paused"] is True
        runs = world.api.flow_runs(deployment["id"], ["COMPLETED"])
        assert [run["id"] for run in runs] == world.run_ids[project.deployment]
    warehouse = step_4_warehouse(world, template)
    step_5_worker(world, warehouse)
    step_6_adopt(world, template)
    step_7_deploy_and_resume(world, warehouse, paused_by_step_1)
    step_8_run(world)
    new_vm_transfer(world, warehouse)


def test_migrating_md_on_sqlite(tmp_path: Path) -> None:
    with runbook_world(tmp_path) as world:
        assert (world.server_home / "prefect.db").exists()
        walk_the_document(world, None)


def test_migrating_md_on_postgresql(tmp_path: Path, postgres_server: PostgresServer) -> None:
    database = postgres_server.create_database("prefect")
    url = postgres_server.url(database).replace("+psycopg", "")
    with runbook_world(tmp_path, url.replace("postgresql:", "postgresql+asyncpg:")) as world:
        walk_the_document(world, url)
