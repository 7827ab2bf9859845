"""One production-like site for the end-to-end tests: ingest projects in bare git repos, a warehouse
deployed to the live Prefect server, and workers started from the warehouse's systemd unit."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from prh_ingest import naming

from support.baking import bake_ingest_project, table_count
from support.commands import run_python
from support.flow_runs import PrefectApi, run_deployment
from support.git import bare_repo
from support.processes import ManagedProcess, ProcessPool
from support.services import PostgresServer, PrefectServer, S3Server
from support.systemd import StopReport, Unit, command_line, read_env_file, systemctl_stop
from support.warehouse import UNIT, bake_warehouse

POOL = "ingest"
TIMEZONE = "America/New_York"  # has DST, so a wrong zone shows in the scheduled times
CRON = "0 6 * * *"
WORKER_VENV = f"/opt/prefect-worker-{POOL}/venv"  # the unit's path; here: this test venv
S3_BUCKET = "prh-landing"
# A second deployment of IMAGING's flow with a local source and its own sink and slot: its
# run is SIGKILLed with its worker when the site is built, and the zombie automation must
# crash it while the other tests run.
HARD_KILL = "imaging-pacs-ingest-hard-kill"
ZOMBIE_AUTOMATION = "crash-zombie-flow-runs"  # created by prw_deploy.py
# A second deployment of LAB_RESULTS' flow (baked with database=postgresql, so its uv
# environment has psycopg) whose sink is the test PostgreSQL server.
POSTGRES_DEPLOYMENT = "lab-results-lims-ingest-postgresql"


SAVE_S3_BLOCKS = """
import json, sys
from prefect_aws import AwsCredentials, S3Bucket
from prefect_aws.client_parameters import AwsClientParameters

a = json.loads(sys.argv[1])
credentials = AwsCredentials(
    aws_access_key_id=a["key"], aws_secret_access_key=a["secret"], region_name=a["region"],
    aws_client_parameters=AwsClientParameters(endpoint_url=a["endpoint"]),
)
credentials.save(a["credentials_block"], overwrite=True)
bucket = S3Bucket(bucket_name=a["bucket"], credentials=AwsCredentials.load(a["credentials_block"]))
bucket.save(a["bucket_block"], overwrite=True)
"""


@dataclass(frozen=True)
class Project:
    """One ingest project as the e2e site uses it: bake answers and where its data goes."""

    answers: dict[str, object]
    slug: str
    source_name: str

    @property
    def flow(self) -> str:
        return naming.flow_name(self.slug, self.source_name)

    @property
    def deployment(self) -> str:
        """`<flow>/<deployment>`; the warehouse names each deployment after its flow."""
        return f"{self.flow}/{self.flow}"

    @property
    def table(self) -> str:
        return naming.table_name(self.slug, self.source_name)

    @property
    def source_setting(self) -> str:
        return naming.source_setting(self.slug, self.source_name)

    @property
    def sink_setting(self) -> str:
        return naming.sink_setting(self.slug)


def project(slug: str, source_name: str, **answers: object) -> Project:
    title = slug.replace("-", " ").title()
    return Project(
        {"project_name": title, "source_name": source_name, **answers}, slug, source_name
    )


# The three dependency modes; csv and xlsx; local file and S3.
CLINIC_CAL = project("clinic-cal", "epic", dependency_manager="pipenv", source_format="xlsx")
LAB_RESULTS = project(
    "lab-results", "lims", dependency_manager="uv", source_format="csv", database="postgresql"
)
IMAGING = project("imaging", "pacs", dependency_manager="none", source_format="csv", use_s3=True)
PROJECTS = (CLINIC_CAL, LAB_RESULTS, IMAGING)


@dataclass
class Layout:
    """Where the site keeps landing files, sinks and the shared venvs (all under *root*)."""

    root: Path

    def landing(self, project: Project) -> Path:
        suffix = project.answers["source_format"]
        return self.root / "landing" / project.slug / f"{project.source_name}.{suffix}"

    def sample(self, project: Project) -> Path:
        """The sample file the baked project ships."""
        return (
            self.root
            / "projects"
            / project.slug
            / "data"
            / self.landing(project).name.replace(project.source_name, "sample")
        )

    def sink(self, project: Project) -> Path:
        return self.root / "sink" / f"{project.slug}.db"

    def hard_kill_sink(self) -> Path:
        return self.root / "sink" / "hard-kill.db"

    def rows(self, project: Project) -> int:
        """Rows in the project's sink table (0 before the first load created it)."""
        try:
            return table_count(self.sink(project), project.table)
        except sqlite3.OperationalError:  # no such table
            return 0

    def pipenv_home(self) -> Path:
        return self.root / "venvs" / "pipenv"

    def uv_environment(self, project: Project) -> Path:
        return self.root / "venvs" / "uv" / naming.venv_name(project.slug)

    def flow_env(self, project: Project) -> dict[str, str]:
        """The warehouse `env` of one flow: absolute temp paths for source, sink and venvs."""
        source = (
            f"s3://{S3_BUCKET}/{project.source_name}.csv"
            if project.answers.get("use_s3")
            else str(self.landing(project))
        )
        env = {
            project.source_setting: source,
            project.sink_setting: f"sqlite:///{self.sink(project)}",
        }
        if project.answers["dependency_manager"] == "pipenv":
            env["WORKON_HOME"] = str(self.pipenv_home())
        if project.answers["dependency_manager"] == "uv":
            env["UV_PROJECT_ENVIRONMENT"] = str(self.uv_environment(project))
        return env


@contextmanager
def database_busy(database: Path) -> Iterator[None]:
    """Hold the SQLite sink's write lock, as a long transaction of another writer would."""
    database.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(database, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        yield
    finally:
        connection.close()


@dataclass(frozen=True)
class HardKill:
    """A run whose worker was SIGKILLed (with the run) at `killed_at` (time.monotonic())."""

    run_id: str
    killed_at: float
    state_at_kill: str


@dataclass
class Site(Layout):
    """Everything the e2e tests share; workers are started and stopped through it."""

    server: PrefectServer
    api: PrefectApi
    warehouse: Path
    unit: Unit
    env_file: Path
    pool: ProcessPool
    workers: dict[str, ManagedProcess]
    hard_kill: HardKill = HardKill("", 0.0, "")  # set by build_site
    postgres_database: str = ""  # POSTGRES_DEPLOYMENT's sink on the test server

    def worker_env(self) -> dict[str, str]:
        """The unit's EnvironmentFile= and Environment= on top of the server's client env
        (isolated PREFECT_HOME, fast polling); HOME is the worker user's home."""
        env = self.server.env
        env.update(read_env_file(self.env_file))
        for name, value in self.unit.environment().items():
            env[name] = value.replace(WORKER_VENV, sys.prefix)
        env["HOME"] = str(self.root / "worker-home")
        return env

    def start_worker(self, host: str = "vm1") -> ManagedProcess:
        """The unit's ExecStart= as systemd would run it on host *host*."""
        env = self.worker_env()
        exec_start = self.unit.one("ExecStart").replace(WORKER_VENV, sys.prefix)
        argv = command_line(exec_start, env, {"H": host})
        home = Path(env["HOME"])
        home.mkdir(exist_ok=True)
        worker = self.pool.start(argv, env=env, name=f"worker-{host}", cwd=home)
        worker.wait_for_log("started!", timeout=60)
        self.workers[host] = worker
        return worker

    def worker(self, host: str = "vm1") -> ManagedProcess:
        """The running worker on *host*, started if there is none."""
        running = self.workers.get(host)
        return running if running and running.alive() else self.start_worker(host)

    def stop_worker(self, host: str = "vm1") -> StopReport:
        """`systemctl stop` as the unit defines it."""
        return systemctl_stop(self.unit, self.workers.pop(host), self.worker_env(), {"H": host})

    def run(self, project: Project) -> str:
        return run_deployment(project.deployment, self.server.env)

    def kill_mid_run(self) -> HardKill:
        """Power loss on host vm0 during a run of HARD_KILL, once the run has sent a heartbeat
        (the zombie automation only watches runs that have). The run's sink is busy, so its
        load waits for the lock: it is still Running when the power goes."""
        with database_busy(self.hard_kill_sink()):
            worker = self.start_worker("vm0")
            run_id = run_deployment(f"{IMAGING.flow}/{HARD_KILL}", self.server.env)
            self.api.wait_for(run_id, {"RUNNING"}, timeout=120)
            self.api.wait_for_event(
                "prefect.flow-run.heartbeat", f"prefect.flow-run.{run_id}", timeout=60
            )
            worker.kill_tree()
            state = self.api.flow_run(run_id)["state_type"]
        del self.workers["vm0"]
        return HardKill(run_id, time.monotonic(), state)

    def save_s3_blocks(self, project: Project, s3: S3Server) -> None:
        """The blocks the project's README has you create once, pointed at the S3 server."""
        answers = {
            "endpoint": s3.endpoint_url,
            "key": s3.access_key_id,
            "secret": s3.secret_access_key,
            "region": s3.region,
            "bucket": S3_BUCKET,
            "credentials_block": f"{project.slug}-aws",
            "bucket_block": f"{project.slug}-landing",
        }
        saved = subprocess.run(
            [sys.executable, "-c", SAVE_S3_BLOCKS, json.dumps(answers)],
            env=self.server.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert saved.returncode == 0, saved.stderr


def install_worker(warehouse: Path, root: Path, limit: int = 1) -> tuple[Unit, Path]:
    """The warehouse's own installer in dry-run mode writes the unit, its drop-in and the
    env file under *root*; *limit* flow runs at once per worker (WORKER_LIMIT)."""
    result = subprocess.run(
        ["bash", "scripts/install-worker.sh", "--dry-run", str(root)],
        cwd=warehouse,
        env={"PATH": "/usr/bin:/bin", "WORKER_LIMIT": str(limit)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    unit = Unit.read(root / "etc/systemd/system" / UNIT)
    return unit, root / "etc/prefect-worker" / f"{POOL}.env"


def deployed_site(root: Path, server: PrefectServer, flows: dict, limit: int = 2) -> Site:
    """A small site of a test's own under *root*: a warehouse of *flows* deployed to *server*
    and its worker unit (WORKER_LIMIT *limit*), the worker not started yet."""
    warehouse = bake_warehouse(
        root / "warehouse", flows=flows, work_pool=POOL, prefect_api_url=server.api_url
    )
    deployed = run_python(["prefect/prw_deploy.py"], warehouse, server.env)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    unit, env_file = install_worker(warehouse, root / "vm", limit=limit)
    api = PrefectApi(server.api_url)
    return Site(root, server, api, warehouse, unit, env_file, ProcessPool(root / "logs"), {})


def build_site(root: Path, server: PrefectServer, postgres: PostgresServer) -> Site:
    repos, projects, layout = root / "git", root / "projects", Layout(root)
    repos.mkdir()
    flows = {}
    for spec in PROJECTS:
        bare = repos / f"{spec.slug}.git"
        baked = bake_ingest_project(projects, **spec.answers, git_repo_url=str(bare))
        assert baked.name == spec.slug
        bare_repo(baked, repos)
        layout.landing(spec).parent.mkdir(parents=True)
        shutil.copy(layout.sample(spec), layout.landing(spec))
        flows[spec.flow] = {
            "repo": str(bare),
            "entrypoint": naming.flow_entrypoint(spec.flow),
            "cron": CRON,
            "env": layout.flow_env(spec),
        }
    flows[HARD_KILL] = {
        **flows[IMAGING.flow],
        "env": {
            IMAGING.source_setting: str(layout.landing(IMAGING)),
            IMAGING.sink_setting: f"sqlite:///{layout.hard_kill_sink()}",
        },
    }
    postgres_database = postgres.create_database("e2e")
    flows[POSTGRES_DEPLOYMENT] = {
        **flows[LAB_RESULTS.flow],
        "env": {
            **layout.flow_env(LAB_RESULTS),
            LAB_RESULTS.sink_setting: postgres.url(postgres_database),
        },
    }
    (root / "sink").mkdir()
    warehouse = bake_warehouse(
        root / "warehouse",
        flows=flows,
        timezone=TIMEZONE,
        work_pool=POOL,
        prefect_api_url=server.api_url,
    )
    deployed = run_python(["prefect/prw_deploy.py"], warehouse, server.env)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    unit, env_file = install_worker(warehouse, root / "vm")
    api = PrefectApi(server.api_url)
    site = Site(root, server, api, warehouse, unit, env_file, ProcessPool(root / "logs"), {})
    site.postgres_database = postgres_database
    site.hard_kill = site.kill_mid_run()
    return site


@pytest.fixture(scope="session")
def site(
    prefect_server: PrefectServer,
    postgres_server: PostgresServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Site]:
    built = build_site(tmp_path_factory.mktemp("e2e"), prefect_server, postgres_server)
    try:
        yield built
    finally:
        built.pool.stop_all()
