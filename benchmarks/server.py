"""9. The warehouse's self-hosted server (PostgreSQL + Redis, API and services in two processes)
beside the SQLite `prefect server start` of the other sections: trigger -> COMPLETED latency
and the first deploy of 100 flows, measured by the same code (latency.py, deploy.py).

The PostgreSQL+Redis server runs as host processes, not under systemd: PostgreSQL (the newest
installed major >= 14, support.services.PG_BIN; `initdb`/`pg_ctl` as the postgres user),
`redis-server`, the migrations, then the two commands of the generated units' ExecStart=
with the generated env file's settings (secrets
filled in, ports made free), auth and CSRF on, and without the TLS front: the clients talk to
the API over HTTP on its loopback port. The worker under test is the same either way.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from support.processes import free_port, managed_process
from support.services import FAST_SERVER_SETTINGS, PG_BIN, offline_env
from support.systemd import Unit, command_line, read_env_file
from support.warehouse import bake_warehouse

from benchmarks import deploy, latency
from benchmarks.common import Comparison, Context, Section, progress, quiet, with_server

SERVER_VENV = "/opt/prefect-server/venv"  # the units' path; here: the bench venv
FIRST_DEPLOY = 100


@dataclass(frozen=True)
class AuthServer:
    """What latency.py and deploy.py need of a server; clients find the auth string in the
    active profile of their PREFECT_HOME (client_home)."""

    api_url: str
    client_home: Path
    auth: str


class AuthPrefectApi(latency.PrefectApi):
    def __init__(self, api_url: str) -> None:
        super().__init__(api_url)
        self.http.auth = tuple(AUTH_STRING[0].split(":", 1))


AUTH_STRING: list[str] = [""]


def as_postgres(argv: list[str]) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True)


@contextmanager
def postgresql(root: Path) -> Iterator[int]:
    """A PostgreSQL cluster on a free loopback port with the role, database and pg_trgm
    that install-server.sh creates."""
    port = free_port()
    data = root / "pg"
    data.mkdir(parents=True)
    shutil.chown(data, "postgres")
    as_postgres([str(PG_BIN / "initdb"), "-D", str(data / "data"), "-A", "trust", "-U", "postgres"])
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    log = str(data / "postgresql.log")  # the server keeps no pipe of ours open
    as_postgres(
        [str(PG_BIN / "pg_ctl"), "-D", str(data / "data"), "-o", options, "-l", log, "-w", "start"]
    )
    try:
        psql = ["psql", "-h", str(data), "-p", str(port), "-U", "postgres", "-X", "-q", "-c"]
        as_postgres([*psql, "create role prefect login password 'bench'"])
        as_postgres([*psql, "create database prefect owner prefect"])
        as_postgres([*psql[:-1], "-d", "prefect", "-c", "create extension pg_trgm"])
        yield port
    finally:
        as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data / "data"), "-m", "fast", "stop"])


@contextmanager
def warehouse_server(root: Path) -> Iterator[AuthServer]:
    """PostgreSQL, Redis, migrations, then the API and the services as the units start them."""
    with ExitStack() as stack:
        pg_port = stack.enter_context(postgresql(root))
        redis_port = free_port()
        stack.enter_context(
            managed_process(
                ["redis-server", "--port", str(redis_port), "--save", "", "--bind", "127.0.0.1"],
                env=os.environ,
                log_path=root / "redis.log",
            )
        )
        api_port = free_port()
        api_url = f"http://127.0.0.1:{api_port}/api"
        with quiet():  # an http URL: the API itself, without the TLS front (nginx) before it
            warehouse = bake_warehouse(
                root / "warehouse", server_port=str(api_port), prefect_api_url=api_url
            )
        auth = f"admin:{secrets.token_hex(16)}"
        settings = {
            name: value.replace("CHANGE-ME-DB-PASSWORD", "bench")
            .replace("CHANGE-ME-AUTH-PASSWORD", auth.split(":")[1])
            .replace(":5432/", f":{pg_port}/")
            .replace("6379", str(redis_port))
            for name, value in read_env_file(
                warehouse / "systemd/prefect-server.env.example"
            ).items()
        }
        home = root / "server-home"
        env = {**offline_env(home), **settings, **FAST_SERVER_SETTINGS}
        units = {}
        for name in ("prefect-server", "prefect-services"):
            unit = Unit.read(warehouse / "systemd" / f"{name}.service")
            env.update(
                {
                    k: v.replace("/var/lib/prefect-server", str(home))
                    for k, v in unit.environment().items()
                }
            )
            units[name] = command_line(
                unit.one("ExecStart").replace(SERVER_VENV, sys.prefix), env, {}
            )
        progress("server: PostgreSQL + Redis server, migrations")
        subprocess.run(
            [str(Path(sys.prefix) / "bin/prefect"), "server", "database", "upgrade", "-y"],
            env=env,
            check=True,
            capture_output=True,
        )
        stack.enter_context(
            managed_process(
                units["prefect-server"],
                env=env,
                log_path=root / "api.log",
                ready_url=f"{api_url}/ready",
                timeout=120,
            )
        )
        stack.enter_context(
            managed_process(units["prefect-services"], env=env, log_path=root / "services.log")
        )
        client_home = root / "client-home"
        client_home.mkdir()
        (client_home / "profiles.toml").write_text(
            f'active = "bench"\n\n[profiles.bench]\nPREFECT_API_AUTH_STRING = "{auth}"\n'
        )
        AUTH_STRING[0] = auth
        yield AuthServer(api_url, client_home, auth)


def measure_one(ctx: Context, count: int) -> tuple[list[float], list[float]]:
    """Against ctx.server: trigger -> COMPLETED of the trivial flow with a worker started as the
    generated unit (latency.py's code; one warm-up run), and prw_deploy.py's first deploy of
    *count* flows (deploy.py's code; new names each repetition)."""
    reps = ctx.sizes.repetitions
    root = ctx.folder("latency")
    env = with_server(os.environ, ctx.server)
    latency.deploy_trivial_flow(root, env)
    api = latency.PrefectApi(ctx.server.api_url)
    argv, worker_env = latency.unit_worker(root, env)
    log = root / "worker.log"
    with managed_process(argv, env=worker_env, log_path=log, cwd=root) as worker:
        worker.wait_for_log("started!", timeout=120)
        runs = [latency.timed_run(api, env)[0] for _ in range(reps + 1)][1:]
    deployer = deploy.Deployer(ctx)
    first = [deployer.run("prw", count, f"prw-{count}-{rep}") for rep in range(reps)]
    return runs, first


def measure(ctx: Context) -> list[Section]:
    section = Section(
        9, "Self-hosted server: PostgreSQL + Redis (two processes) vs SQLite (one process)"
    )
    count = (
        FIRST_DEPLOY if FIRST_DEPLOY in ctx.sizes.deploy_counts else max(ctx.sizes.deploy_counts)
    )
    sizes = replace(ctx.sizes, deploy_counts=(count,))
    root = ctx.folder("server")
    original_api = latency.PrefectApi
    for key, db in (("sqlite", "SQLite"), ("postgres", "PostgreSQL + Redis")):
        progress(f"server: {db}: latency and first deploy of {count} flows")
        with ExitStack() as stack:
            sub = Context(sizes, root / key)
            sub.scratch.mkdir(parents=True)
            stack.callback(sub.close)
            if key == "postgres":
                sub._server = stack.enter_context(warehouse_server(root / key / "server"))
                latency.PrefectApi = AuthPrefectApi  # GETs need the auth string too
            try:
                runs, first = measure_one(sub, count)
            finally:
                latency.PrefectApi = original_api
        section.add(
            f"{key}-latency", f"{db}: trigger -> COMPLETED (generated worker unit)", "s", runs
        )
        section.add(
            f"{key}-first-{count}",
            f"{db}: prw_deploy.py, first deploy of {count} flows",
            "s",
            first,
        )
    section.comparisons.append(
        Comparison(
            "trigger -> COMPLETED: PostgreSQL + Redis vs SQLite",
            "postgres-latency",
            "sqlite-latency",
        )
    )
    section.comparisons.append(
        Comparison(
            f"first deploy of {count}: PostgreSQL + Redis vs SQLite",
            f"postgres-first-{count}",
            f"sqlite-first-{count}",
        )
    )
    section.notes.append(
        "Both servers run on this 2-core machine beside the worker and the clients, one after the "
        "other in the same run. The PostgreSQL + Redis server is the generated "
        "prefect-server.env.example (auth, CSRF, Redis messaging) with the two units' commands "
        "run as host processes (not under systemd) and without the TLS front (HTTP on "
        f"loopback), PostgreSQL {PG_BIN.parent.name} and "
        "redis-server on free "
        "loopback ports; both servers get the test speed-ups of support.services (scheduler loop "
        "5 s, no UI). Latency: `prefect deployment run` to COMPLETED of a warm trivial flow, the "
        "worker started as the generated unit (latency.py); deploy: prw_deploy.py creating 100 "
        "deployments from local bare repos (deploy.py)."
    )
    return [section]
