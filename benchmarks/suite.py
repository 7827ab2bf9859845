"""8. The template's own test suite: `make test` and `make test-systemd` wall time, per file."""

from __future__ import annotations

import os
import shlex
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
# `make test` (the 10-minute budget) and the booted-systemd tests apart (CI runs both).
MAKE_TARGETS = ("test", "test-systemd")


def measure(ctx: Context) -> list[Section]:
    repetitions, selection = ctx.sizes.suite_repetitions, list(ctx.sizes.suite_selection)
    section = Section(8, "Template test suite (`make test`) on this machine")
    root = ctx.folder("suite")
    runs: dict[str, list[float]] = defaultdict(list)
    groups: dict[str, list[float]] = defaultdict(list)
    counts: dict[str, int] = {}
    outcomes: list[str] = []
    for index in range(repetitions):
        for target in MAKE_TARGETS:
            progress(f"suite: `make {target}` run {index + 1} of {repetitions}")
            report = root / f"junit-{target}-{index}.xml"
            argv = [PYTHON, "-m", "pytest", *make_recipe(target), f"--junitxml={report}"]
            argv += selection
            run = run_timed(argv, cwd=REPO_DIR, env=os.environ, timeout=1800, check=False)
            if not report.exists():
                raise BenchError(f"pytest wrote no report:\n{run.output[-2000:]}")
            runs[target].append(run.seconds)
            outcomes.append(f"`make {target}`: {outcome(report)}")
            for group, (seconds, tests) in group_times(report).items():
                groups[group].append(seconds)
                counts[group] = tests
    what = " ".join(selection) if selection else "the whole suite"
    for target in MAKE_TARGETS:
        options = shlex.join(make_recipe(target))
        section.add(target, f"`make {target}` (pytest {options}), wall time", "s", runs[target])
    for group in sorted(groups):
        section.add(f"group-{group}", f"{group} ({counts[group]} tests)", "s", groups[group])
    section.targets.append(
        Target(
            "`make test` < 10 min on 2 cores",
            "test",
            SUITE_LIMIT_SECONDS,
            at_most=True,
            note_if_missed=(
                "the groups below say where the time goes (the template bakes with their local "
                "runs, the live-server e2e files)"
            ),
        )
    )
    section.notes.append(
        f"Each Makefile target's own pytest command (read from the Makefile) on {what}, "
        f"{os.cpu_count()} cores: `make test` spreads its tests over pytest-xdist workers, "
        "`make test-systemd` boots a real systemd in a container (systemd-nspawn) and installs "
        "the worker there. Groups are test files, their time the sum of their tests' setup + "
        "call + teardown from pytest's JUnit report, over all workers (a session fixture such "
        "as the Prefect server counts in the first test of each worker that uses it), so under "
        "xdist they add up to more than the wall time. The suite takes minutes, so a full bench "
        "runs it once (n = 1): three runs would triple the bench's time for a figure that is "
        "not compared with anything."
    )
    section.notes.append(
        f"Outcome: {'; '.join(outcomes)}. The suite is timed as it stands at this commit, "
        "whatever the outcome (a failing test still takes its time)."
    )
    return [section]


def make_recipe(target: str) -> list[str]:
    """The pytest arguments of *target*'s recipe in the Makefile (`$(BIN)/python -m pytest
    ARGS`): the Makefile owns them, the bench times what `make <target>` runs."""
    lines = (REPO_DIR / "Makefile").read_text().splitlines()
    rule = f"{target}: $(STAMP)"
    if rule not in lines:
        raise BenchError(f"Makefile: no `{rule}` rule")
    recipe = shlex.split(lines[lines.index(rule) + 1])
    if recipe[:3] != ["$(BIN)/python", "-m", "pytest"]:
        raise BenchError(f"Makefile: `{target}` no longer runs `$(BIN)/python -m pytest`")
    return recipe[3:]


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
