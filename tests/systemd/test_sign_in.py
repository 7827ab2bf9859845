"""Everyone signs in as themselves (issue 29), under a real systemd: Debian's slapd seeded with
people, machine accounts and their groups; the README's `install-server.sh --cert … --key …
--directory …` (apache2 signing in against it, prefect-gate.service checking roles and writing
the audit, the Prefect server on a Unix socket); each role's API calls by status code; a local
user who is not the front gets no answer; prw_deploy.py as svc-ci; the worker as svc-worker-1;
headless Chromium signing in, pausing, timing out and signing out; the audit lines and
audit.py; the units' scores. The tests share one booted system and run in file order; the
module puts back what it changed (the next module finds the server as it was)."""

from __future__ import annotations

import base64
import functools
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from support.booted import BootedSystem
from support.browser import chromedriver
from support.commands import REPO_DIR
from support.directory import USERS, Directory, auth_string
from support.flow_runs import RUN_DEPLOYMENT
from support.front import (
    install_as_the_readme_says,
    issue,
    make_ca,
    readme_server_command,
    retire_old_workers,
    two_free_ports,
)
from support.git import commit_all, git
from support.processes import free_port
from support.systemd import exposure_level
from support.warehouse import bake_warehouse

pytestmark = [pytest.mark.systemd, pytest.mark.timeout(1800)]

HOST_NAME = "prefect.prh.test"  # resolves only inside, through /etc/hosts
POOL = "signin-pool"
WORKER_USER = "signin"
WORKER_UNIT = f"prefect-worker-{POOL}.service"
WORKER_ENV = f"/etc/prefect-worker/{POOL}.env"
NEVER = "0 0 1 1 *"
HELLO = "from prefect import flow\n\n\n@flow\ndef hello() -> str:\n    return 'hello'\n"
RUN = "signin-hello"  # the worker runs it
PAUSED = "signin-pause"  # alice pauses it in the browser
IDLE_SECONDS = 100  # the idle limit: above every page wait (90 s), so a slow page never meets it
SIGN_IN_UNITS = (
    "prefect-server.service",
    "prefect-services.service",
    "prefect-gate.service",
    "prefect-sign-in.service",
)
CHROMIUM_POLICY = "/etc/chromium/policies/managed/prh-sign-in-ca.json"
SCREENSHOT = REPO_DIR / "test-artifacts" / "prefect-sign-in.png"


@dataclass
class Site:
    system: BootedSystem
    port: int
    upstream: int
    root: Path  # same path here and inside: pki/, ldap/, baked/, flows.git
    warehouse: Path
    directory: Directory

    @property
    def origin(self) -> str:
        return f"https://{HOST_NAME}:{self.port}"

    @property
    def api(self) -> str:
        return f"{self.origin}/api"

    @property
    def ca(self) -> Path:
        return self.root / "pki" / "ca.crt"

    def install_server(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.system.run(
            ["env", "-C", "/", str(self.warehouse / "scripts/install-server.sh"), *args],
            timeout=900,
        )

    def call(self, user: str | None, method: str, path: str, body: object = None) -> int:
        """The status code of one API call with *user*'s Basic credentials (None: none) and,
        for a write, the server's CSRF token as Prefect's client sends it."""
        args = ["curl", "-sS", "--max-time", "60", "-o", "/dev/null", "-w", "%{http_code}"]
        args += ["--cacert", str(self.ca), "-X", method]
        if user is not None:
            args += ["-u", auth_string(user)]
        if user in self.csrf_tokens and method != "GET":
            client = f"prh-test-{user}"
            args += ["-H", f"Prefect-Csrf-Token: {self.csrf_tokens[user]}"]
            args += ["-H", f"Prefect-Csrf-Client: {client}"]
        if body is not None:
            args += ["-H", "Content-Type: application/json", "--data", json.dumps(body)]
        result = self.system.run([*args, f"{self.api}{path}"])
        assert result.returncode == 0, result.stderr
        return int(result.stdout)

    @functools.cached_property
    def csrf_tokens(self) -> dict[str, str]:
        """A CSRF token for each user with a role (they may all read /csrf-token)."""
        return {
            user: self.read(f"/csrf-token?client=prh-test-{user}", user)["token"]  # type: ignore[index]
            for user, (role, _) in USERS.items()
            if role is not None
        }

    def read(self, path: str, user: str = "carol") -> object:
        result = self.system.run(
            ["curl", "-sS", "--fail", "--cacert", str(self.ca), "-u", auth_string(user),
             f"{self.api}{path}"],
            check=True,
        )  # fmt: skip
        return json.loads(result.stdout)

    def deployment(self, name: str) -> dict:
        return self.read(f"/deployments/name/hello/{name}")  # type: ignore[return-value]

    def client_env(self, user: str) -> dict[str, str]:
        """The deploy shell of the README for *user*'s own account."""
        return {
            "PREFECT_API_URL": self.api,
            "PREFECT_API_AUTH_STRING": auth_string(user),
            "PREFECT_API_SSL_CERT_FILE": str(self.ca),
            "PREFECT_HOME": f"/root/prefect-client-{user}",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
        }

    def deploy(self, user: str = "svc-ci") -> subprocess.CompletedProcess[str]:
        return self.system.run(
            [sys.executable, "prefect/prw_deploy.py"],
            env=self.client_env(user),
            cwd=str(self.warehouse),
            timeout=600,
        )

    def audit(self) -> list[dict]:
        """The gate's audit lines in the journal, oldest first."""
        self.system.run(["journalctl", "--sync"])
        text = self.system.run(["journalctl", "-t", "prefect-audit", "-o", "cat"]).stdout
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def snapshot(self) -> str:
        return self.system.run(
            ["find", "/etc/prefect-server", "/etc/systemd/system", "-maxdepth", "2",
             "-printf", "%p %s %T@ %m\n"]
        ).stdout  # fmt: skip


def start_directory(system: BootedSystem, directory: Directory) -> None:
    """slapd as a transient unit inside, then the seed."""
    system.run(
        ["systemd-run", "--unit=prh-test-slapd", "--collect", "--property=Type=simple",
         *directory.slapd_argv()],
        check=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        seeded = system.run(directory.seed_argv())
        if seeded.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(seeded.stderr + system.journal("prh-test-slapd"))
        time.sleep(0.5)


SERVER_UNITS = ("prefect-server.service", "prefect-services.service", "prefect-front.service")


def keep_server(system: BootedSystem, archive: Path) -> dict[str, tuple[bool, bool]]:
    """The server's settings and unit files in *archive*, and whether each unit is enabled
    and active, for put_back_server()."""
    system.run(
        [
            "sh",
            "-c",
            "cd / && ls -d etc/prefect-server etc/systemd/system/prefect-* 2>/dev/null"
            f" | tar -cf {archive} -T -",
        ],
        check=True,
    )
    return {
        unit: (
            system.systemctl("is-enabled", "--quiet", unit).returncode == 0,
            system.systemctl("is-active", "--quiet", unit).returncode == 0,
        )
        for unit in SERVER_UNITS
    }


def put_back_server(system: BootedSystem, archive: Path, states: dict) -> None:
    """The server as keep_server() found it; this module's own units gone, and when there
    was no server before, the database and role its install created too (a later install
    writes new secrets)."""
    had_settings = system.run(["tar", "-tf", str(archive)]).stdout.count("server.env") > 0
    for unit in ("prefect-sign-in.service", "prefect-gate.service", WORKER_UNIT, *SERVER_UNITS):
        system.systemctl("disable", "--now", unit)
    if not had_settings:
        for sql in ("drop database if exists prefect", "drop role if exists prefect"):
            system.run(["runuser", "-u", "postgres", "--", "psql", "-q", "-c", sql], check=True)
    system.run(["sh", "-c", "rm -rf /etc/prefect-server /etc/systemd/system/prefect-*"], check=True)
    system.run(["rm", "-f", WORKER_ENV, CHROMIUM_POLICY])
    system.run(["tar", "-C", "/", "-xf", str(archive)], check=True)
    system.run(["sed", "-i", f"/ {HOST_NAME}$/d", "/etc/hosts"])
    system.systemctl("daemon-reload")
    for unit, (enabled, active) in states.items():
        if enabled:
            system.systemctl("enable", unit)
        if active:
            system.systemctl("start", unit)


@pytest.fixture(scope="module")
def site(booted_system: BootedSystem) -> Iterator[Site]:
    """A warehouse for https://prefect.prh.test:<port>/api with two flows, the CA and the
    server's certificate, the directory running and seeded; nothing installed yet. Afterwards
    the server's files and units are put back as they were."""
    system = booted_system
    root = Path(tempfile.mkdtemp(prefix="prh-sign-in-test-", dir="/srv"))
    root.chmod(0o755)
    archive = Path("/root/prh-sign-in-kept.tar")  # inside only
    states = keep_server(system, archive)
    try:
        pki = root / "pki"
        pki.mkdir()
        issue(pki, "server", HOST_NAME, make_ca(pki))
        source = root / "source"
        (source / "flows").mkdir(parents=True)
        (source / "flows" / "hello.py").write_text(HELLO)
        git(source, "init", "-q", "-b", "main")
        commit_all(source, "flows")
        flow_repo = root / "flows.git"
        git(root, "clone", "-q", "--bare", str(source), str(flow_repo))
        port, upstream = two_free_ports()
        flow = {"repo": str(flow_repo), "entrypoint": "flows/hello.py:hello", "cron": NEVER}
        warehouse = bake_warehouse(
            root / "baked",
            work_pool=POOL,
            worker_user=WORKER_USER,
            server_port=str(port),
            prefect_api_url=f"https://{HOST_NAME}:{port}/api",
            flows={RUN: flow, PAUSED: flow},
        )
        directory = Directory(root / "ldap", free_port())
        directory.write()
        system.copy_in(root)
        system.run(["sh", "-c", f"echo '127.0.0.1 {HOST_NAME}' >>/etc/hosts"], check=True)
        for service in ("postgresql", "redis-server"):
            system.systemctl("is-active", "--quiet", service, check=True)
        retire_old_workers(system)
        start_directory(system, directory)
        yield Site(system, port, upstream, root, warehouse, directory)
    finally:
        try:
            system.systemctl("stop", "prh-test-slapd.service")
            put_back_server(system, archive, states)
        finally:
            shutil.rmtree(root, ignore_errors=True)


# --- 1. a directory file the installer cannot use: one line, nothing changed ------------------

BAD_DIRECTORIES = {
    # case: (the file's overrides, what the one line says)
    "missing-group": ({"OPERATOR_GROUP": None}, "missing OPERATOR_GROUP"),
    "wrong-bind-password": (
        {"DIRECTORY_BIND_PASSWORD": "not-the-password"},
        "cannot bind to ldap://127.0.0.1:",
    ),
}


@pytest.mark.parametrize("case", list(BAD_DIRECTORIES))
def test_install_server_refuses_a_directory_file_it_cannot_use_and_changes_nothing(
    site: Site, case: str
) -> None:
    overrides, message = BAD_DIRECTORIES[case]
    site.system.write_file("/root/bad-directory.env", site.directory.env_file(**overrides), 0o600)
    pki = site.root / "pki"
    before = site.snapshot()
    result = site.install_server(
        "--cert", str(pki / "server.crt"), "--key", str(pki / "server.key"),
        "--directory", "/root/bad-directory.env",
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and message in line, line
    assert "not-the-password" not in line
    assert result.stdout == ""
    assert site.snapshot() == before


# --- 2. the README's install ------------------------------------------------------------------


@pytest.fixture(scope="module")
def front(site: Site) -> str:
    """The README's `install-server.sh --cert … --key … --directory …` as written, with the
    directory file filled in for the test directory (and a short idle limit)."""
    site.system.write_file(
        "/root/directory.env",
        site.directory.env_file(SESSION_IDLE_SECONDS=str(IDLE_SECONDS)),
        mode=0o600,
    )
    assert "--directory ~/directory.env" in readme_server_command(site.warehouse)
    try:
        return install_as_the_readme_says(site.system, site.warehouse, site.root / "pki")
    except AssertionError as error:
        units = [f"--unit={unit}" for unit in SIGN_IN_UNITS]
        journal = site.system.run(["journalctl", "--no-pager", "-n", "120", *units]).stdout
        raise AssertionError(f"{error}\n--- the units' journal:\n{journal}") from None


def test_the_install_starts_the_sign_in_front_and_drops_the_shared_auth_string(
    site: Site, front: str
) -> None:
    system = site.system
    assert f"People sign in at {site.origin}/ with their directory account" in front, front
    for unit in SIGN_IN_UNITS:
        assert system.systemctl("is-active", unit).stdout.strip() == "active", unit
        assert system.systemctl("is-enabled", unit).stdout.strip() == "enabled", unit
    assert system.systemctl("is-active", "prefect-front.service").stdout.strip() != "active"
    for path in ("/etc/prefect-server/directory.env", "/etc/prefect-server/session.key"):
        assert system.run(["stat", "-c", "%a %U", path]).stdout == "600 root\n", path
    settings = system.run(["cat", "/etc/prefect-server/server.env"], check=True).stdout
    assert "PREFECT_SERVER_API_AUTH_STRING" not in settings


def test_install_again_changes_nothing(site: Site, front: str) -> None:
    result = site.install_server()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Nothing changed" in result.stdout, result.stdout


# --- 3. each role's calls, by status code -----------------------------------------------------

PAUSE = {"paused": True}


def role_calls(site: Site) -> list[tuple[str | None, str, str, object, int]]:
    """(user, method, path, body, status): allowed and refused calls of every role."""
    run_id = site.deployment(RUN)["id"]
    return [
        (None, "GET", "/health", None, 401),
        ("dave", "GET", "/health", None, 403),  # in the directory, in no Prefect group
        ("bob", "GET", f"/deployments/{run_id}", None, 200),
        ("bob", "POST", "/flow_runs/filter", {}, 200),
        ("bob", "PATCH", f"/deployments/{run_id}", PAUSE, 403),
        ("bob", "POST", f"/deployments/{run_id}/create_flow_run", {}, 403),
        ("alice", "PATCH", f"/deployments/{run_id}", {"paused": True, "schedules": []}, 403),
        ("alice", "PATCH", f"/deployments/{run_id}", {"description": "x"}, 403),
        ("alice", "DELETE", f"/deployments/{run_id}", None, 403),
        ("alice", "POST", "/variables/", {"name": "x", "value": "y"}, 403),
        ("svc-worker-1", "DELETE", f"/deployments/{run_id}", None, 403),
        ("svc-worker-1", "PATCH", f"/deployments/{run_id}", PAUSE, 403),
        ("svc-ci", "POST", f"/deployments/{run_id}/create_flow_run", {}, 403),
        ("svc-ci", "DELETE", "/variables/name/prh-test", None, 403),
        ("carol", "POST", "/variables/", {"name": "prh-test", "value": "y"}, 201),
        ("carol", "DELETE", "/variables/name/prh-test", None, 204),
        ("carol", "GET", "/admin/settings", None, 200),
    ]


def test_each_role_may_call_its_routes_and_is_refused_the_rest(site: Site, deployed: str) -> None:
    got = [
        (user, method, path, site.call(user, method, path, body))
        for user, method, path, body, _ in role_calls(site)
    ]
    want = [(user, method, path, status) for user, method, path, _, status in role_calls(site)]
    assert got == want


def test_the_operator_pauses_and_resumes_with_exactly_the_paused_field(
    site: Site, deployed: str
) -> None:
    run_id = site.deployment(RUN)["id"]
    assert site.call("alice", "PATCH", f"/deployments/{run_id}", PAUSE) == 204
    assert site.deployment(RUN)["paused"] is True
    assert site.call("alice", "PATCH", f"/deployments/{run_id}", {"paused": False}) == 204
    assert site.deployment(RUN)["paused"] is False


# --- 4. nobody but the front reaches the server -------------------------------------------------


def test_a_local_user_who_is_not_the_front_gets_no_answer(site: Site, front: str) -> None:
    system = site.system
    listening = system.run(["ss", "-Hltn"]).stdout
    assert f":{site.upstream} " not in listening, listening  # no TCP port at all
    probe = (
        "import socket, sys\n"
        "for target in sys.argv[1:]:\n"
        "    family = socket.AF_UNIX if target.startswith('/') else socket.AF_INET\n"
        "    address = target if target.startswith('/') else ('127.0.0.1', int(target))\n"
        "    with socket.socket(family) as s:\n"
        "        try:\n"
        "            s.connect(address)\n"
        "            print(target, 'connected')\n"
        "        except OSError as error:\n"
        "            print(target, type(error).__name__)\n"
    )
    targets = ["/run/prefect-server/api.sock", "/run/prefect-gate/gate.sock", str(site.upstream)]
    result = system.run(["runuser", "-u", "nobody", "--", "python3", "-c", probe, *targets])
    assert result.stdout.splitlines() == [
        "/run/prefect-server/api.sock PermissionError",
        "/run/prefect-gate/gate.sock PermissionError",
        f"{site.upstream} ConnectionRefusedError",
    ], result.stdout + result.stderr


# --- 5. machines: the CI job and the worker, each with its own account --------------------------


@pytest.fixture(scope="module")
def deployed(site: Site, front: str) -> str:
    """prw_deploy.py from the README's deploy shell with svc-ci's account."""
    result = site.deploy("svc-ci")
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_prw_deploy_as_svc_ci_applies_its_plan(site: Site, deployed: str) -> None:
    for name in (RUN, PAUSED):
        assert re.search(rf"(?m)^create +{name}$", deployed), deployed
        assert site.deployment(name)["paused"] is False


@pytest.fixture(scope="module")
def worker(site: Site, deployed: str) -> None:
    """install-worker.sh with svc-worker-1's own account in the worker's env file."""
    system = site.system
    system.run(["useradd", "--create-home", WORKER_USER], check=True)
    system.run(["git", "config", "--system", "--add", "safe.directory", "*"], check=True)
    env = [
        f"PREFECT_API_URL={site.api}",
        f"PREFECT_API_AUTH_STRING={auth_string('svc-worker-1')}",
        f"PREFECT_API_SSL_CERT_FILE={site.ca}",
    ]
    system.write_file(WORKER_ENV, "\n".join(env) + "\n", mode=0o600)
    result = system.run(
        ["env", "-C", "/", str(site.warehouse / "scripts/install-worker.sh")], timeout=900
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert system.systemctl("is-active", WORKER_UNIT).stdout.strip() == "active"


def test_the_worker_runs_a_deployment_to_completed_and_may_not_delete_it(
    site: Site, worker: None
) -> None:
    result = site.system.run(
        [sys.executable, "-c", RUN_DEPLOYMENT % (f"hello/{RUN}", 300)],
        env=site.client_env("alice"),
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    run = json.loads(result.stdout)
    assert run["state"] == "Completed", (run, site.system.journal(WORKER_UNIT)[-6000:])
    run_id = site.deployment(RUN)["id"]
    assert site.call("svc-worker-1", "DELETE", f"/deployments/{run_id}") == 403
    assert site.deployment(RUN)["id"] == run_id
    started = [
        line for line in site.audit() if line["route"] == "/deployments/{id}/create_flow_run"
    ]
    assert started[-1]["user"] == "alice" and started[-1]["flow_run"] == run["name"], started


# --- 6. people, in a browser ------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium_trusts_the_ca(site: Site, front: str) -> None:
    ca = x509.load_pem_x509_certificate(site.ca.read_bytes())
    der = base64.b64encode(ca.public_bytes(serialization.Encoding.DER)).decode()
    site.system.write_file(CHROMIUM_POLICY, json.dumps({"CACertificates": [der]}))


# The switch of a deployment's schedule on its page: the UI pauses a deployment with up to
# three schedules by switching each off (PATCH .../schedules/{schedule_id} {"active": false}).
SWITCH = 'button[role=switch][aria-label^="toggle "]'
SCHEDULE_ROUTE = "/deployments/{id}/schedules/{schedule_id}"


def schedule_active(site: Site, name: str) -> bool:
    (schedule,) = site.read(f"/deployments/{site.deployment(name)['id']}/schedules")  # type: ignore[misc]
    return schedule["active"]


def sign_in(browser, site: Site, user: str, password: str | None = None) -> None:  # noqa: ANN001
    browser.open(f"{site.origin}/")
    browser.wait_for_text("Sign in with your hospital account")
    browser.type_into("#user", user)
    browser.type_into("#password", password or USERS[user][1])
    browser.click("button[type=submit]")


def test_alice_signs_in_and_pauses_a_deployment_s_schedule(
    site: Site, deployed: str, chromium_trusts_the_ca: None
) -> None:
    deployment = site.deployment(PAUSED)
    with chromedriver(site.system, free_port(), "/root/chromium-alice") as browser:
        browser.open(f"{site.origin}/")
        browser.wait_for_text("Sign in with your hospital account")
        SCREENSHOT.parent.mkdir(exist_ok=True)
        browser.screenshot(SCREENSHOT)
        sign_in(browser, site, "alice")
        browser.find("#prh-sign-out")
        browser.open(f"{site.origin}/v2/deployments/deployment/{deployment['id']}")
        browser.find(f'{SWITCH}[aria-checked="true"]')
        browser.click(SWITCH)
        browser.find(f'{SWITCH}[aria-checked="false"]')
        browser.wait_for_text("Deployment schedule paused")
    assert schedule_active(site, PAUSED) is False
    assert SCREENSHOT.read_bytes().startswith(b"\x89PNG")


def test_bob_sees_the_deployments_but_his_pause_is_refused(
    site: Site, deployed: str, chromium_trusts_the_ca: None
) -> None:
    deployment = site.deployment(RUN)
    with chromedriver(site.system, free_port(), "/root/chromium-bob") as browser:
        sign_in(browser, site, "bob")
        browser.find("#prh-sign-out")  # signed in: the sign-in's own redirects are done
        browser.open(f"{site.origin}/v2/deployments")
        browser.wait_for_text(RUN, PAUSED)
        browser.open(f"{site.origin}/v2/deployments/deployment/{deployment['id']}")
        browser.find(f'{SWITCH}[aria-checked="true"]')
        browser.click(SWITCH)
        time.sleep(3)  # the PATCH is answered 403
        assert "Deployment schedule paused" not in browser.text()
    assert schedule_active(site, RUN) is True
    refused = [line for line in site.audit() if line["user"] == "bob" and line["method"] == "PATCH"]
    assert refused and refused[-1]["code"] == 403 and refused[-1]["deployment"] == RUN, refused


def test_a_wrong_password_is_refused_on_the_sign_in_page(
    site: Site, front: str, chromium_trusts_the_ca: None
) -> None:
    with chromedriver(site.system, free_port(), "/root/chromium-wrong") as browser:
        sign_in(browser, site, "alice", "not-her-password")
        browser.wait_for_text("Wrong user name or password")
        browser.open(f"{site.origin}/v2/deployments")
        browser.wait_for_text("Sign in with your hospital account")


def test_an_idle_session_ends_on_the_sign_in_page_and_stays_ended(
    site: Site, front: str, chromium_trusts_the_ca: None
) -> None:
    with chromedriver(site.system, free_port(), "/root/chromium-idle") as browser:
        sign_in(browser, site, "alice")
        browser.find("#prh-sign-out")
        started = time.monotonic()
        browser.wait_for_text(
            "signed out after a while without activity", timeout=IDLE_SECONDS + 60
        )
        assert time.monotonic() - started >= IDLE_SECONDS - 15
        browser.open(f"{site.origin}/v2/deployments")
        browser.wait_for_text("Sign in with your hospital account")


def test_signing_out_ends_the_session(site: Site, front: str, chromium_trusts_the_ca: None) -> None:
    with chromedriver(site.system, free_port(), "/root/chromium-out") as browser:
        sign_in(browser, site, "carol")
        browser.click("#prh-sign-out")
        browser.wait_for_text("You are signed out")
        browser.open(f"{site.origin}/v2/deployments")
        browser.wait_for_text("Sign in with your hospital account")


# --- 7. the record ------------------------------------------------------------------------------


def test_the_audit_names_who_paused_and_who_updated_which_deployment(
    site: Site, deployed: str
) -> None:
    flows = site.warehouse / "prefect" / "flows.json"
    entries = json.loads(flows.read_text())
    entries[RUN]["cron"] = "0 5 1 1 *"
    site.system.write_file(str(flows), json.dumps(entries, indent=2) + "\n")
    result = site.deploy("svc-ci")
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(rf"(?m)^update +{RUN}\b", result.stdout), result.stdout
    lines = site.audit()
    for line in lines:
        assert set(line) == {
            "time", "user", "role", "source_ip", "method", "route", "deployment", "flow_run",
            "code",
        }  # fmt: skip
    paused = [
        line
        for line in lines
        if line["user"] == "alice" and line["method"] == "PATCH" and line["deployment"] == PAUSED
    ]
    assert [(line["route"], line["role"], line["code"]) for line in paused] == [
        (SCHEDULE_ROUTE, "operator", 204)
    ], lines
    updated = [
        line
        for line in lines
        if line["user"] == "svc-ci" and line["method"] == "PATCH" and line["deployment"] == RUN
    ]
    assert updated and updated[-1]["code"] == 204 and updated[-1]["role"] == "deployer", lines
    logged = site.system.run(["cat", "/var/log/prefect-audit/audit.log"], check=True).stdout
    assert [json.loads(line) for line in logged.splitlines()] == lines
    assert "0 5 1 1 *" not in logged  # names and codes, never a body


def test_audit_py_answers_who_paused_the_deployment(site: Site, deployed: str) -> None:
    result = site.system.run(
        [str(site.warehouse / "scripts/audit.py"), "--since", "1d", "--deployment", PAUSED,
         "--user", "alice"],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == [
        "TIME", "USER", "ROLE", "SOURCE_IP", "METHOD", "ROUTE", "DEPLOYMENT", "FLOW_RUN", "CODE",
    ]  # fmt: skip
    # One row: her pause in the browser (the flow-run column is empty).
    assert [row.split()[1:] for row in rows] == [
        ["alice", "operator", "127.0.0.1", "PATCH", SCHEDULE_ROUTE, PAUSED, "204"]
    ], result.stdout


# --- 8. hardening -------------------------------------------------------------------------------


@pytest.mark.parametrize("unit", SIGN_IN_UNITS)
def test_every_unit_the_install_enables_scores_at_most_2_5(
    site: Site, front: str, unit: str
) -> None:
    result = site.system.run(["systemd-analyze", "security", "--no-pager", unit])
    assert exposure_level(result.stdout) <= 2.5, result.stdout[-3000:]
