"""Systemd unit files in the tests: run a worker the way its unit says, without systemd;
rewrite a unit's ExecStart=; score a unit's hardening offline.

The tests take the command, environment and stop behaviour from the generated unit file
itself (ExecStart=, Environment=, EnvironmentFile=, ExecStop=, KillMode=, KillSignal=,
TimeoutStopSec=), so what they prove is what the unit does. Only paths that differ on the
test machine (the worker venv) and specifiers (%H) are substituted.
"""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from support.commands import run
from support.processes import ManagedProcess, descendants, group_pids, process_alive, signal_all

VARIABLE = re.compile(r"\$\$|\$\{(\w+)\}|\$(\w+)")


@dataclass(frozen=True)
class Unit:
    """The [Service] section of a unit file: every key with all its values, in order."""

    service: dict[str, list[str]]

    @classmethod
    def read(cls, path: Path) -> Unit:
        """The unit file, then its drop-ins (`<unit>.d/*.conf`, in name order) on top."""
        service: dict[str, list[str]] = {}
        for file in [path, *sorted(path.with_name(path.name + ".d").glob("*.conf"))]:
            section = None
            for raw in file.read_text().splitlines():
                line = raw.strip()
                if not line or line.startswith(("#", ";")):
                    continue
                if line.startswith("["):
                    section = line.strip("[]")
                elif section == "Service":
                    key, _, value = line.partition("=")
                    service.setdefault(key.strip(), []).append(value.strip())
        return cls(service)

    def one(self, key: str, default: str | None = None) -> str:
        values = self.service.get(key)
        if not values:
            if default is None:
                raise KeyError(f"the unit has no {key}=")
            return default
        return values[-1]

    def all(self, key: str) -> list[str]:
        return [value for value in self.service.get(key, []) if value]

    def environment(self) -> dict[str, str]:
        """Environment= assignments (quoted words may hold spaces), later lines winning."""
        env: dict[str, str] = {}
        for value in self.all("Environment"):
            for word in shlex.split(value):
                name, _, text = word.partition("=")
                env[name] = text
        return env

    def stop_timeout(self) -> float:
        text = self.one("TimeoutStopSec", "90")
        return float(text.removesuffix("s"))

    def kill_signal(self) -> int:
        return int(getattr(signal, self.one("KillSignal", "SIGTERM")))


def read_env_file(path: Path) -> dict[str, str]:
    """An EnvironmentFile=: KEY=VALUE lines, comments and blank lines ignored."""
    env = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";")):
            name, _, value = line.partition("=")
            env[name.strip()] = value.strip().strip("\"'")
    return env


def command_line(value: str, env: Mapping[str, str], specifiers: Mapping[str, str]) -> list[str]:
    """An Exec*= line as systemd runs it: split into words, then `${VAR}` substituted in
    place, a lone `$VAR` word split on whitespace, `$$` a literal `$`, `%X` specifiers."""
    value = value.lstrip("-@:+!")  # exit-status and privilege prefixes do not change the argv
    words: list[str] = []
    for word in shlex.split(value):
        lone = re.fullmatch(r"\$(\w+)", word)
        if lone:
            words += env.get(lone.group(1), "").split()
            continue
        word = VARIABLE.sub(
            lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1) or m.group(2), ""), word
        )
        words.append(_specifiers(word, specifiers))
    return words


def _specifiers(word: str, specifiers: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        if key == "%":
            return "%"
        if key not in specifiers:
            raise KeyError(f"specifier %{key} in the unit: the test does not emulate it")
        return specifiers[key]

    return re.sub(r"%(.)", replace, word)


def wait_for_descendant(root: int, needle: str, timeout: float) -> int:
    """The first process below *root* whose command line contains *needle*."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in descendants(root):
            try:
                if needle in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                    return pid
            except FileNotFoundError:
                continue
        time.sleep(0.1)
    raise TimeoutError(f"no process running {needle!r} below PID {root} after {timeout:.0f}s")


def _unit_leftovers(main: int, known: list[int], mode: str) -> list[int]:
    """The unit's processes still alive: the main one, and for control-group/mixed the rest."""
    if mode == "process":
        return [main] if process_alive(main) else []
    candidates = set(descendants(main)) | set(group_pids(main)) | set(known)
    return sorted(pid for pid in candidates if process_alive(pid))


@dataclass
class StopReport:
    """What `systemctl stop` did: ExecStop exit codes and whether SIGKILL was needed."""

    exec_stop_codes: list[int]
    sigkilled: bool
    seconds: float
    leftovers: list[str]  # the command lines SIGKILL ended, for the failure message


def systemctl_stop(
    unit: Unit, worker: ManagedProcess, env: Mapping[str, str], specifiers: Mapping[str, str]
) -> StopReport:
    """Stop *worker* as systemd stops the service: ExecStop= (with $MAINPID), then KillSignal=
    per KillMode= (control-group: every process of the unit; mixed/process: the main one),
    then SIGKILL to what is left after TimeoutStopSec= (control-group and mixed)."""
    started = time.monotonic()
    deadline = started + unit.stop_timeout()
    main = worker.pid
    stop_env = {**env, "MAINPID": str(main)}
    codes = []
    for line in unit.all("ExecStop"):
        argv = command_line(line, stop_env, specifiers)
        remaining = max(deadline - time.monotonic(), 0.1)
        try:
            codes.append(subprocess.run(argv, env=stop_env, timeout=remaining).returncode)
        except subprocess.TimeoutExpired:
            codes.append(-signal.SIGKILL)
    mode = unit.one("KillMode", "control-group")
    unit_processes = sorted(set(descendants(main)) | set(group_pids(main)))
    signal_all(unit_processes if mode == "control-group" else [main], unit.kill_signal())
    # systemd waits for the main process and (except for KillMode=process) the rest of the
    # unit's processes to exit, up to TimeoutStopSec=.
    while (
        leftovers := _unit_leftovers(main, unit_processes, mode)
    ) and time.monotonic() < deadline:
        time.sleep(0.1)
    sigkilled = bool(leftovers)
    killed = [command_of(pid) for pid in leftovers]
    if sigkilled:
        signal_all(leftovers, signal.SIGKILL)
    if worker.popen is not None:
        worker.popen.wait(timeout=10)
    return StopReport(codes, sigkilled, time.monotonic() - started, killed)


def command_of(pid: int) -> str:
    """*pid* and its command line, as far as /proc still has it."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return f"{pid}: (gone)"
    return f"{pid}: " + " ".join(arg.decode(errors="replace") for arg in argv if arg)


def with_exec_start(unit_text: str, executable: Path) -> str:
    """The unit with ExecStart's program replaced by *executable*, arguments kept."""
    return re.sub(r"^ExecStart=\S+", f"ExecStart={executable}", unit_text, flags=re.MULTILINE)


def exposure_level(text: str) -> float:
    """The overall exposure (0 safe … 10 exposed) in `systemd-analyze security` output."""
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", text)
    assert match, text
    return float(match.group(1))


def exposure(unit: Path) -> float:
    """`systemd-analyze security --offline=true` overall exposure of the unit file *unit*."""
    result = run(["systemd-analyze", "security", "--offline=true", str(unit)], cwd=unit.parent)
    return exposure_level(result.stdout + result.stderr)
