"""A throwaway PostgreSQL for the loader's tests (a schema per test, cheaper than a
database): the newest installed server (14 or later), started on 127.0.0.1 on a free port
with its data in a temporary folder, and stopped and removed even when a test fails.
Standard library only, and psycopg where it queries."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"
SUPERUSER = "postgres"
MIN_MAJOR = 14


def server_bin() -> Path | None:
    """The bin folder (with initdb and pg_ctl) of the newest installed major >= MIN_MAJOR."""
    found = [
        (int(folder.parent.name), folder)
        for folder in Path("/usr/lib/postgresql").glob("*/bin")
        if folder.parent.name.isdigit()
    ]
    if pg_config := shutil.which("pg_config"):
        answer = subprocess.run(
            [pg_config, "--version", "--bindir"], capture_output=True, text=True
        )
        if match := re.match(r"PostgreSQL (\d+)[^\n]*\n(.+)\n", answer.stdout):
            found.append((int(match[1]), Path(match[2])))
    usable = [
        (major, folder)
        for major, folder in found
        if major >= MIN_MAJOR and (folder / "initdb").is_file() and (folder / "pg_ctl").is_file()
    ]
    return max(usable)[1] if usable else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class PostgresServer:
    port: int
    database: str = "postgres"

    def url(self, schema: str = "public") -> str:
        """SQLAlchemy URL (psycopg 3 driver) whose unqualified names are *schema*'s."""
        return (
            f"postgresql+psycopg://{SUPERUSER}@{LOOPBACK}:{self.port}/{self.database}"
            f"?options=-csearch_path%3D{schema}"
        )

    def conninfo(self, schema: str = "public") -> str:
        return (
            f"host={LOOPBACK} port={self.port} user={SUPERUSER} dbname={self.database} "
            f"options=-csearch_path={schema}"
        )

    def create_schema(self, prefix: str = "warehouse") -> str:
        """A new empty schema (a warehouse of its own, far cheaper than a database)."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.conninfo(), autocommit=True) as connection:
            connection.execute(f'CREATE SCHEMA "{name}"')
        return name

    def query(self, schema: str, sql: str) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.conninfo(schema)) as connection:
            return connection.execute(sql).fetchall()


def as_postgres(argv: list[str]) -> list[str]:
    """*argv* run as the `postgres` user (initdb refuses root)."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    folder = server_bin()
    if folder is None:
        raise RuntimeError(
            f"no PostgreSQL {MIN_MAJOR} or later with initdb and pg_ctl is installed"
        )
    root = Path(tempfile.mkdtemp(prefix="prh-ingest-postgres-"))
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
    data, log = root / "data", root / "server.log"
    server = PostgresServer(free_port())
    options = (
        f"-c listen_addresses={LOOPBACK} -p {server.port} -k {root} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    initdb = [
        str(folder / "initdb"),
        "-D",
        str(data),
        "-U",
        SUPERUSER,
        "--auth=trust",
        "--encoding=UTF8",
        "--locale=C.UTF-8",
    ]
    start = [
        str(folder / "pg_ctl"),
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
    try:
        subprocess.run(as_postgres(initdb), check=True, capture_output=True, text=True)
        started = subprocess.run(as_postgres(start), capture_output=True, text=True)
        if started.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {started.stderr}\n{tail}")
        yield server
    finally:
        if (data / "postmaster.pid").exists():
            stop = [str(folder / "pg_ctl"), "stop", "-D", str(data), "-m", "immediate"]
            subprocess.run(as_postgres(stop), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
