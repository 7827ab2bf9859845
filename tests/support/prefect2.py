"""The team's world before the migration, for real: Prefect 2.10.15 in its own cached venv, its
server on a free loopback port (SQLite under PREFECT_HOME, or PostgreSQL), the `ingest` process
pool, the runbook projects deployed with 2.10's own `Deployment.build_from_flow` and a cron
schedule, a 2.10 worker started by hand, and completed runs.

The venv is built once per pin set: under ~/.cache (XDG_CACHE_HOME) in a folder named after
the hash of tests/migration/prefect-2.10-constraints.txt, the one file that pins it, so a
change of pins builds a new one. A lock keeps two test sessions from building it at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from support.commands import BIN, REPO_DIR
from support.processes import LOOPBACK, ManagedProcess, managed_process
from support.services import offline_env

PINS = REPO_DIR / "tests/migration/prefect-2.10-constraints.txt"
POOL = "ingest"
# Prefect 2.10 setting names (prefect/settings.py of 2.10.15): no UI, a fast scheduler, a
# worker that polls every second.
SERVER_SETTINGS_2 = {
    "PREFECT_UI_ENABLED": "false",
    "PREFECT_API_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
}
WORKER_SETTINGS_2 = {"PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_HEARTBEAT_SECONDS": "5"}


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "prh-ingest-template"


def prefect2_venv() -> Path:
    """The Prefect 2.10.15 venv for the pins in PINS, built on first use (PyPI)."""
    digest = hashlib.sha256(PINS.read_bytes()).hexdigest()[:16]
    venv = cache_root() / f"prefect-2.10-{digest}"
    done = venv / ".complete"
    if done.exists():
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():  # another session built it while we waited
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        uv = str(BIN / "uv")
        subprocess.run([uv, "venv", "-q", "-p", sys.executable, str(venv)], check=True)
        installed = subprocess.run(
            # the machine's CA store, as pip uses it (a proxy may re-sign TLS with its own CA)
            [uv, "pip", "install", "-q", "--system-certs", "-p", str(venv / "bin/python")]
            + ["-r", str(PINS)],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if installed.returncode != 0:
            raise RuntimeError(f"the Prefect 2.10 venv did not install:\n{installed.stderr}")
        done.write_text(PINS.read_text())
    return venv


def prefect2_env(venv: Path, base: Mapping[str, str]) -> dict[str, str]:
    """*base* with the 2.10 venv's `prefect` first on PATH and this venv's tools (pipenv)
    after it, as on a runbook VM where `pip install prefect` put prefect on PATH."""
    path = f"{venv / 'bin'}{os.pathsep}{BIN}{os.pathsep}{base.get('PATH', os.defpath)}"
    return {**base, "PATH": path}


@dataclass(frozen=True)
class Server:
    """A running `prefect server start` of either major version on one home and port."""

    api_url: str
    home: Path
    process: ManagedProcess


def server_env(home: Path, database_url: str | None, major: int) -> dict[str, str]:
    env = offline_env(home)
    if major == 2:
        env.update(SERVER_SETTINGS_2)
        if database_url:
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    else:
        env.update(
            PREFECT_SERVER_UI_ENABLED="false",
            PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5",
        )
        if database_url:
            env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url
    return env


@contextmanager
def running_server(
    prefect: Path, home: Path, port: int, major: int, database_url: str | None = None
) -> Iterator[Server]:
    """`<prefect> server start` on 127.0.0.1:*port*; SQLite in *home* unless *database_url*."""
    env = server_env(home, database_url, major)
    argv = [str(prefect), "server", "start", "--host", LOOPBACK, "--port", str(port)]
    api_url = f"http://{LOOPBACK}:{port}/api"
    log = home.parent / f"server-{major}.log"
    with managed_process(
        argv, env=env, log_path=log, ready_url=f"{api_url}/health", timeout=120
    ) as process:
        yield Server(api_url, home, process)


DEPLOY_2 = """
import importlib.util, json, sys
from prefect.deployments import Deployment
from prefect.server.schemas.schedules import CronSchedule

a = json.loads(sys.argv[1])
spec = importlib.util.spec_from_file_location("runbook_flow", a["path"])
module = sys.modules["runbook_flow"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
deployment = Deployment.build_from_flow(
    getattr(module, a["function"]),
    name=a["name"],
    work_pool_name=a["pool"],
    schedule=CronSchedule(cron=a["cron"], timezone=a["timezone"]),
    infra_overrides={"env": a["env"]},
)
print(deployment.apply())
"""


def deploy_with_prefect2(
    venv: Path,
    project: Path,
    flow_file: str,
    function: str,
    name: str,
    cron: str,
    env: Mapping[str, str],
    client_env: Mapping[str, str],
) -> str:
    """`Deployment.build_from_flow(...).apply()` run from the project folder, as the runbook's
    deploy script did; returns the deployment id."""
    args = {
        "path": str(project / flow_file),
        "function": function,
        "name": name,
        "pool": POOL,
        "cron": cron,
        "timezone": "UTC",
        "env": dict(env),
    }
    result = subprocess.run(
        [str(venv / "bin/python"), "-c", DEPLOY_2, json.dumps(args)],
        cwd=project,
        env=dict(client_env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().splitlines()[-1]
