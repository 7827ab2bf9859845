"""The warehouse's Prefect server under a real systemd: install-server.sh on a booted Debian with
its own PostgreSQL 15 and Redis, both units, auth, restarts, failure notifications, backup and
restore, and an idempotent installer that refuses to start without its database or Redis."""

from __future__ import annotations

import base64
import http.server
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.booted import BootedSystem
from support.flow_runs import RUN_DEPLOYMENT
from support.git import commit_all, git
from support.processes import free_port
from support.services import offline_env
from support.systemd import exposure_level
from support.warehouse import bake_warehouse

pytestmark = [pytest.mark.systemd, pytest.mark.timeout(1800)]

INSIDE = Path("/srv/prh-server-test/prh-warehouse")
UNITS = ("prefect-server.service", "prefect-services.service")
POOL = "server-pool"
WORKER_USER = "srvdeploy"
NEVER = "0 0 1 1 *"  # schedules that cannot fire during the tests
FLOWS = {
    "hello.py": "from prefect import flow\n\n\n@flow\ndef hello() -> str:\n    return 'hello'\n",
    "fails.py": (
        "from prefect import flow\n\n\n@flow\ndef fails() -> None:\n"
        "    raise RuntimeError('the source system is down')\n"
    ),
}
PSQL = ["runuser", "-u", "postgres", "--", "psql", "-X", "-A", "-t", "-d", "prefect", "-c"]


def at_root(*argv: str) -> list[str]:
    """*argv* started in / (the harness enters with a working directory that does not resolve
    inside: git refuses to run and shells print a getcwd warning first)."""
    return ["env", "-C", "/", *argv]


def script(name: str, *args: str) -> list[str]:
    """A warehouse script as root would start it from a shell."""
    return at_root(str(INSIDE / "scripts" / name), *args)


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
    warehouse: Path
    client_home: Path

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

    def client_env(self, port: int | None = None) -> dict[str, str]:
        """A deploy machine's environment (this host): the API URL and the auth string."""
        return {
            **offline_env(self.client_home),
            "PREFECT_API_URL": f"http://127.0.0.1:{port or self.port}/api",
            "PREFECT_API_AUTH_STRING": self.auth,
        }

    def python(self, code: str, port: int | None = None, cwd: Path | None = None) -> str:
        """Prefect client code run here, against the API on *port* (default: the unit's)."""
        result = subprocess.run(
            [sys.executable, "-c", code],
            env=self.client_env(port),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def run_deployment(self, name: str, port: int | None = None, timeout: float = 300) -> dict:
        """Create a run of *name* through the API on *port*; wait for its final state."""
        return json.loads(self.python(RUN_DEPLOYMENT % (name, timeout), port))

    def sql(self, query: str) -> str:
        return self.system.run([*PSQL, query], check=True).stdout.strip()


@pytest.fixture(scope="module")
def hooks() -> Iterator[int]:
    server = http.server.HTTPServer(("127.0.0.1", 0), Hooks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture(scope="module")
def flow_repo() -> Iterator[Path]:
    """A bare git repo of two flows, at the same path here (where prw_deploy.py clones it)
    and inside (where the worker clones it): under /srv, which the worker's sandbox shows
    (read-only), unlike /tmp, /var/tmp and /root; removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="prh-server-test-", dir="/srv"))
    root.chmod(0o755)  # mkdtemp's 0700 would hide the repo from the worker user
    source = root / "source"
    (source / "flows").mkdir(parents=True)
    for name, text in FLOWS.items():
        (source / "flows" / name).write_text(text)
    git(source, "init", "-q", "-b", "main")
    commit_all(source, "flows")
    git(root, "clone", "-q", "--bare", str(source), str(root / "flows.git"))
    yield root / "flows.git"
    shutil.rmtree(root)


@pytest.fixture(scope="module")
def server(
    booted_system: BootedSystem,
    flow_repo: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Server:
    """The README's steps on the booted system: a warehouse checkout, install-server.sh."""
    port = free_port()
    flows = {
        f"server-{name.removesuffix('.py')}": {
            "repo": str(flow_repo),
            "entrypoint": f"flows/{name}:{name.removesuffix('.py')}",
            "cron": NEVER,
        }
        for name in FLOWS
    }
    tmp = tmp_path_factory.mktemp("server-warehouse")
    warehouse = bake_warehouse(
        tmp,
        work_pool=POOL,
        worker_user=WORKER_USER,
        server_port=str(port),
        prefect_api_url=f"http://127.0.0.1:{port}/api",  # loopback: no TLS front
        flows=flows,
    )
    booted_system.copy_in(warehouse, INSIDE)
    booted_system.copy_in(flow_repo)
    for service in ("postgresql", "redis-server"):
        booted_system.systemctl("is-active", "--quiet", service, check=True)
    result = booted_system.run(script("install-server.sh"), timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    env_file = booted_system.run(["cat", "/etc/prefect-server/server.env"], check=True).stdout
    auth = re.search(r"^PREFECT_SERVER_API_AUTH_STRING=(\S+)$", env_file, re.MULTILINE).group(1)
    return Server(booted_system, port, auth, result.stdout, warehouse, tmp / "client-home")


@pytest.fixture(scope="module")
def deployed(server: Server, hooks: int) -> str:
    """prw_deploy.py from a deploy machine (this host, the README's deploy venv) with the
    auth string and the webhook: the pool, the two automations and both deployments."""
    result = subprocess.run(
        [sys.executable, "prefect/prw_deploy.py"],
        cwd=server.warehouse,
        env={**server.client_env(), "PRH_NOTIFY_URL": f"http://127.0.0.1:{hooks}/prefect"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def worker(server: Server, deployed: str) -> str:
    """The worker as the README installs it, with the server's auth string in its env file."""
    system = server.system
    system.run(["useradd", "--create-home", WORKER_USER], check=True)
    # git refuses a local bare repo owned by another user (a real git server hides this).
    system.run(at_root("git", "config", "--system", "--add", "safe.directory", "*"), check=True)
    system.write_file(
        f"/etc/prefect-worker/{POOL}.env",
        f"PREFECT_API_URL={server.api}\nPREFECT_API_AUTH_STRING={server.auth}\n",
        mode=0o600,
    )
    result = system.run(script("install-worker.sh"), timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    unit = f"prefect-worker-{POOL}.service"
    assert system.systemctl("is-active", unit).stdout.strip() == "active"
    return unit


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
    assert exposure_level(result.stdout) <= 2.5, result.stdout[-2000:]


REPORT_FAILURE = """
import json
from prefect import get_client
from prefect.states import Failed, Pending, Running

with get_client(sync_client=True) as client:
    deployment = client.read_deployment_by_name(%r)
    run = client.create_flow_run_from_deployment(deployment.id)
    for state in (Pending(), Running(), Failed(message="reported through the second API")):
        client.set_flow_run_state(run.id, state, force=True)
print(json.dumps({"name": run.name}))
"""


def wait_for_posts(count: int, timeout: float = 90, quiet: float = 10) -> list[dict]:
    """The receiver's POSTs once *count* arrived and nothing more came for *quiet* seconds."""
    deadline = time.monotonic() + timeout
    while len(Hooks.bodies) < count and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(quiet)
    return list(Hooks.bodies)


def test_a_deployment_runs_to_completed_through_the_installed_worker(
    server: Server, deployed: str, worker: str
) -> None:
    assert "Created automation 'notify-failed-flow-runs'" in deployed
    # prw_deploy.py's plan lines (issue 18): one `create <name>` per new deployment.
    assert re.findall(r"(?m)^create +(\S+)$", deployed) == ["server-fails", "server-hello"]
    run = server.run_deployment("hello/server-hello")
    assert run["state"] == "Completed", (run, server.system.journal(worker)[-6000:])
    assert run["id"] in server.system.journal(worker)  # this worker ran it


def test_a_failing_run_posts_exactly_one_notification(server: Server, worker: str) -> None:
    """A real run of the pool fails on the worker; the services process hears of it through
    Redis and posts once to the loopback receiver."""
    Hooks.bodies.clear()
    run = server.run_deployment("fails/server-fails")
    assert run["state"] == "Failed", (run, server.system.journal(worker)[-6000:])
    posts = wait_for_posts(1)
    assert len(posts) == 1, posts
    body = posts[0]["body"]
    assert "Deployment: server-fails" in body
    assert f"Flow run: {run['name']}" in body
    assert "State: Failed" in body
    assert f"http://127.0.0.1:{server.port}/runs/flow-run/{run['id']}" in body
    assert posts[0]["subject"] == "Prefect: server-fails Failed"


def test_restarts_of_the_server_and_postgresql_come_back_by_themselves(
    server: Server, worker: str
) -> None:
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
    assert names.strip() == "['server-fails', 'server-hello']"
    runs = server.sql("select count(*) from flow_run where state_type = 'COMPLETED'")
    assert int(runs) >= 1
    for unit in UNITS:
        assert system.systemctl("is-active", unit).stdout.strip() == "active"


def test_two_api_processes_share_postgresql_and_redis_with_one_services_process(
    server: Server, worker: str
) -> None:
    """A second API process (as on a second VM behind a load balancer): a run created through
    it is run by the worker polling the first; a failure reported through it notifies."""
    port = free_port()
    system = server.system
    system.run(
        [
            "systemd-run", "--unit=prefect-server-second", "--property=User=prefect",
            "--property=EnvironmentFile=/etc/prefect-server/server.env",
            "--property=Environment=PREFECT_HOME=/var/lib/prefect-server",
            "--property=Environment=PREFECT_UI_STATIC_DIRECTORY=/var/lib/prefect-server/ui-2",
            "--property=StateDirectory=prefect-server",
            "/opt/prefect-server/venv/bin/prefect", "server", "start",
            "--host", "127.0.0.1", "--port", str(port), "--no-services",
        ],
        check=True,
    )  # fmt: skip
    try:
        second = Server(system, port, server.auth, "", server.warehouse, server.client_home)
        second.wait_ready(True)
        run = server.run_deployment("hello/server-hello", port=port)
        assert run["state"] == "Completed", run
        Hooks.bodies.clear()
        reported = json.loads(server.python(REPORT_FAILURE % "fails/server-fails", port))
        posts = wait_for_posts(1)
        assert len(posts) == 1, posts
        assert f"Flow run: {reported['name']}" in posts[0]["body"]
        assert "State: Failed: reported through the second API" in posts[0]["body"]
    finally:
        system.systemctl("stop", "prefect-server-second")


def test_backup_drop_and_restore_bring_the_deployments_back(server: Server) -> None:
    system = server.system
    backup = system.run(script("backup-server.sh", "/var/backups/prh"))
    assert backup.returncode == 0, backup.stdout + backup.stderr
    dump = re.search(r"^Wrote (\S+\.dump) ", backup.stdout, re.MULTILINE).group(1)
    system.systemctl("stop", *UNITS, check=True)
    system.run(["runuser", "-u", "postgres", "--", "dropdb", "prefect"], check=True)
    restore = system.run(script("backup-server.sh", "--restore", dump))
    assert restore.returncode == 0, restore.stdout + restore.stderr
    server.wait_ready(True)
    assert server.sql("select name from deployment order by name").split() == [
        "server-fails",
        "server-hello",
    ]
    assert server.sql("select count(*) from pg_extension where extname = 'pg_trgm'") == "1"
    # Rotation keeps the newest KEEP dumps.
    for _ in range(3):
        time.sleep(1.1)
        system.run(
            script("backup-server.sh", "/var/backups/prh"),
            env={"KEEP": "2"},
            check=True,
        )
    kept = system.run(["ls", "/var/backups/prh"]).stdout.split()
    assert len(kept) == 2 and all(name.endswith(".dump") for name in kept), kept


def test_install_again_changes_nothing_and_says_so(server: Server) -> None:
    pid = server.system.systemctl("show", "-p", "MainPID", "--value", "prefect-server").stdout
    result = server.system.run(script("install-server.sh"), timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Nothing changed: the Prefect server was already installed" in result.stdout
    after = server.system.systemctl("show", "-p", "MainPID", "--value", "prefect-server").stdout
    assert after == pid


@pytest.mark.parametrize(
    ("service", "message"),
    [
        ("postgresql", "error: PostgreSQL is not reachable"),
        ("redis-server", "error: Redis is not reachable at 127.0.0.1:6379"),
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
        result = system.run(script("install-server.sh"))
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
