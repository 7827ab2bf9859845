"""What every benchmark shares: sizes, repetitions, timed subprocesses and the result types."""

from __future__ import annotations

import compileall
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

REPO_DIR = Path(__file__).resolve().parent.parent

PYTHON = sys.executable
BIN = Path(PYTHON).parent


T = TypeVar("T")


@dataclass(frozen=True)
class Sizes:
    """How much each benchmark does. `--quick` shrinks everything for the smoke test."""

    repetitions: int = 3
    # The loads compared side by side take turns going first (alternated): an
    # even count, so each goes first as often as the other.
    paired_repetitions: int = 4
    # A load into PostgreSQL and psql's of the same file vary most from one run to the next
    # (psql alone took 0.79 to 1.30 s on the quoted file on 2026-12-07): six of each.
    postgres_repetitions: int = 6
    csv_rows: int = 1_000_000
    xlsx_rows: tuple[int, ...] = (100_000,)  # data rows of the xlsx loads
    hl7_messages: int = 100_000
    fhir_resources: int = 200_000
    merge_rows: int = 1_000_000  # the size: 1M rows over a 1M-row table
    deploy_flows: int = 100  # the warehouse's size a user decides on (issue 26)
    disk_runs: int = 10
    warm_repetitions: int = 5  # the warm dependency step is short: more samples
    # () = the suites' times are read from the latest run's reports (benchmarks/suite.py)
    suite_selection: tuple[str, ...] = ()


FULL = Sizes()
QUICK = Sizes(
    repetitions=1,
    paired_repetitions=1,
    postgres_repetitions=1,
    csv_rows=2_000,
    xlsx_rows=(500,),
    hl7_messages=200,
    fhir_resources=200,
    merge_rows=200,
    deploy_flows=3,
    disk_runs=2,
    suite_selection=("tests/test_ingest_hooks.py::test_default_answers_are_accepted",),
)


class BenchError(RuntimeError):
    """A benchmarked command failed: the figure would be meaningless."""


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_rss_bytes: int
    output: str


def run_timed(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float = 900,
    check: bool = True,
) -> Run:
    """Run *argv* to completion: wall seconds, the peak RSS of the process, output.

    The peak is the largest VmHWM read from /proc while it runs (every 20 ms). wait4's
    ru_maxrss would not do: a spawned child's counts the parent's RSS at the fork (it is
    carried across exec), so a small tool run from this bench showed the bench's own size.
    The child runs in its own session, so a timeout kills everything it started."""
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        killer = threading.Timer(timeout, _kill_group, [process.pid])
        killer.start()
        peaks: list[int] = []
        done = threading.Event()
        watcher = threading.Thread(target=_watch_peak_rss, args=(process.pid, done, peaks))
        watcher.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            killer.cancel()
            done.set()
            watcher.join()
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        output = out.read().decode(errors="replace")
    if check and process.returncode != 0:
        tail = "\n".join(output.splitlines()[-25:])
        raise BenchError(f"`{' '.join(map(str, argv))}` exited {process.returncode}:\n{tail}")
    return Run(seconds, max(peaks) if peaks else usage.ru_maxrss * 1024, output)


def _watch_peak_rss(pid: int, done: threading.Event, peaks: list[int]) -> None:
    """Append the process's VmHWM (bytes) every 20 ms until *done* or it exits."""
    status = Path(f"/proc/{pid}/status")
    while not done.is_set():
        try:
            text = status.read_text()
        except (FileNotFoundError, ProcessLookupError):
            return
        for line in text.splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) * 1024)
        done.wait(0.02)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def repeat(times: int, measure: Callable[[], float], before: Callable[[], None] | None = None):
    """*measure* run *times* times (with *before* untimed before each); the samples."""
    samples = []
    for _ in range(times):
        if before:
            before()
        samples.append(measure())
    return samples


def alternated(repetitions: int, ways: Mapping[str, Callable[[], T]]) -> dict[str, list[T]]:
    """Each way's samples: every repetition runs each way once, so a change in the machine's
    load hits all alike. A run pays for some of the writes of the one it follows (about
    0.04 s of a 1M-row PostgreSQL load, 2026-12-07), so the order reverses every repetition,
    the count is even, and an untimed run of the first way goes before the first: each way
    then follows each way equally often."""
    if repetitions > 1 and repetitions % 2:
        raise BenchError(f"{repetitions} repetitions: alternated needs an even count")
    samples: dict[str, list[T]] = {way: [] for way in ways}
    order = list(ways.items())
    if repetitions > 1:
        order[0][1]()  # untimed: what the first timed run follows
    for repetition in range(repetitions):
        for way, run in order if repetition % 2 == 0 else order[::-1]:
            samples[way].append(run())
    return samples


def compiled(*folders: Path) -> None:
    """The Python under *folders* compiled to bytecode before anything is timed, as pip
    compiles a package it installs and as a project's second run finds it. A shell with
    PYTHONDONTWRITEBYTECODE=1 never writes it, and each timed process then compiled every
    module edited since its last bytecode (about 12 ms of a load, 2026-12-07)."""
    for folder in folders:
        if not folder.is_dir() or not compileall.compile_dir(folder, quiet=1):
            raise BenchError(f"cannot compile the timed Python in {folder}")


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def dir_bytes(path: Path) -> int:
    """Bytes of the regular files below *path* (like `du --apparent-size`, links not followed)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            file = Path(root, name)
            if not file.is_symlink():
                total += file.stat().st_size
    return total


# --- results ---------------------------------------------------------------------------------


@dataclass
class Figure:
    """One measured quantity: its samples over the repetitions."""

    key: str
    label: str
    unit: str
    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def low(self) -> float:
        return min(self.samples)

    @property
    def high(self) -> float:
        return max(self.samples)


@dataclass
class Comparison:
    """Ours vs what a user would do instead, measured in the same run. ratio = theirs / ours
    for times and bytes (how many times better ours is); for rates, ours / theirs."""

    label: str
    ours: str
    theirs: str
    higher_is_better: bool = False


@dataclass
class Target:
    """The issue's target for a figure; *note* says why when missed and what would reach it."""

    label: str
    key: str
    limit: float
    at_most: bool  # True: figure <= limit; False: figure >= limit
    note_if_missed: str = ""
    ratio_of: str | None = None  # a Comparison label: the target is on its ratio


@dataclass
class Section:
    """One of the issue's measurements: its figures, comparisons, targets and notes."""

    number: int
    title: str
    figures: list[Figure] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, key: str, label: str, unit: str, samples: Sequence[float]) -> Figure:
        figure = Figure(key, label, unit, [float(s) for s in samples])
        self.figures.append(figure)
        return figure

    def figure(self, key: str) -> Figure:
        return next(f for f in self.figures if f.key == key)

    def ratio(self, comparison: Comparison) -> float:
        ours, theirs = self.figure(comparison.ours).median, self.figure(comparison.theirs).median
        if comparison.higher_is_better:
            return ours / theirs if theirs else float("inf")
        return theirs / ours if ours else float("inf")


@contextmanager
def quiet() -> Iterator[None]:
    """Silence stdout at the file-descriptor level (cookiecutter hooks print next steps)."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
        try:
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


@dataclass
class Context:
    """What the benchmarks share in one run: sizes, the scratch folder, a Prefect server."""

    sizes: Sizes
    scratch: Path
    _stack: ExitStack = field(default_factory=ExitStack)
    _server: object | None = None
    _postgres: object | None = None

    def folder(self, name: str) -> Path:
        return fresh_dir(self.scratch / name)

    @property
    def server(self):
        """One local `prefect server start` (127.0.0.1, free port, temp PREFECT_HOME)."""
        if self._server is None:
            from support.services import running_prefect_server

            self._server = self._stack.enter_context(
                running_prefect_server(self.folder("prefect-server"))
            )
        return self._server

    @property
    def postgres(self):
        """One throwaway PostgreSQL (tests/support/services.py: 127.0.0.1, free port)."""
        if self._postgres is None:
            from support.services import running_postgres

            self._postgres = self._stack.enter_context(running_postgres())
        return self._postgres

    def close(self) -> None:
        self._stack.close()


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def with_server(env: Mapping[str, str], server) -> dict[str, str]:
    """*env* as a plain client of *server* (a support.services.PrefectServer): its isolated
    PREFECT_HOME and API URL replace any inherited PREFECT_* setting, Prefect's defaults
    otherwise (no test speed-ups)."""
    from support.services import offline_env

    return {**offline_env(server.client_home, base=env), "PREFECT_API_URL": server.api_url}
