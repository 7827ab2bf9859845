"""A throwaway PostgreSQL 15 server for the tests: `initdb` + `pg_ctl` as the `postgres` user.

The cluster lives in its own temp folder (owned by `postgres`, which may not enter pytest's
private tmp dirs), listens on a free 127.0.0.1 port with its unix socket in that folder, trusts
local connections, and is stopped and deleted at teardown, also when a test fails. Durability
is off (fsync, synchronous_commit): the data is thrown away anyway.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.services import LOOPBACK, free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
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
        raise RuntimeError(f"PostgreSQL 15 is not installed ({PG_BIN}/initdb is missing)")
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
                [str(PG_BIN / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust",
                 "--encoding=UTF8", "--locale=C.UTF-8"]
            ),
            check=True,
            capture_output=True,
            text=True,
        )
        started = subprocess.run(
            as_postgres(
                [str(PG_BIN / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(data),
                 "-l", str(log), "-o", options]
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
