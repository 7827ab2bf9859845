"""8. The template's own test suite (`make test`): wall time, whole and per group."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

from benchmarks.common import (
    PYTHON,
    REPO_DIR,
    BenchError,
    Context,
    Section,
    Target,
    progress,
    run_timed,
)

SUITE_LIMIT_SECONDS = 600
# The tests marked `systemd` (a booted systemd in a container) all live here.
SYSTEMD_TESTS = "tests/systemd/"


def measure(ctx: Context) -> list[Section]:
    repetitions, selection = ctx.sizes.suite_repetitions, list(ctx.sizes.suite_selection)
    section = Section(8, "Template test suite (`make test`) on this machine")
    root = ctx.folder("suite")
    walls: list[float] = []
    groups: dict[str, list[float]] = defaultdict(list)
    counts: dict[str, int] = {}
    outcomes: list[str] = []
    for index in range(repetitions):
        progress(f"suite: pytest run {index + 1} of {repetitions}")
        report = root / f"junit-{index}.xml"
        argv = [
            PYTHON,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={report}",
            *selection,
        ]
        run = run_timed(argv, cwd=REPO_DIR, env=os.environ, timeout=1800, check=False)
        if not report.exists():
            raise BenchError(f"pytest wrote no report:\n{run.output[-2000:]}")
        walls.append(run.seconds)
        outcomes.append(outcome(report))
        for group, (seconds, tests) in group_times(report).items():
            groups[group].append(seconds)
            counts[group] = tests
    what = " ".join(selection) if selection else "whole suite"
    section.add("whole", f"{what}, wall time", "s", walls)
    booted, tests = systemd_share(groups, counts, len(walls))
    if tests:
        section.add("systemd", f"`systemd`-marked tests ({tests} tests)", "s", booted)
        others = [wall - seconds for wall, seconds in zip(walls, booted, strict=True)]
        section.add("not-systemd", "everything else, wall time", "s", others)
    for group in sorted(groups):
        section.add(f"group-{group}", f"{group} ({counts[group]} tests)", "s", groups[group])
    # The 10-minute budget is `make test`'s; the booted-systemd tests have their own mark and
    # `make test-systemd` (CI runs both), so the target is on everything else when they ran.
    budget_key, budget_what = ("not-systemd", "`make test`") if tests else ("whole", what)
    section.targets.append(
        Target(
            f"{budget_what} < 10 min on 2 cores",
            budget_key,
            SUITE_LIMIT_SECONDS,
            at_most=True,
            note_if_missed=(
                "the groups below say where the time goes (the template bakes with their local "
                "runs, the live-server e2e files); the tests run one after another on 2 cores, "
                "and pytest-xdist (pinned) with --dist loadfile would spread the files over both"
            ),
        )
    )
    section.notes.append(
        f"`python -m pytest` (what `make test` and `make test-systemd` run, in one go) on "
        f"{os.cpu_count()} cores; groups "
        "are test files, their time is the sum of their tests' setup + call + teardown from "
        "pytest's JUnit report (a session fixture such as the Prefect server counts in the first "
        "test that uses it). The suite takes minutes, so a full bench runs it once (n = 1): three "
        "runs would triple the bench's time for a figure that is not compared with anything."
    )
    section.notes.append(
        f"The `systemd`-marked tests ({SYSTEMD_TESTS}) boot a real systemd in a container "
        "(systemd-nspawn) and install the worker there; their figure includes that boot and "
        "install, and `everything else` is the wall time without them."
    )
    section.notes.append(
        f"Outcome: {'; '.join(outcomes)}. The suite is timed as it stands at this commit, "
        "whatever the outcome (a failing test still takes its time)."
    )
    return [section]


def systemd_share(
    groups: dict[str, list[float]], counts: dict[str, int], runs: int
) -> tuple[list[float], int]:
    """Seconds per run of the test files under SYSTEMD_TESTS, and how many tests they hold."""
    files = [group for group in groups if group.startswith(SYSTEMD_TESTS)]
    seconds = [sum(groups[group][index] for group in files) for index in range(runs)]
    return seconds, sum(counts[group] for group in files)


def outcome(report: Path) -> str:
    """`N tests, F failed, E errors, S skipped` from a JUnit report's totals."""
    suite = ET.parse(report).getroot()  # noqa: S314 (our own report)
    suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
    totals = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    return (
        f"{totals['tests']} tests, {totals['failures']} failed, {totals['errors']} errors, "
        f"{totals['skipped']} skipped"
    )


def group_times(report: Path) -> dict[str, tuple[float, int]]:
    """Seconds and test count per test file, from a pytest JUnit XML report."""
    seconds: dict[str, float] = defaultdict(float)
    tests: dict[str, int] = defaultdict(int)
    for case in ET.parse(report).getroot().iter("testcase"):  # noqa: S314 (our own report)
        module = case.get("classname", "").split(".")
        # classname is the dotted module path (plus a class): keep the file's path.
        name = "/".join(part for part in module if not part[:1].isupper()) + ".py"
        seconds[name] += float(case.get("time", 0))
        tests[name] += 1
    return {name: (seconds[name], tests[name]) for name in seconds}
