"""Processes the tests start: each in its own session (``start_new_session=True``), stopped at
teardown by its process-group id, SIGTERM first and SIGKILL after a grace period, also when the
test fails; and the /proc look-ups that prove nothing is left behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def process_alive(pid: int) -> bool:
    """True while *pid* exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def proc_stats() -> Iterator[tuple[int, list[str]]]:
    """Each process's pid and the fields of /proc/<pid>/stat after its name (state, ppid,
    pgrp, ...); a process that exits during the scan is skipped."""
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        yield int(stat_file.parent.name), fields


def group_pids(pgid: int) -> list[int]:
    """Live processes whose process group is *pgid* (from /proc)."""
    return [pid for pid, fields in proc_stats() if int(fields[2]) == pgid and fields[0] != "Z"]


def descendants(pid: int) -> list[int]:
    """*pid* and every live process below it."""
    children: dict[int, list[int]] = {}
    for child, fields in proc_stats():
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(child)
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


def default_signals() -> None:
    """In the child, before exec: SIGINT and SIGQUIT back to their defaults, as systemd starts
    a service. A run from a background shell (`make test &`, some CI runners) inherits them
    ignored, and a Prefect worker stops on SIGTERM by sending itself SIGINT: it would ignore
    the stop."""
    for sig in (signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)


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
            preexec_fn=default_signals,
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
