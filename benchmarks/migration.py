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


def walk_outcomes(report: Path) -> dict[str, str]:
    """For each walk of the document (test_migrating_md_on_*): `passed`, or how it stopped
    (failed, error, skipped or xfailed) with the first line of its message."""
    walks = {}
    for case in ET.parse(report).getroot().iter("testcase"):  # noqa: S314 (our own report)
        name = case.get("name", "")
        if not name.startswith("test_migrating_md_on_"):
            continue
        stopped = next(iter(case.findall("failure") + case.findall("error")), None)
        stopped = stopped if stopped is not None else case.find("skipped")
        if stopped is None:
            walks[name] = "passed"
        else:
            message = (stopped.get("message") or "").strip().splitlines()[:1]
            walks[name] = f"stopped ({stopped.tag}{': ' + message[0][:160] if message else ''})"
    return walks


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
    walks = walk_outcomes(report)
    whole = [name for name, state in walks.items() if state == "passed"]
    section.notes.append(
        f"The Makefile target's own pytest command on {what}, {os.cpu_count()} cores, one run "
        "(n = 1). A walk of MIGRATING.md builds the 2.10 world (its two completed 2.10 runs "
        "are the runbook flows' own `pipenv install` and load), upgrades the server, and, "
        "where it gets to step 6, installs each adopted project's dev venv (`pipenv install "
        "--dev`, Prefect 3 included, from PyPI), then deploys, resumes, runs and transfers. "
        "A walk's time is of the whole document only when it passed: "
        + ("; ".join(f"{name} {state}" for name, state in walks.items()) or "no walk ran")
        + (
            "."
            if len(whole) == len(walks)
            else ". A walk that stopped did not run the steps after the one it stopped at."
        )
        + " The Prefect 2.10 venv comes from the cache (~/.cache/prh-ingest-template); a first "
        f"build adds a few seconds with uv's cache warm. Outcome: {outcome(report)}."
    )
    return [section]
