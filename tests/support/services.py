"""The live services the tests run on 127.0.0.1, each on a free port with its state under a temp
folder, stopped at teardown also when a test fails: a Prefect server (SQLite), moto's S3 server,
and a throwaway PostgreSQL (`initdb` + `pg_ctl` as the `postgres` user; the newest installed
major of 14 or later, found by support.postgresql).

The PostgreSQL cluster lives in its own temp folder (owned by `postgres`, which may not enter
pytest's private tmp dirs), with its unix socket in that folder, trusts local connections, and is
deleted at teardown. Durability is off (fsync, synchronous_commit): the data is thrown away.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support.commands import BIN
from support.postgresql import NOT_FOUND, server_bin
from support.processes import LOOPBACK, ManagedProcess, free_port, managed_process

# Test-only speed-ups, all real Prefect 3.9 settings (prefect/settings/models/):
# a worker polls every second instead of every 10 and heartbeats every 5 s instead of 30;
# the server's scheduler loop runs every 5 s instead of 60, and proactive automations (the
# freshness checks) are evaluated every second instead of every 5.
FAST_CLIENT_SETTINGS = {
    "PREFECT_WORKER_QUERY_SECONDS": "1",
    "PREFECT_WORKER_HEARTBEAT_SECONDS": "5",
}
FAST_SERVER_SETTINGS = {
    "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
    "PREFECT_SERVER_UI_ENABLED": "false",
    "PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY": "PT1S",
}


def offline_env(home: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a Prefect subprocess isolated in *home*: no inherited PREFECT_* settings,
    analytics off. Without PREFECT_API_URL, Prefect runs against its own ephemeral server, which
    may take longer than Prefect's 20 s default to start on a busy 2-core machine."""
    env = {
        k: v
        for k, v in (os.environ if base is None else base).items()
        if not k.startswith("PREFECT_")
    }
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
    )
    return env


@dataclass(frozen=True)
class PrefectServer:
    """A running `prefect server start`; `env` is what a client subprocess should use."""

    api_url: str
    home: Path
    process: ManagedProcess
    client_home: Path

    @property
    def env(self) -> dict[str, str]:
        env = offline_env(self.client_home)
        env.update(FAST_CLIENT_SETTINGS, PREFECT_API_URL=self.api_url)
        return env


@contextmanager
def running_prefect_server(
    root: Path, settings: Mapping[str, str] | None = None
) -> Iterator[PrefectServer]:
    """`prefect server start` on a free loopback port with SQLite under *root*, with the
    server *settings* a test needs on top of FAST_SERVER_SETTINGS."""
    port = free_port()
    home = root / "server-home"
    env = offline_env(home)
    env.update(
        FAST_SERVER_SETTINGS,
        **(settings or {}),
        PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{root / 'prefect.db'}",
    )
    argv = [str(BIN / "prefect"), "server", "start", "--host", LOOPBACK, "--port", str(port)]
    api_url = f"http://{LOOPBACK}:{port}/api"
    with managed_process(
        argv, env=env, log_path=root / "server.log", ready_url=f"{api_url}/health", timeout=90
    ) as process:
        yield PrefectServer(api_url, home, process, root / "client-home")


@dataclass(frozen=True)
class S3Server:
    """moto's S3-compatible server on loopback, with dummy credentials."""

    endpoint_url: str
    process: ManagedProcess
    access_key_id: str = "testing"
    secret_access_key: str = "testing"  # noqa: S105 (moto accepts any credentials)
    region: str = "us-east-1"

    def client(self) -> Any:
        """A boto3 S3 client for this server."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )


@contextmanager
def running_s3_server(root: Path) -> Iterator[S3Server]:
    """`moto_server` on a free loopback port."""
    port = free_port()
    argv = [str(BIN / "moto_server"), "-H", LOOPBACK, "-p", str(port)]
    endpoint_url = f"http://{LOOPBACK}:{port}"
    with managed_process(
        argv,
        env=offline_env(root / "home"),
        log_path=root / "moto.log",
        ready_url=f"{endpoint_url}/moto-api/",
        timeout=30,
    ) as process:
        yield S3Server(endpoint_url, process)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """One Prefect server for the whole test session."""
    with running_prefect_server(tmp_path_factory.mktemp("prefect-server")) as server:
        yield server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One loopback S3 server for the whole test session."""
    with running_s3_server(tmp_path_factory.mktemp("s3-server")) as server:
        yield server


PG_BIN = server_bin() or Path("/nonexistent/postgresql/bin")  # running_postgres() says why
SUPERUSER = "prh"


@dataclass(frozen=True)
class PostgresServer:
    port: int
    socket_dir: Path

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of *database* on this server (psycopg 3 driver)."""
        return f"postgresql+psycopg://{SUPERUSER}@{LOOPBACK}:{self.port}/{database}"

    def conninfo(self, database: str = "postgres") -> str:
        return f"host={LOOPBACK} port={self.port} user={SUPERUSER} dbname={database}"

    def create_database(self, prefix: str = "warehouse") -> str:
        """A new empty database; returns its name."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.conninfo(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return name

    def query(self, database: str, sql: str) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.conninfo(database)) as connection:
            return connection.execute(sql).fetchall()


def as_postgres(argv: list[str]) -> list[str]:
    """*argv* run as the `postgres` user (initdb refuses root)."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    if not (PG_BIN / "initdb").exists():
        raise RuntimeError(NOT_FOUND)
    root = Path(tempfile.mkdtemp(prefix="prh-postgres-"))
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
    data, log = root / "data", root / "server.log"
    server = PostgresServer(free_port(), root)
    options = (
        f"-c listen_addresses={LOOPBACK} -p {server.port} -k {root} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    try:
        subprocess.run(
            as_postgres(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ]
            ),
            check=True,
            capture_output=True,
            text=True,
        )
        started = subprocess.run(
            as_postgres(
                [
                    str(PG_BIN / "pg_ctl"),
                    "start",
                    "-w",
                    "-t",
                    "60",
                    "-D",
                    str(data),
                    "-l",
                    str(log),
                    "-o",
                    options,
                ]
            ),
            capture_output=True,
            text=True,
        )
        if started.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {started.stderr}\n{tail}")
        yield server
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                as_postgres([str(PG_BIN / "pg_ctl"), "stop", "-D", str(data), "-m", "immediate"]),
                capture_output=True,
            )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server
