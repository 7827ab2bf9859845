"""10. The migration set (`make test-migration`): MIGRATING.md run as written on a real Prefect
2.10.15 server, SQLite and PostgreSQL, wall time and per test. Its pytest command is the
Makefile's (benchmarks.suite.make_recipe), as section 8 reads `make test`'s."""

from __future__ import annotations

import os
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path

from benchmarks.common import PYTHON, REPO_DIR, BenchError, Context, Section, progress, run_timed
from benchmarks.suite import make_recipe, outcome

TARGET = "test-migration"


def test_times(report: Path) -> dict[str, float]:
    """Seconds per test (setup + call + teardown) from a pytest JUnit XML report."""
    cases = ET.parse(report).getroot().iter("testcase")  # noqa: S314 (our own report)
    return {case.get("name", ""): float(case.get("time", 0)) for case in cases}


def measure(ctx: Context) -> list[Section]:
    selection = list(ctx.sizes.migration_selection)
    section = Section(10, "Migration set (`make test-migration`) on this machine")
    report = ctx.folder("migration") / "junit.xml"
    progress(f"migration: `make {TARGET}`")
    argv = [PYTHON, "-m", "pytest", *make_recipe(TARGET), f"--junitxml={report}", *selection]
    run = run_timed(argv, cwd=REPO_DIR, env=os.environ, timeout=5400, check=False)
    if not report.exists():
        raise BenchError(f"pytest wrote no report:\n{run.output[-2000:]}")
    options = shlex.join(make_recipe(TARGET))
    section.add(TARGET, f"`make {TARGET}` (pytest {options}), wall time", "s", [run.seconds])
    for name, seconds in test_times(report).items():
        section.add(f"test-{name}", name, "s", [seconds])
    what = " ".join(selection) if selection else "the whole set"
    section.notes.append(
        f"The Makefile target's own pytest command on {what}, {os.cpu_count()} cores, one run "
        "(n = 1). Each walk of MIGRATING.md builds the 2.10 world (two `pipenv install`s of the "
        "runbook projects), upgrades the server, and installs each adopted project's dev venv "
        "(`pipenv install --dev`, Prefect 3 included): most of the time is those installs, "
        "from PyPI. The Prefect 2.10 venv comes from the cache (~/.cache/prh-ingest-template); "
        "a first build adds a few seconds with uv's cache warm. "
        f"Outcome: {outcome(report)}."
    )
    return [section]
