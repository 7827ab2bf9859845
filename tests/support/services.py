"""Live services for the tests: a Prefect server, a loopback S3 server, the processes behind them.

Every process starts in its own session (``start_new_session=True``) and is stopped at teardown
by its process-group id, SIGTERM first and SIGKILL after a grace period, also when the test
fails. Everything binds to 127.0.0.1 on a free port and keeps its state under pytest's tmp dirs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

LOOPBACK = "127.0.0.1"
BIN = Path(sys.executable).parent

# Test-only speed-ups, all real Prefect 3.9 settings (prefect/settings/models/):
# a worker polls every second instead of every 10 and heartbeats every 5 s instead of 30;
# the server's scheduler loop runs every 5 s instead of 60.
FAST_CLIENT_SETTINGS = {
    "PREFECT_WORKER_QUERY_SECONDS": "1",
    "PREFECT_WORKER_HEARTBEAT_SECONDS": "5",
}
FAST_SERVER_SETTINGS = {
    "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
    "PREFECT_SERVER_UI_ENABLED": "false",
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


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


def process_alive(pid: int) -> bool:
    """True while *pid* exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def group_pids(pgid: int) -> list[int]:
    """Live processes whose process group is *pgid* (from /proc)."""
    pids = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(stat_file.parent.name))
    return pids


def descendants(pid: int) -> list[int]:
    """*pid* and every live process below it."""
    children: dict[int, list[int]] = {}
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(stat_file.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def signal_all(pids: Iterable[int], sig: int) -> None:
    """Send *sig* to each of *pids* that still exists."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


@dataclass
class ManagedProcess:
    """One command running in its own session, logging to *log_path*."""

    argv: Sequence[str]
    env: Mapping[str, str] = field(repr=False)
    log_path: Path
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        assert self.popen is not None, "process not started"
        return self.popen.pid

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            list(self.argv),
            env=dict(self.env),
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def describe(self, lines: int = 30) -> str:
        """The command and the tail of its log, for failure messages."""
        tail = "\n".join(self.log_text().splitlines()[-lines:])
        return f"{' '.join(self.argv)}\n--- last lines of {self.log_path} ---\n{tail}"

    def wait_http(self, url: str, timeout: float = 60.0) -> None:
        """Block until *url* answers with a non-5xx status; fail early if the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"process exited before {url} answered:\n{self.describe()}")
            try:
                with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (loopback URL)
                    return
            except urllib.error.HTTPError as exc:
                if exc.code < 500:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{url} did not answer within {timeout:.0f}s:\n{self.describe()}")

    def wait_for_log(self, text: str, timeout: float = 60.0) -> None:
        """Block until *text* appears in the log; fail early if the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log_text():
                return
            if not self.alive():
                raise RuntimeError(f"process exited before logging {text!r}:\n{self.describe()}")
            time.sleep(0.2)
        raise TimeoutError(f"{text!r} not logged within {timeout:.0f}s:\n{self.describe()}")

    def send_signal(self, sig: int) -> None:
        """Signal the main process only (as systemd's KillMode=mixed does first)."""
        os.kill(self.pid, sig)

    def kill_tree(self) -> None:
        """SIGKILL the process and everything below it at once, as a power loss would."""
        signal_all(set(descendants(self.pid)) | set(group_pids(self.pid)), signal.SIGKILL)
        assert self.popen is not None
        self.popen.wait(timeout=10)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the whole process group, SIGKILL what is left after *grace* seconds."""
        if self.popen is None:
            return
        try:
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.popen.wait(timeout=grace)
            # Children that outlived the leader (e.g. a flow run) are still in its group.
            deadline = time.monotonic() + grace
            while group_pids(self.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            self._signal_group(signal.SIGKILL)
        finally:
            if self._log is not None:
                self._log.close()

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass


@contextmanager
def managed_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log_path: Path,
    ready_url: str | None = None,
    cwd: Path | None = None,
    timeout: float = 60.0,
) -> Iterator[ManagedProcess]:
    """Run *argv* for the duration of the block, ready once *ready_url* answers."""
    process = ManagedProcess(argv, env, log_path, cwd)
    try:
        process.start()
        if ready_url:
            process.wait_http(ready_url, timeout)
        yield process
    finally:
        process.stop()


class ProcessPool:
    """Processes a test starts (workers, ...); all of them are stopped at teardown."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[ManagedProcess] = []

    def start(
        self, argv: Sequence[str], *, env: Mapping[str, str], name: str, cwd: Path | None = None
    ) -> ManagedProcess:
        log_path = self.log_dir / f"{name}-{len(self.started)}.log"
        process = ManagedProcess(argv, env, log_path, cwd).start()
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.started):
            process.stop()


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
def running_prefect_server(root: Path) -> Iterator[PrefectServer]:
    """`prefect server start` on a free loopback port with SQLite under *root*."""
    port = free_port()
    home = root / "server-home"
    env = offline_env(home)
    env.update(
        FAST_SERVER_SETTINGS,
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
