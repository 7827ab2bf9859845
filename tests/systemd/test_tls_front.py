"""The Prefect server as the hospital network reaches it, under a real systemd: the TLS front
(nginx) installed by install-server.sh with a certificate from a throwaway CA for a host name
that is not 127.0.0.1 (an /etc/hosts alias inside), the worker and prw_deploy.py over HTTPS
trusting that CA through the system store, and what an operator sees when the certificate,
the trust or the credentials are wrong. The tests share one booted system and run in file
order: refusals first (nothing installed), then the front, then trust and the worker."""

from __future__ import annotations

import base64
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
from support.flow_runs import RUN_DEPLOYMENT
from support.front import (
    install_as_the_readme_says,
    issue,
    make_ca,
    retire_old_workers,
    two_free_ports,
)
from support.git import commit_all, git
from support.processes import free_port
from support.systemd import exposure_level
from support.warehouse import bake_warehouse

pytestmark = [pytest.mark.systemd, pytest.mark.timeout(1800)]

HOST_NAME = "prefect.prh.test"  # resolves only inside, through /etc/hosts
OTHER_NAME = "other.prh.test"
POOL = "tls-pool"
WORKER_USER = "tlsdeploy"
UNIT = f"prefect-worker-{POOL}.service"
WORKER_ENV = f"/etc/prefect-worker/{POOL}.env"
SYSTEM_STORE = "/etc/ssl/certs/ca-certificates.crt"
NEVER = "0 0 1 1 *"
HELLO = "from prefect import flow\n\n\n@flow\ndef hello() -> str:\n    return 'hello'\n"
INSTALLED = ("/etc/prefect-server", "/etc/systemd/system", "/opt", "/etc/nginx/sites-enabled")


# --- the site ---------------------------------------------------------------------------------


@dataclass
class Site:
    system: BootedSystem
    port: int
    upstream: int
    pki: Path  # same path here and inside: ca.crt, server.*, other.*, stray.key
    warehouse: Path  # same path here and inside
    flow_repo: Path

    @property
    def api(self) -> str:
        return f"https://{HOST_NAME}:{self.port}/api"

    def install_server(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.system.run(
            ["env", "-C", "/", str(self.warehouse / "scripts/install-server.sh"), *args],
            timeout=900,
        )

    def install_worker(self) -> subprocess.CompletedProcess[str]:
        return self.system.run(
            ["env", "-C", "/", str(self.warehouse / "scripts/install-worker.sh")], timeout=900
        )

    def auth(self) -> str:
        text = self.system.run(["cat", "/etc/prefect-server/server.env"], check=True).stdout
        return re.search(r"^PREFECT_SERVER_API_AUTH_STRING=(\S+)$", text, re.MULTILINE).group(1)

    def curl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.system.run(["curl", "-sS", "--max-time", "20", *args])

    def client_env(self) -> dict[str, str]:
        """The deploy shell of the README, inside (where the host name resolves)."""
        return {
            "PREFECT_API_URL": self.api,
            "PREFECT_API_AUTH_STRING": self.auth(),
            "PREFECT_API_SSL_CERT_FILE": SYSTEM_STORE,
            "PREFECT_HOME": "/root/prefect-client",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
        }

    def python(self, code: str, cwd: str = "/") -> str:
        result = self.system.run(
            [sys.executable, "-c", code], env=self.client_env(), cwd=cwd, timeout=600
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def write_worker_env(self, auth: str, *extra: str) -> None:
        lines = [f"PREFECT_API_URL={self.api}", f"PREFECT_API_AUTH_STRING={auth}", *extra]
        self.system.write_file(WORKER_ENV, "\n".join(lines) + "\n", mode=0o600)

    def snapshot(self) -> str:
        """Names, sizes and times of everything an install would change."""
        return self.system.run(
            ["find", *INSTALLED, "-maxdepth", "2", "-printf", "%p %s %T@ %m\n"]
        ).stdout


@pytest.fixture(scope="module")
def site(booted_system: BootedSystem) -> Iterator[Site]:
    """A warehouse for https://prefect.prh.test:<port>/api, the CA and certificates, and a
    flow repo, copied in; the host name aliased to 127.0.0.1 inside; nothing installed."""
    root = Path(tempfile.mkdtemp(prefix="prh-tls-test-", dir="/srv"))
    root.chmod(0o755)
    try:
        pki = root / "pki"
        pki.mkdir()
        ca = make_ca(pki)
        issue(pki, "server", HOST_NAME, ca)
        issue(pki, "other", OTHER_NAME, ca)
        issue(pki, "stray", HOST_NAME, ca)  # stray.key: a key of another certificate
        source = root / "source"
        (source / "flows").mkdir(parents=True)
        (source / "flows" / "hello.py").write_text(HELLO)
        git(source, "init", "-q", "-b", "main")
        commit_all(source, "flows")
        flow_repo = root / "flows.git"
        git(root, "clone", "-q", "--bare", str(source), str(flow_repo))
        port, upstream = two_free_ports()
        warehouse = bake_warehouse(
            root / "baked",
            work_pool=POOL,
            worker_user=WORKER_USER,
            server_port=str(port),
            prefect_api_url=f"https://{HOST_NAME}:{port}/api",
            flows={
                "tls-hello": {
                    "repo": str(flow_repo),
                    "entrypoint": "flows/hello.py:hello",
                    "cron": NEVER,
                }
            },
        )
        booted_system.copy_in(root)
        booted_system.run(
            ["sh", "-c", f"echo '127.0.0.1 {HOST_NAME} {OTHER_NAME}' >>/etc/hosts"], check=True
        )
        for service in ("postgresql", "redis-server"):
            booted_system.systemctl("is-active", "--quiet", service, check=True)
        retire_old_workers(booted_system)
        yield Site(booted_system, port, upstream, pki, warehouse, flow_repo)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- 1. refusals: one line each, nothing installed ----------------------------------------------

BAD_CERTIFICATES = {
    # case: (arguments as paths under the pki directory, what the one line says)
    "no-pair-yet": ((), "no certificate installed yet: run"),
    "missing-key": (("--cert", "server.crt", "--key", "absent.key"), "cannot read the key"),
    "key-without-cert": (("--key", "server.key"), "--key without --cert"),
    "mismatched-key": (("--cert", "server.crt", "--key", "stray.key"), "does not belong to"),
    "other-name": (
        ("--cert", "other.crt", "--key", "other.key"),
        f"is not for {HOST_NAME} (the host of prefect_api_url); it names: DNS:{OTHER_NAME}",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CERTIFICATES))
def test_install_server_refuses_a_bad_certificate_with_one_line_and_installs_nothing(
    site: Site, case: str
) -> None:
    args, message = BAD_CERTIFICATES[case]
    paths = [arg if arg.startswith("--") else str(site.pki / arg) for arg in args]
    before = site.snapshot()
    result = site.install_server(*paths)
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and message in line, line
    assert result.stdout == ""
    assert site.snapshot() == before
    assert not site.system.path("/etc/prefect-server/tls.key").exists()


# --- 2. the front -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def front(site: Site) -> str:
    """The README's `install-server.sh --cert … --key …` with the CA's pair for HOST_NAME."""
    # Without --directory: the nginx front with the shared auth string (the README's section
    # says so; tests/systemd/test_sign_in.py runs the command as written).
    return install_as_the_readme_says(
        site.system, site.warehouse, site.pki, leave_out=" --directory ~/directory.env"
    )


def test_the_front_answers_https_with_hsts_and_keeps_the_key_root_only(
    site: Site, front: str
) -> None:
    system = site.system
    assert f"The Prefect server is ready at https://{HOST_NAME}:{site.port}/api/ready" in front
    assert system.run(["stat", "-c", "%a %U", "/etc/prefect-server/tls.key"]).stdout == "600 root\n"
    for unit in ("prefect-front.service", "prefect-server.service", "prefect-services.service"):
        assert system.systemctl("is-active", unit).stdout.strip() == "active", unit
        assert system.systemctl("is-enabled", unit).stdout.strip() == "enabled", unit
    answer = site.curl("--cacert", str(site.pki / "ca.crt"), "-i", f"{site.api}/health")
    assert answer.returncode == 0, answer.stderr
    head, _, body = answer.stdout.partition("\n\n")  # text mode: \r\n read as \n
    assert head.startswith("HTTP/1.1 200"), head
    assert re.search(r"(?im)^strict-transport-security: max-age=31536000", head), head
    assert body.strip() == "true"
    # Prefect itself listens on loopback only; nothing but nginx on the public port.
    listening = system.run(["ss", "-Hltnp"]).stdout
    prefect = [line for line in listening.splitlines() if f":{site.upstream} " in line]
    assert len(prefect) == 1 and f"127.0.0.1:{site.upstream} " in prefect[0], listening
    public = [line for line in listening.splitlines() if f":{site.port} " in line]
    assert public and all("nginx" in line for line in public), listening
    # Debian's own nginx site (plain HTTP, port 80) is off.
    assert system.systemctl("is-active", "nginx.service").stdout.strip() != "active"


def test_plain_http_gets_a_redirect_and_no_api_answer(site: Site, front: str) -> None:
    answer = site.curl("-i", f"http://{HOST_NAME}:{site.port}/api/health")
    head, _, body = answer.stdout.partition("\n\n")  # text mode: \r\n read as \n
    assert head.startswith("HTTP/1.1 301"), answer.stdout
    assert f"location: https://{HOST_NAME}:{site.port}/api/health" in head.lower()
    assert "true" not in body
    port_80 = site.curl("-o", "/dev/null", "-w", "%{http_code}", f"http://{HOST_NAME}/")
    assert port_80.returncode != 0 or port_80.stdout != "200", port_80


def test_curl_without_the_ca_fails_verification(site: Site, front: str) -> None:
    """The CA is not in the machine's store yet: verification must fail (curl exit 60)."""
    answer = site.curl(f"{site.api}/health")
    assert answer.returncode == 60, (answer.returncode, answer.stdout, answer.stderr)


def test_the_front_unit_scores_at_most_2_5(site: Site, front: str) -> None:
    result = site.system.run(["systemd-analyze", "security", "--no-pager", "prefect-front.service"])
    assert exposure_level(result.stdout) <= 2.5, result.stdout[-3000:]


def test_install_server_again_keeps_the_installed_pair(site: Site, front: str) -> None:
    before = site.system.path("/etc/prefect-server/tls.crt").read_bytes()
    result = site.install_server()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Nothing changed" in result.stdout, result.stdout
    assert site.system.path("/etc/prefect-server/tls.crt").read_bytes() == before


# --- 3. the worker: trust and credentials checked before the unit is enabled --------------------


@pytest.fixture(scope="module")
def worker_user(site: Site, front: str) -> None:
    site.system.run(["useradd", "--create-home", WORKER_USER], check=True)
    site.system.run(["git", "config", "--system", "--add", "safe.directory", "*"], check=True)


def assert_refused(site: Site, message: str) -> None:
    result = site.install_worker()
    assert result.returncode == 1, result.stdout + result.stderr
    # pip may warn above it (this image's pip.conf); the script's own output is one line.
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-3000:]
    assert result.stderr.splitlines()[-1] == errors[0]
    assert site.system.systemctl("is-enabled", UNIT).stdout.strip() in ("not-found", "")


def test_install_worker_says_the_certificate_is_not_trusted(site: Site, worker_user: None) -> None:
    site.write_worker_env(site.auth())
    assert_refused(site, f"the certificate of {site.api} is not trusted")


@pytest.fixture(scope="module")
def trusted(site: Site, front: str) -> None:
    """The hospital CA in the machine's store, as the README says."""
    site.system.copy_in(site.pki / "ca.crt", "/usr/local/share/ca-certificates/prh-test-ca.crt")
    site.system.run(["update-ca-certificates"], check=True)


def test_install_worker_says_the_credentials_are_refused(
    site: Site, worker_user: None, trusted: None
) -> None:
    site.write_worker_env("admin:wrong")
    assert_refused(site, f"the server at {site.api} refused the credentials (HTTP 401)")


@pytest.fixture(scope="module")
def worker(site: Site, worker_user: None, trusted: None) -> None:
    site.write_worker_env(site.auth())
    result = site.install_worker()
    assert result.returncode == 0, result.stdout + result.stderr
    assert site.system.systemctl("is-active", UNIT).stdout.strip() == "active"


@pytest.fixture(scope="module")
def deployed(site: Site, trusted: None) -> str:
    """prw_deploy.py from the README's deploy shell, inside (the name resolves there)."""
    result = site.system.run(
        [sys.executable, "prefect/prw_deploy.py"],
        env=site.client_env(),
        cwd=str(site.warehouse),
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_a_deployment_runs_to_completed_over_https(site: Site, worker: None, deployed: str) -> None:
    assert re.search(r"(?m)^create +tls-hello$", deployed), deployed  # its plan line
    run = json.loads(site.python(RUN_DEPLOYMENT % ("hello/tls-hello", 300)))
    journal = site.system.journal(UNIT)
    assert run["state"] == "Completed", (run, journal[-6000:])
    assert run["id"] in journal
    COMPLETED.update(run)


COMPLETED: dict[str, str] = {}  # the run above, for the browser
# Kept after the run (see .gitignore); the warehouse README shows a copy of it.
SCREENSHOT = REPO_DIR / "test-artifacts" / "prefect-ui-over-https.png"
CHROMIUM_POLICY = "/etc/chromium/policies/managed/prh-hospital-ca.json"


def test_the_ui_in_chromium_logs_in_and_shows_the_deployment_and_the_completed_run(
    site: Site, trusted: None
) -> None:
    """Debian's Chromium inside (where the name resolves), trusting the CA by the enterprise
    policy a hospital's desktops get (CACertificates), opens https://<name>/ and logs in."""
    assert COMPLETED, "the HTTPS run test did not complete a run"
    ca = x509.load_pem_x509_certificate((site.pki / "ca.crt").read_bytes())
    der = base64.b64encode(ca.public_bytes(serialization.Encoding.DER)).decode()
    site.system.write_file(CHROMIUM_POLICY, json.dumps({"CACertificates": [der]}))
    origin = f"https://{HOST_NAME}:{site.port}"
    with chromedriver(site.system, free_port(), "/root/chromium-profile") as browser:
        browser.open(f"{origin}/")
        browser.type_into("input[type=password]", site.auth())
        browser.click("button[type=submit]")
        browser.wait_for_text("Dashboard")
        browser.open(f"{origin}/v2/deployments")
        browser.wait_for_text("tls-hello")
        browser.open(f"{origin}/v2/runs")
        page = browser.wait_for_text(COMPLETED["name"], "Completed")
        assert browser.url().startswith(f"{origin}/v2/runs"), browser.url()
        SCREENSHOT.parent.mkdir(exist_ok=True)
        browser.screenshot(SCREENSHOT)
    # The run's card in the list: "<flow> / <name>", its tags, its state, …, "Work Pool …".
    card = page.split(COMPLETED["name"], 1)[1].split("Work Pool", 1)[0]
    assert "Completed" in card.splitlines(), page
    assert SCREENSHOT.read_bytes().startswith(b"\x89PNG")


# --- 4. a running worker whose credentials or trust go wrong: one journal line, backoff --------


def wait_for_line(site: Site, before: str, needle: str, timeout: float = 60) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = site.system.journal(UNIT)[len(before) :]
        if needle in new:
            return new.splitlines()
        time.sleep(1)
    raise AssertionError(f"no {needle!r} in the journal:\n{site.system.journal(UNIT)[-4000:]}")


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("wrong-auth", "refused the credentials (HTTP 401): set PREFECT_API_AUTH_STRING"),
        ("no-ca", "is not trusted (unable to get local issuer certificate)"),
    ],
)
def test_a_worker_that_cannot_use_the_server_logs_one_line_and_keeps_retrying(
    site: Site, worker: None, case: str, message: str
) -> None:
    auth = site.auth()
    certifi = f"/opt/prefect-worker-{POOL}/venv/lib/python3.11/site-packages/certifi/cacert.pem"
    if case == "wrong-auth":
        site.write_worker_env("admin:wrong")
    else:  # a VM whose trust lacks the hospital CA: Prefect's own default bundle
        site.write_worker_env(auth, f"PREFECT_API_SSL_CERT_FILE={certifi}")
    before = site.system.journal(UNIT)
    try:
        site.system.systemctl("restart", "--no-block", UNIT, check=True)
        wait_for_line(site, before, message)
        time.sleep(20)  # retries at 5 and 15 s: still the one line
        new = site.system.journal(UNIT)[len(before) :].splitlines()
        errors = [line for line in new if line.startswith("error: ")]
        assert len(errors) == 1 and message in errors[0], new
        assert auth not in "\n".join(new)
        shown = site.system.systemctl("show", "-p", "NRestarts", "-p", "ActiveState", UNIT).stdout
        assert "NRestarts=0" in shown and "ActiveState=activating" in shown, shown
    finally:
        site.write_worker_env(auth)
        site.system.systemctl("restart", UNIT, check=True)
    assert site.system.systemctl("is-active", UNIT).stdout.strip() == "active"
