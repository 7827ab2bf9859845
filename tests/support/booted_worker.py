"""The warehouse's worker installed in the booted system as the generated README says,
serving a work pool of the live Prefect server on loopback.

On the host: three ingest projects (pipenv + xlsx, uv + csv, none + xlsx) baked and pushed
to bare git repos, a warehouse baked with their flows and deployed (`prw_deploy.py`), all under one
directory that is then copied into the booted system at the same path. Inside, as root: the
worker user, `safe.directory` for the local bare repos, a clone of the warehouse and its
`scripts/install-worker.sh`. Each project keeps the production settings of its own
`prefect/.env` (landing file under /srv/prh/landing, SQLite sink and venv under the worker's
home); only the hard-kill deployment has its own sink.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prh_ingest import naming

from support import package
from support.baking import bake_ingest_project
from support.booted import BootedSystem
from support.commands import run_python
from support.flow_runs import PrefectApi, run_deployment
from support.git import bare_repo, commit_all, git
from support.services import PrefectServer
from support.site import Project, project
from support.warehouse import bake_warehouse

POOL = "booted"  # not the e2e site's pool: its emulated workers must not take these runs
WORKER_USER = "deploy"
UNIT = f"prefect-worker-{POOL}.service"
WORKER_VENV = f"/opt/prefect-worker-{POOL}/venv"
HOME = f"/home/{WORKER_USER}"
VENVS = f"{HOME}/.local/share/virtualenvs"  # both modes' default in the project's .env
CHECKOUT = "/root/prh-warehouse"
INSTALL_COMMAND = "scripts/install-worker.sh"  # the README's, run as root from the checkout
CRON = "0 6 * * *"
PIPENV = project("ward-census", "adt", dependency_manager="pipenv", source_format="xlsx")
UV = project("pharmacy", "dispense", dependency_manager="uv", source_format="csv")
PROJECTS = (PIPENV, UV)  # the two with a venv of their own
# Runs on the worker venv's Python: loads once the project README's worker install ran.
NONE = project("lab-results", "lis", dependency_manager="none", source_format="xlsx")
# The team's own dependency of NONE's transform.py, pinned in its requirements.txt: the worker
# venv has the engine (requirements-worker.txt pins it), never a project's own packages.
TEAM_PACKAGE = ("inflection", "0.5.1")
# UV's flow once more with its own sink (and so its own lock): SIGKILLed mid-run.
HARD_KILL = f"{UV.flow}-hard-kill"
HARD_KILL_SINK = f"{HOME}/prh-data/hard-kill.db"

LOCK_SINK = """
import os, sqlite3, sys
os.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True)
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()  # until the test closes the pipe
"""


def landing(spec: Project) -> str:
    """The source file the project's prefect/.env names."""
    suffix = spec.answers["source_format"]
    return f"/srv/prh/landing/{spec.slug}/{spec.source_name}.{suffix}"


def sink(spec: Project) -> str:
    """The SQLite sink the project's prefect/.env names (${HOME}/prh-data/<slug>.db)."""
    return f"{HOME}/prh-data/{spec.slug}.db"


@dataclass
class WorkerSite:
    """The booted system with the worker installed; what the tests drive and read."""

    system: BootedSystem
    server: PrefectServer
    api: PrefectApi
    root: Path  # the same path on the host and inside
    install: subprocess.CompletedProcess[str] | None

    def run(self, deployment: str) -> str:
        """`prefect deployment run` from the host; returns the flow run id."""
        return run_deployment(deployment, self.server.env)

    def rows(self, database: str, table: str) -> int:
        """Rows in a sink table inside (0 before the first load created it)."""
        path = self.system.path(database)
        if not path.exists():
            return 0
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
                return connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
        except sqlite3.OperationalError:  # no such table
            return 0

    def journal(self) -> str:
        return self.system.journal(UNIT)

    def is_active(self) -> bool:
        return self.system.systemctl("is-active", UNIT).stdout.strip() == "active"

    def wait_active(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.is_active():
            if time.monotonic() > deadline:
                status = self.system.systemctl("status", UNIT).stdout
                raise TimeoutError(f"{UNIT} not active after {timeout:.0f}s:\n{status}")
            time.sleep(0.5)

    def main_pid(self) -> int:
        return int(self.system.systemctl("show", "-p", "MainPID", "--value", UNIT).stdout)

    def hostname(self) -> str:
        return self.system.run(["hostname"], check=True).stdout.strip()

    def worker_status(self, name: str) -> str | None:
        """The status (ONLINE/OFFLINE) of the pool's worker *name*, None if unknown."""
        workers = self.api.post(f"/work_pools/{POOL}/workers/filter", {})
        return next((worker["status"] for worker in workers if worker["name"] == name), None)

    def wait_worker_online(self, timeout: float = 60) -> str:
        name = f"{POOL}-{self.hostname()}"
        deadline = time.monotonic() + timeout
        while self.worker_status(name) != "ONLINE":
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker {name} not ONLINE in pool {POOL} after {timeout}s")
            time.sleep(0.5)
        return name

    def file_digest(self, inside: str) -> str:
        return hashlib.sha256(self.system.path(inside).read_bytes()).hexdigest()

    def install_worker(self, **env: str) -> subprocess.CompletedProcess[str]:
        """The README's `sudo scripts/install-worker.sh`, as root from the checkout."""
        return self.system.run(["scripts/install-worker.sh"], cwd=CHECKOUT, env=env, timeout=600)

    def lock_sink(self, database: str) -> subprocess.Popen[str]:
        """Hold *database*'s write lock inside (as the worker user, as another writer would);
        close the returned process's stdin to release it."""
        locker = self.system.spawn(["python3", "-c", LOCK_SINK, database], user=WORKER_USER)
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        return locker

    def wait_for_process(self, pattern: str, timeout: float = 180) -> None:
        """Until a process of the worker user matching *pattern* (pgrep -f) runs inside."""
        deadline = time.monotonic() + timeout
        while self.system.run(["pgrep", "-u", WORKER_USER, "-f", pattern]).returncode != 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {pattern!r} process after {timeout:.0f}s")
            time.sleep(0.5)


def release(locker: subprocess.Popen[str]) -> None:
    assert locker.stdin is not None
    locker.stdin.close()
    locker.wait(timeout=30)


def logs_of(site: WorkerSite, run_id: str) -> str:
    return "\n".join(site.api.logs(run_id))


def add_team_dependency(project_dir: Path) -> None:
    """What a team does to use a package in its transform.py: pin it, import it."""
    name, version = TEAM_PACKAGE
    with (project_dir / "requirements.txt").open("a") as requirements:
        requirements.write(f"{name}=={version}\n")
    transform = project_dir / "transform.py"
    code = transform.read_text()
    anchor = "from __future__ import annotations\n"
    transform.write_text(code.replace(anchor, f"{anchor}\nimport {name}  # noqa: F401\n", 1))


def build_projects(root: Path) -> dict[str, dict[str, object]]:
    """Bake each project, push it to `<root>/git/<slug>.git`; the warehouse's flow entries."""
    (root / "git").mkdir()
    # The package under test where the booted system sees it too (root is copied as is).
    wheel = Path(shutil.copy(package.wheel(), root))
    engine = wheel.as_uri()
    flows: dict[str, dict[str, object]] = {}
    for spec in (*PROJECTS, NONE):
        bare = root / "git" / f"{spec.slug}.git"
        baked = bake_ingest_project(
            root / "projects", **spec.answers, git_repo_url=str(bare), prh_ingest=engine
        )
        if spec is NONE:
            add_team_dependency(baked)
        bare_repo(baked, root / "git")
        flows[spec.flow] = {
            "repo": str(bare),
            "entrypoint": naming.flow_entrypoint(spec.flow),
            "cron": CRON,
        }
    hard_kill_env = {UV.sink_setting: f"sqlite:///{HARD_KILL_SINK}"}
    flows[HARD_KILL] = {**flows[UV.flow], "env": hard_kill_env}
    return flows


def build_warehouse(root: Path, name: str, **answers: object) -> Path:
    """A baked warehouse published as `<root>/<name>.git`, as the team's repo would be."""
    warehouse = bake_warehouse(root / "baked" / name, **answers)
    git(warehouse, "init", "-q", "-b", "main")
    commit_all(warehouse, "baked")
    bare = root / f"{name}.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(warehouse), str(bare)], check=True)
    return bare


def deploy(warehouse_repo: Path, root: Path, server: PrefectServer) -> Path:
    """`prw_deploy.py` from a checkout on the host, as the team deploys; returns it."""
    checkout = root / "deploy-checkout"
    subprocess.run(["git", "clone", "-q", str(warehouse_repo), str(checkout)], check=True)
    deployed = run_python(["prefect/prw_deploy.py"], checkout, server.env)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    return checkout


def prepare_inside(system: BootedSystem, root: Path) -> None:
    """The machine as the team finds it: landing files, the bare repos trusted by git, and
    no /etc/pip.conf (this image's names the CA bundle; a VM's has no such line), so every
    download must trust the machine's CA store by itself."""
    system.path("/etc/pip.conf").unlink(missing_ok=True)
    system.copy_in(root)
    for spec in (*PROJECTS, NONE):
        sample = next((root / "projects" / spec.slug / "data").glob("sample.*"))
        system.copy_in(sample, landing(spec))
    # A local bare repo owned by root is "dubious ownership" to the worker user's git.
    for repo in sorted((root / "git").iterdir()):
        system.run(["git", "config", "--system", "--add", "safe.directory", str(repo)], check=True)


@pytest.fixture(scope="session")
def site_root() -> Iterator[Path]:
    """A directory at the same path on the host and inside: under /srv, as /tmp and /var/tmp
    are private to the worker service (PrivateTmp=) and /tmp is a tmpfs in the booted system."""
    root = Path(f"/srv/prh-test-{uuid.uuid4().hex[:12]}")
    root.mkdir()
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def worker_site(
    booted_system: BootedSystem, prefect_server: PrefectServer, site_root: Path
) -> WorkerSite:
    """The worker installed exactly as the warehouse README says (see the module doc)."""
    flows = build_projects(site_root)
    warehouse_repo = build_warehouse(
        site_root,
        "warehouse",
        flows=flows,
        # The same engine as the projects pin: install-worker.sh --requirements refuses another.
        prh_ingest=(site_root / package.wheel().name).as_uri(),
        work_pool=POOL,
        worker_user=WORKER_USER,
        prefect_api_url=prefect_server.api_url,
    )
    checkout = deploy(warehouse_repo, site_root, prefect_server)
    prepare_inside(booted_system, site_root)
    booted_system.run(["git", "clone", "-q", str(warehouse_repo), CHECKOUT], check=True)
    *before, install = readme_install_commands(checkout)
    assert install == INSTALL_COMMAND, install
    for command in before:  # creating the worker user
        booted_system.run(["sh", "-c", command], cwd=CHECKOUT, check=True)
    api = PrefectApi(prefect_server.api_url)
    site = WorkerSite(booted_system, prefect_server, api, site_root, install=None)
    site.install = site.install_worker()
    assert site.install.returncode == 0, site.install.stdout + site.install.stderr
    return site


def readme_install_commands(warehouse: Path) -> list[str]:
    """The commands of the generated README's install block, without their `sudo`."""
    section = (warehouse / "README.md").read_text().split("## Install the worker on a VM")[1]
    block = section.split("```")[1]
    return [line.strip().removeprefix("sudo ") for line in block.strip().splitlines()]
