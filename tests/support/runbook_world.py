"""The runbook world the migration starts from, built for real on Prefect 2.10.15: its server,
the `ingest` process pool, clinic-cal and prh-dash (its legacy flow name, S3 off) deployed
with 2.10's own API and a cron schedule each, a worker started by hand, one completed run per
deployment, and prh-dash's schedule paused by the team before the migration began (it must
stay paused to the end)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from prh_ingest import naming

from support import prefect2
from support.commands import REPO_DIR
from support.flow_runs import TERMINAL, PrefectApi
from support.processes import ManagedProcess, ProcessPool, free_port
from support.runbook import clinic_cal, prh_dash
from support.services import offline_env

SAMPLE = REPO_DIR / "{{cookiecutter.project_slug}}" / "data" / "sample.xlsx"


@dataclass(frozen=True)
class RunbookProject:
    slug: str
    flow: str
    source_setting: str
    cron: str
    answers: dict

    @property
    def deployment(self) -> str:
        """The runbook named each deployment after its flow: `<flow>/<deployment>`."""
        return f"{self.flow}/{self.flow}"

    @property
    def sink_setting(self) -> str:
        return naming.sink_setting(self.slug)

    @property
    def flow_file(self) -> str:
        return f"prefect/{self.flow}.py"


CLINIC_CAL = RunbookProject(
    "clinic-cal",
    "clinic-cal-epic-ingest",
    "CLINIC_CAL_EPIC_SOURCE_FILE",
    "0 6 * * *",
    {"project_name": "Clinic Cal", "source_name": "epic"},
)
PRH_DASH = RunbookProject(
    "prh-dash",
    "prh-dash-ingest",
    "PRH_DASH_REDCAP_SOURCE_FILE",
    "30 5 * * 1-5",
    {
        "project_name": "PRH Dash",
        "source_name": "redcap",
        "legacy_flow_name": "prh-dash-ingest",
        "use_s3": False,
    },
)
PROJECTS = (CLINIC_CAL, PRH_DASH)
PAUSED_BY_THE_TEAM = PRH_DASH  # paused before the migration: stays paused


@dataclass
class World:
    root: Path
    venv: Path  # Prefect 2.10.15
    port: int
    database_url: str | None  # None: SQLite at $PREFECT_HOME/prefect.db
    stack: ExitStack
    pool: ProcessPool
    server: prefect2.Server | None = None
    worker: ManagedProcess | None = None
    deployment_ids: dict[str, str] = field(default_factory=dict)
    run_ids: dict[str, list[str]] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def server_home(self) -> Path:
        return self.root / "server-home"

    @property
    def api(self) -> PrefectApi:
        return PrefectApi(self.api_url)

    def client_env(self, major: int) -> dict[str, str]:
        """A shell of the team's: PREFECT_API_URL set, Prefect *major* first on PATH."""
        env = offline_env(self.root / f"client-home-{major}")
        env.update(prefect2.WORKER_SETTINGS_2, PREFECT_API_URL=self.api_url)
        env["HOME"] = str(self.root / "home")
        return prefect2.prefect2_env(self.venv, env) if major == 2 else env

    def project_dir(self, project: RunbookProject) -> Path:
        return self.root / "projects" / project.slug

    def landing(self, project: RunbookProject) -> Path:
        return self.root / "landing" / project.slug / "export.xlsx"

    def sink(self, project: RunbookProject) -> Path:
        return self.root / "sink" / f"{project.slug}.db"

    def pipenv_home(self) -> Path:
        return self.root / "venvs"

    def run_env(self, project: RunbookProject) -> dict[str, str]:
        """What the runbook deployment's infrastructure env set: this machine's paths."""
        return {
            project.source_setting: str(self.landing(project)),
            project.sink_setting: f"sqlite:///{self.sink(project)}",
            "WORKON_HOME": str(self.pipenv_home()),
            "PIPENV_CUSTOM_VENV_NAME": naming.venv_name(project.slug),
        }

    def start_server(self, major: int) -> prefect2.Server:
        prefect = self.venv / "bin/prefect" if major == 2 else prefect2.BIN / "prefect"
        self.server = self.stack.enter_context(
            prefect2.running_server(prefect, self.server_home, self.port, major, self.database_url)
        )
        return self.server

    def stop_server(self) -> None:
        assert self.server is not None
        self.server.process.stop()
        self.server = None

    def start_worker(self, major: int) -> ManagedProcess:
        home = self.root / "home"
        home.mkdir(exist_ok=True)
        argv = ["prefect", "worker", "start", "--pool", prefect2.POOL]
        env = self.client_env(major)
        argv[0] = shutil.which("prefect", path=env["PATH"]) or "prefect"
        self.worker = self.pool.start(argv, env=env, name=f"worker-{major}", cwd=home)
        self.worker.wait_for_log("started!", timeout=90)
        return self.worker

    def prefect(self, major: int, *args: str) -> subprocess.CompletedProcess[str]:
        env = self.client_env(major)
        return subprocess.run(
            ["prefect", *args], env=env, capture_output=True, text=True, timeout=120
        )

    def wait_for(self, run_id: str, timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.api.flow_run(run_id)["state_type"]
            if state in TERMINAL:
                return state
            time.sleep(1)
        raise TimeoutError(f"flow run {run_id} not finished in {timeout:.0f}s")


def run_by_hand(world: World, project: RunbookProject, major: int) -> str:
    """`prefect deployment run <flow>/<deployment>`; returns the new run's id."""
    result = world.prefect(major, "deployment", "run", project.deployment)
    assert result.returncode == 0, result.stdout + result.stderr
    for line in result.stdout.splitlines():
        if "UUID:" in line:
            return line.split("UUID:")[1].strip()
    raise AssertionError(f"no run id in:\n{result.stdout}")


def build(world: World) -> None:
    """The 2.10 world (see the module docstring)."""
    world.start_server(2)
    created = world.prefect(2, "work-pool", "create", prefect2.POOL, "--type", "process")
    assert created.returncode == 0, created.stdout + created.stderr
    projects = world.root / "projects"
    made = {"clinic-cal": clinic_cal(projects), "prh-dash": prh_dash(projects, s3=False)}
    (world.root / "sink").mkdir()
    for project in PROJECTS:
        assert made[project.slug] == world.project_dir(project)
        world.landing(project).parent.mkdir(parents=True)
        shutil.copy(SAMPLE, world.landing(project))
        world.deployment_ids[project.deployment] = prefect2.deploy_with_prefect2(
            world.venv,
            world.project_dir(project),
            project.flow_file,
            naming.flow_function(project.flow),
            project.flow,
            project.cron,
            world.run_env(project),
            world.client_env(2),
        )
    world.start_worker(2)
    for project in PROJECTS:
        run_id = run_by_hand(world, project, 2)
        assert world.wait_for(run_id) == "COMPLETED", world.worker.describe(60)
        world.run_ids[project.deployment] = [run_id]
    paused = world.prefect(2, "deployment", "pause-schedule", PAUSED_BY_THE_TEAM.deployment)
    assert paused.returncode == 0, paused.stdout + paused.stderr


@contextmanager
def runbook_world(root: Path, database_url: str | None = None) -> Iterator[World]:
    """The world of the module docstring; every process stopped at the end, also on failure."""
    with ExitStack() as stack:
        pool = ProcessPool(root / "logs")
        stack.callback(pool.stop_all)
        world = World(root, prefect2.prefect2_venv(), free_port(), database_url, stack, pool)
        build(world)
        yield world
