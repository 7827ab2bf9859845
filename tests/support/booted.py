"""A real, booted systemd for the tests: this machine's root, copy-on-write, in a container.

`BootedSystem` mounts a tmpfs, then an overlayfs whose lower layer is this machine's `/` and
whose upper and work dirs live on that tmpfs, writes a fresh `/etc/machine-id` into the
merged tree and boots it with `systemd-nspawn -b`. The container shares this machine's
network (a server on 127.0.0.1 here is reachable from inside, and the other way round) and
writes nothing to the machine: every change lands on the tmpfs, gone after teardown.

    with booted(tmp_path) as system:
        system.copy_in(Path("/srv/prh-test-1234"))           # host files, same path inside
        system.run(["useradd", "-m", "deploy"])              # as root, clean environment
        system.run(["id"], user="deploy")
        system.systemctl("start", "redis-server")
        print(system.journal("redis-server"))
        system.reboot()                                      # power off, boot the same tree

Commands run as root through `nsenter -t <container PID 1> -a` with a clean login-like
environment (`PATH`, `HOME`, `LANG`; pass `env=` for more). Teardown powers the container off
(`systemctl poweroff`, SIGKILL of its PID 1 if that hangs) and unmounts the overlay, then the
tmpfs, also when a test failed: nothing stays in /proc/mounts.

Only one container boots at a time on a machine: when the environment variable
`PRH_NSPAWN_LOCK` names a file, the harness holds an exclusive `flock` on it from before the
mounts until after the unmounts.
"""

from __future__ import annotations

import fcntl
import os
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest

from support.commands import REPO_DIR
from support.processes import proc_stats

LOCK_VARIABLE = "PRH_NSPAWN_LOCK"
NSPAWN_RUNTIME = Path("/run/systemd/nspawn")
CLEAN_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}


class BootError(RuntimeError):
    """The container did not boot, or did not power off."""


# The booted system mounts its own tmpfs here, hiding the machine's files under them.
HIDDEN_INSIDE = (Path("/tmp"), Path("/run"))  # noqa: S108 (named, not written to)


def check_visible_inside(checkout: Path = REPO_DIR) -> None:
    """The tests run the checkout's venv inside the booted system: a checkout under /tmp or
    /run is not there, so say so in one line before booting (not `env: ...: No such file`)."""
    for hidden in HIDDEN_INSIDE:
        if checkout.resolve().is_relative_to(hidden):
            raise BootError(
                f"the checkout {checkout} is under {hidden}, which the booted system mounts "
                "afresh: clone it elsewhere (e.g. under /work or /srv)"
            )


def mounted(path: Path) -> bool:
    """True when *path* is a mount point (per /proc/mounts)."""
    target = str(path)
    return any(line.split()[1] == target for line in Path("/proc/mounts").read_text().splitlines())


def fs_type(path: Path) -> str | None:
    """The filesystem type mounted exactly at *path*, or None."""
    found = None
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if fields[1] == str(path):
            found = fields[2]
    return found


def _check(argv: Sequence[str]) -> None:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise BootError(f"{shlex.join(argv)}: {result.stderr.strip()}")


def _children(pid: int) -> list[int]:
    return [child for child, fields in proc_stats() if int(fields[1]) == pid]


class BootedSystem:
    """One container booted from an overlay of `/` kept under *root* (see the module doc)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmpfs = root / "tmpfs"
        self.merged = root / "merged"
        self.log_path = root / "nspawn.log"
        self.nspawn: subprocess.Popen[bytes] | None = None
        self.pid1 = 0
        self._lock: IO[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._mounted_runtime = False

    # --- lifecycle -------------------------------------------------------------------------

    def boot(self, timeout: float = 300) -> None:
        """Take the lock, mount the overlay and boot it until systemd reports it is up."""
        check_visible_inside()
        self._take_lock()
        self._mount()
        self._start(timeout)

    def shutdown(self) -> None:
        """Power off (if booted) and unmount everything; safe to call more than once."""
        try:
            if self.nspawn is not None:
                self.poweroff()
        finally:
            try:
                self._unmount()
            finally:
                self._release_lock()

    def poweroff(self, timeout: float = 90) -> None:
        """`systemctl poweroff` and wait for the container to exit; SIGKILL its PID 1 (the
        whole container) if it does not within *timeout* seconds."""
        if self.nspawn is None:
            return
        if self.nspawn.poll() is None:
            subprocess.run(
                self._nsenter(["systemctl", "poweroff", "--no-block"]),
                capture_output=True,
                timeout=30,
            )
            try:
                self.nspawn.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                for pid in (self.pid1, self.nspawn.pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.nspawn.wait(timeout=30)
        self.nspawn = None
        self.pid1 = 0
        if self._log is not None:
            self._log.close()
            self._log = None

    def reboot(self, timeout: float = 300) -> None:
        """Power off and boot the same tree again (what a VM's reboot keeps, this keeps)."""
        self.poweroff()
        self._start(timeout)

    # --- inside the container ----------------------------------------------------------------

    def run(
        self,
        argv: Sequence[str],
        *,
        user: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        input: str | None = None,
        timeout: float = 300,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run *argv* inside, as root (or *user*, through runuser), in a clean environment plus
        *env*, from *cwd* (default: /root for root, / for a user); output captured as text.
        With *check*, a non-zero exit raises with its output."""
        home = "/root" if user is None else f"/home/{user}"
        environment = {**CLEAN_ENV, "HOME": home, **(env or {})}
        if user is not None:
            environment["USER"] = environment["LOGNAME"] = user
        directory = cwd or ("/root" if user is None else "/")
        command = ["env", "-i", f"--chdir={directory}"]
        command += [*(f"{k}={v}" for k, v in environment.items()), *argv]
        if user is not None:
            command = ["runuser", "-u", user, "--", *command]
        result = subprocess.run(
            self._nsenter(command),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{shlex.join(argv)} exited {result.returncode} inside the container:\n"
                f"{result.stdout}{result.stderr}"
            )
        return result

    def spawn(self, argv: Sequence[str], *, user: str | None = None) -> subprocess.Popen[str]:
        """Start *argv* inside in the background (as *user*) with a pipe to its stdin and
        stdout: closing stdin is how to tell a well-behaved helper to exit; it dies with the
        container otherwise."""
        home = "/root" if user is None else f"/home/{user}"
        command = ["env", "-i", *(f"{k}={v}" for k, v in {**CLEAN_ENV, "HOME": home}.items())]
        if user is not None:
            command = ["runuser", "-u", user, "--", *command]
        return subprocess.Popen(
            self._nsenter([*command, *argv]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def systemctl(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return self.run(["systemctl", "--no-pager", *args], check=check)

    def journal(self, unit: str, *args: str) -> str:
        """`journalctl -u <unit>` messages (no timestamps), the whole boot history kept."""
        return self.run(["journalctl", "--no-pager", "-o", "cat", "-u", unit, *args]).stdout

    def wait_running(self, timeout: float = 300) -> str:
        """Wait until `systemctl is-system-running` says `running` (or `degraded`: a unit of
        this machine's image that cannot start in a container); returns the state."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            if self.nspawn is None or self.nspawn.poll() is not None:
                raise BootError(f"the container exited while booting:\n{self.log_tail()}")
            state = self.systemctl("is-system-running").stdout.strip()
            if state in ("running", "degraded"):
                return state
            time.sleep(0.5)
        jobs = self.systemctl("list-jobs").stdout if self.pid1 else ""
        raise BootError(
            f"not running after {timeout:.0f}s (state {state!r}); jobs:\n{jobs}\n{self.log_tail()}"
        )

    def path(self, inside: str | Path) -> Path:
        """The host path of *inside* (an absolute path in the container) in the merged tree;
        writing there is writing inside."""
        return self.merged / Path(inside).relative_to("/")

    def copy_in(self, host_path: Path, inside: str | Path | None = None) -> Path:
        """Copy a host file or tree into the container (same path unless *inside* is given),
        owner and modes kept; returns the path inside. /tmp and /run inside are the booted
        system's own tmpfs mounts, which hide what is copied there, and a service with
        PrivateTmp= sees neither /tmp nor /var/tmp: /srv suits fixtures."""
        target = Path(inside or host_path)
        destination = self.path(target)
        destination.parent.mkdir(parents=True, exist_ok=True)
        if host_path.is_dir():
            shutil.copytree(host_path, destination, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copy2(host_path, destination)
        return target

    def write_file(self, inside: str | Path, text: str, mode: int = 0o644) -> None:
        """Write *text* to the file *inside* (owned by root), creating its directories."""
        destination = self.path(inside)
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(text)
        destination.chmod(mode)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    # --- internals ---------------------------------------------------------------------------

    def _nsenter(self, argv: Sequence[str]) -> list[str]:
        """*argv* in every namespace of the container (from its root directory: nsenter's
        --wd would resolve the directory on the host, so run() changes it with env -C)."""
        if not self.pid1:
            raise BootError("the container is not booted")
        return ["nsenter", "-t", str(self.pid1), "-a", *argv]

    def _take_lock(self) -> None:
        lock_path = os.environ.get(LOCK_VARIABLE)
        if lock_path and self._lock is None:
            self._lock = open(lock_path, "ab")  # noqa: SIM115 (held until _release_lock)
            fcntl.flock(self._lock, fcntl.LOCK_EX)

    def _release_lock(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def _mount(self) -> None:
        self.tmpfs.mkdir(parents=True, exist_ok=True)
        self.merged.mkdir(parents=True, exist_ok=True)
        _check(["mount", "-t", "tmpfs", "-o", "mode=755", "prh-booted", str(self.tmpfs)])
        upper, work = self.tmpfs / "upper", self.tmpfs / "work"
        upper.mkdir()
        work.mkdir()
        options = f"lowerdir=/,upperdir={upper},workdir={work}"
        _check(["mount", "-t", "overlay", "prh-booted", "-o", options, str(self.merged)])
        machine_id = self.merged / "etc" / "machine-id"
        machine_id.unlink(missing_ok=True)
        machine_id.write_text(uuid.uuid4().hex + "\n")
        if fs_type(NSPAWN_RUNTIME) != "tmpfs":
            NSPAWN_RUNTIME.mkdir(parents=True, exist_ok=True)
            _check(["mount", "-t", "tmpfs", "-o", "mode=755", "prh-nspawn", str(NSPAWN_RUNTIME)])
            self._mounted_runtime = True

    def _unmount(self) -> None:
        for path, mine in (
            (self.merged, True),
            (self.tmpfs, True),
            (NSPAWN_RUNTIME, self._mounted_runtime),
        ):
            if not mine:
                continue
            deadline = time.monotonic() + 30
            while mounted(path):
                result = subprocess.run(["umount", str(path)], capture_output=True, timeout=60)
                if result.returncode != 0 and time.monotonic() > deadline:
                    subprocess.run(["umount", "--lazy", str(path)], check=True, timeout=60)
                elif result.returncode != 0:
                    time.sleep(0.5)
        self._mounted_runtime = False

    def _start(self, timeout: float) -> None:
        self._log = self.log_path.open("ab")
        self.nspawn = subprocess.Popen(
            [
                "systemd-nspawn",
                "-D",
                str(self.merged),
                "--register=no",
                "--keep-unit",
                "--link-journal=no",
                "--console=passive",
                "-b",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while not self.pid1:
            if self.nspawn.poll() is not None:
                raise BootError(f"systemd-nspawn exited:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise BootError(f"no container PID 1 after 30 s:\n{self.log_tail()}")
            children = _children(self.nspawn.pid)
            if children:
                self.pid1 = children[0]
            else:
                time.sleep(0.1)
        # PID 1 is the nspawn child first, then execs systemd: wait for systemd to answer.
        deadline = time.monotonic() + timeout
        while True:
            try:
                if Path(f"/proc/{self.pid1}/comm").read_text().strip() == "systemd":
                    break
            except FileNotFoundError:
                pass
            if self.nspawn.poll() is not None or time.monotonic() > deadline:
                raise BootError(f"systemd did not start:\n{self.log_tail()}")
            time.sleep(0.1)
        self.wait_running(max(deadline - time.monotonic(), 1))


@contextmanager
def booted(root: Path) -> Iterator[BootedSystem]:
    """A booted system under *root* for the duration of the block; always torn down."""
    system = BootedSystem(root)
    try:
        system.boot()
        yield system
    finally:
        system.shutdown()


@pytest.fixture(scope="session")
def booted_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BootedSystem]:
    """One booted systemd for the whole session (boot ~3 s on an idle machine); tests share
    it, so each leaves behind only what later tests may see."""
    with booted(tmp_path_factory.mktemp("booted")) as system:
        yield system
