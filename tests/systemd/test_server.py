"""The warehouse's Prefect server under a real systemd: install-server.sh on a booted Debian with
its own PostgreSQL 15 and Redis, both units, auth, restarts, failure notifications, backup and
restore, and an idempotent installer that refuses to start without its database or Redis."""

from __future__ import annotations

import base64
import http.server
import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.booted import BootedSystem
from support.services import free_port
from support.warehouse import bake_warehouse

pytestmark = [pytest.mark.systemd, pytest.mark.timeout(900)]

INSIDE = Path("/srv/prh-server-test/prh-warehouse")
UNITS = ("prefect-server.service", "prefect-services.service")
POOL = "server-pool"
PSQL = ["runuser", "-u", "postgres", "--", "psql", "-X", "-A", "-t", "-d", "prefect", "-c"]


class Hooks(http.server.BaseHTTPRequestHandler):
    """A loopback webhook receiver: keeps every POST body."""

    bodies: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        length = int(self.headers["content-length"])
        type(self).bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Server:
    system: BootedSystem
    port: int
    auth: str
    install_output: str

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def status(self, path: str, auth: str | None = None) -> int:
        request = urllib.request.Request(self.api + path)  # noqa: S310 (http only)
        if auth:
            request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            return 0

    def wait_ready(self, want: bool, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (self.status("/ready") == 200) is want:
                return
            time.sleep(0.5)
        raise AssertionError(f"/api/ready {'never' if want else 'always'} answered 200")

    def client_env(self) -> dict[str, str]:
        return {
            "PREFECT_API_URL": self.api,
            "PREFECT_API_AUTH_STRING": self.auth,
            "PREFECT_HOME": "/var/tmp/prh-client",  # noqa: S108 (inside the container)
            "DO_NOT_TRACK": "1",
        }

    def python(self, code: str) -> str:
        """Prefect client code inside, with the server venv's python and the auth string."""
        result = self.system.run(
            ["/opt/prefect-server/venv/bin/python", "-c", code], env=self.client_env()
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def sql(self, query: str) -> str:
        return self.system.run([*PSQL, query], check=True).stdout.strip()


@pytest.fixture(scope="module")
def hooks() -> Iterator[int]:
    server = http.server.HTTPServer(("127.0.0.1", 0), Hooks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture(scope="module")
def server(
    booted_system: BootedSystem, hooks: int, tmp_path_factory: pytest.TempPathFactory
) -> Server:
    """The README's steps on the booted system: a warehouse checkout, install-server.sh."""
    port = free_port()
    warehouse = bake_warehouse(
        tmp_path_factory.mktemp("server-warehouse"),
        work_pool=POOL,
        server_port=str(port),
        notify_url=f"http://127.0.0.1:{hooks}/prefect",
    )
    booted_system.copy_in(warehouse, INSIDE)
    for service in ("postgresql", "redis-server"):
        booted_system.systemctl("is-active", "--quiet", service, check=True)
    result = booted_system.run([str(INSIDE / "scripts/install-server.sh")], timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    env_file = booted_system.run(["cat", "/etc/prefect-server/server.env"], check=True).stdout
    auth = re.search(r"^PREFECT_SERVER_API_AUTH_STRING=(\S+)$", env_file, re.MULTILINE).group(1)
    return Server(booted_system, port, auth, result.stdout)


def test_install_starts_both_units_on_postgresql_with_pg_trgm(server: Server) -> None:
    system = server.system
    for unit in UNITS:
        assert system.systemctl("is-active", unit).stdout.strip() == "active"
        assert system.systemctl("is-enabled", unit).stdout.strip() == "enabled"
    assert server.status("/ready") == 200
    assert server.sql("select count(*) from pg_extension where extname = 'pg_trgm'") == "1"
    tables = server.sql("select tablename from pg_tables where schemaname = 'public'").split()
    assert {"flow", "flow_run", "deployment", "work_pool", "automation", "alembic_version"} <= set(
        tables
    )
    mode = system.run(["stat", "-c", "%a %U", "/etc/prefect-server/server.env"]).stdout.strip()
    assert mode == "600 root"
    settings = system.run(["cat", "/etc/prefect-server/server.env"]).stdout
    assert not re.search(r"=.*CHANGE-ME", settings)  # both secrets generated
    assert "The Prefect server is ready at" in server.install_output


def test_api_needs_the_auth_string_but_health_and_ready_do_not(server: Server) -> None:
    assert server.status("/admin/version") == 401
    assert server.status("/admin/version", auth="admin:wrong") == 401
    assert server.status("/admin/version", auth=server.auth) == 200
    assert server.status("/health") == 200
    assert server.status("/ready") == 200


@pytest.mark.parametrize("unit", UNITS)
def test_units_score_at_most_2_5_inside(server: Server, unit: str) -> None:
    result = server.system.run(["systemd-analyze", "security", "--no-pager", unit])
    score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert score and float(score.group(1)) <= 2.5, result.stdout[-2000:]


DEPLOY_AND_FAIL = """
import asyncio, json
from prefect import get_client
from prefect.states import Failed, Pending, Running

async def main():
    async with get_client() as client:
        flow_id = await client.create_flow_from_name("server-test")
        deployment = await client.create_deployment(
            flow_id=flow_id, name="server-test-dep", work_pool_name=%r
        )
        run = await client.create_flow_run_from_deployment(deployment)
        for state in (Pending(), Running(), Failed(message="boom")):
            await client.set_flow_run_state(run.id, state, force=True)
        print(json.dumps({"run": run.name, "deployment": str(deployment)}))

asyncio.run(main())
"""


def test_a_failed_run_posts_exactly_one_notification(server: Server) -> None:
    """prw_deploy.py creates the automation; a run of the pool ends Failed (reported through
    the API); the services process, through Redis, posts once to the receiver."""
    deploy = server.system.run(
        ["/opt/prefect-server/venv/bin/python", str(INSIDE / "prefect/prw_deploy.py")],
        env=server.client_env(),
        timeout=300,
    )
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    assert "Created automation 'notify-failed-flow-runs'" in deploy.stdout
    time.sleep(5)  # the triggers service loads new automations
    Hooks.bodies.clear()
    created = json.loads(server.python(DEPLOY_AND_FAIL % POOL))
    deadline = time.monotonic() + 90
    while not Hooks.bodies and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(10)  # a second POST would arrive within this
    assert len(Hooks.bodies) == 1, Hooks.bodies
    body = Hooks.bodies[0]["body"]
    assert "Deployment: server-test-dep" in body
    assert f"Flow run: {created['run']}" in body
    assert "State: Failed: boom" in body
    assert f"http://127.0.0.1:{server.port}/runs/flow-run/" in body


def test_restarts_of_the_server_and_postgresql_come_back_by_themselves(server: Server) -> None:
    before = server.sql("select count(*) from flow_run")
    system = server.system
    system.systemctl("restart", "prefect-server")
    server.wait_ready(False, timeout=30)
    server.wait_ready(True)
    system.systemctl("stop", "postgresql")
    server.wait_ready(False, timeout=30)
    system.systemctl("start", "postgresql")
    server.wait_ready(True)
    assert server.sql("select count(*) from flow_run") == before
    names = server.python(
        "from prefect import get_client\n"
        "with get_client(sync_client=True) as c:\n"
        "    print(sorted(d.name for d in c.read_deployments()))"
    )
    assert "server-test-dep" in names
    for unit in UNITS:
        assert system.systemctl("is-active", unit).stdout.strip() == "active"


def test_backup_drop_and_restore_bring_the_deployments_back(server: Server) -> None:
    system = server.system
    backup = system.run([str(INSIDE / "scripts/backup-server.sh"), "/var/backups/prh"])
    assert backup.returncode == 0, backup.stdout + backup.stderr
    dump = re.search(r"^Wrote (\S+\.dump) ", backup.stdout, re.MULTILINE).group(1)
    system.systemctl("stop", *UNITS, check=True)
    system.run(["runuser", "-u", "postgres", "--", "dropdb", "prefect"], check=True)
    restore = system.run([str(INSIDE / "scripts/backup-server.sh"), "--restore", dump])
    assert restore.returncode == 0, restore.stdout + restore.stderr
    server.wait_ready(True)
    assert server.sql("select name from deployment") == "server-test-dep"
    assert server.sql("select count(*) from pg_extension where extname = 'pg_trgm'") == "1"
    # Rotation keeps the newest KEEP dumps.
    for _ in range(3):
        time.sleep(1.1)
        system.run(
            [str(INSIDE / "scripts/backup-server.sh"), "/var/backups/prh"],
            env={"KEEP": "2"},
            check=True,
        )
    kept = system.run(["ls", "/var/backups/prh"]).stdout.split()
    assert len(kept) == 2 and all(name.endswith(".dump") for name in kept), kept


def test_install_again_changes_nothing_and_says_so(server: Server) -> None:
    pid = server.system.systemctl("show", "-p", "MainPID", "--value", "prefect-server").stdout
    result = server.system.run([str(INSIDE / "scripts/install-server.sh")], timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Nothing changed: the Prefect server was already installed" in result.stdout
    after = server.system.systemctl("show", "-p", "MainPID", "--value", "prefect-server").stdout
    assert after == pid


@pytest.mark.parametrize(
    ("service", "message"),
    [
        ("postgresql", "ERROR: PostgreSQL is not reachable"),
        ("redis-server", "ERROR: Redis is not reachable at 127.0.0.1:6379"),
    ],
)
def test_install_without_postgresql_or_redis_stops_with_one_line_and_enables_nothing(
    server: Server, service: str, message: str
) -> None:
    """On a machine where nothing is installed yet (units disabled and removed first)."""
    system = server.system
    system.systemctl("disable", "--now", *UNITS, check=True)
    system.systemctl("stop", service, check=True)
    try:
        result = system.run([str(INSIDE / "scripts/install-server.sh")])
        assert result.returncode == 1
        assert result.stderr.splitlines() == [result.stderr.strip()]
        assert result.stderr.startswith(message), result.stderr
        for unit in UNITS:
            assert system.systemctl("is-enabled", unit).stdout.strip() == "disabled"
            assert system.systemctl("is-active", unit).stdout.strip() == "inactive"
    finally:
        system.systemctl("start", service, check=True)
        system.systemctl("enable", "--now", *UNITS, check=True)
    server.wait_ready(True)
