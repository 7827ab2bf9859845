"""8. The template's own test suites: `make test`, `make test-e2e`, `make test-systemd` and
`make test-migration` wall time, per file.

They take minutes to over an hour, so a full `make bench` (15 minutes) does not run them: it
reads the JUnit report that each target's latest run wrote into .bench/reports/junit-<target>.xml
(the Makefile's recipes write it, so CI's `.ci/run` leaves all four) and says so, with each
report's date. `--quick` (the smoke test) runs a tiny selection through each target's own
pytest command instead."""

from __future__ import annotations

import os
import shlex
import time
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

SUITE_LIMIT_SECONDS = 360  # `make test` under 6 minutes on 2 cores
MAKE_TARGETS = ("test", "test-e2e", "test-systemd", "test-migration")
REPORTS = REPO_DIR / ".bench" / "reports"  # the Makefile's recipes write here
JUNIT_OPTION = "--junitxml="


def measure(ctx: Context) -> list[Section]:
    section = Section(
        8, "Test suites (`make test`, `make test-e2e`, `make test-systemd`, `make test-migration`)"
    )
    selection = list(ctx.sizes.suite_selection)
    sources: list[str] = []
    groups: dict[str, tuple[float, int]] = {}
    for target in MAKE_TARGETS:
        if selection:  # --quick: a tiny selection, run now
            progress(f"suite: `make {target}` on {' '.join(selection)}")
            report = ctx.folder(f"suite-{target}") / "junit.xml"
            argv = [PYTHON, "-m", "pytest", *make_recipe(target), f"--junitxml={report}"]
            run = run_timed([*argv, *selection], cwd=REPO_DIR, env=os.environ, check=False)
            if not report.exists():
                raise BenchError(f"pytest wrote no report:\n{run.output[-2000:]}")
            seconds, source = run.seconds, f"measured now on {' '.join(selection)}"
        else:
            report = REPORTS / f"junit-{target}.xml"
            if not report.exists():
                sources.append(f"`make {target}`: no report in {report.relative_to(REPO_DIR)}")
                continue
            seconds = wall_seconds(report)
            stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(report.stat().st_mtime))
            source = f"read from the report of the run of {stamp}"
        options = shlex.join(make_recipe(target))
        section.add(target, f"`make {target}` (pytest {options}), wall time", "s", [seconds])
        sources.append(f"`make {target}`: {source}, {outcome(report)}")
        for group, (seconds, tests) in group_times(report).items():  # a file in two targets
            earlier_seconds, earlier_tests = groups.get(group, (0.0, 0))  # counts both
            groups[group] = (earlier_seconds + seconds, earlier_tests + tests)
    for group in sorted(groups):
        seconds, tests = groups[group]
        section.add(f"group-{group}", f"{group} ({tests} tests)", "s", [seconds])
    if any(figure.key == "test" for figure in section.figures):
        section.targets.append(
            Target(
                "`make test` < 6 min on 2 cores",
                "test",
                SUITE_LIMIT_SECONDS,
                at_most=True,
                note_if_missed="the per-file times below say where the time goes",
            )
        )
    section.notes.append(
        "Not run by `make bench` (they take from minutes to over an hour): each figure is "
        "read from the JUnit report that the target's latest run wrote (each `make <target>` "
        "writes .bench/reports/junit-<target>.xml; CI's `.ci/run` runs all four), its date "
        "given; "
        f"{'; '.join(sources)}. Per-file times are the sum of their tests' setup + call + "
        "teardown over all xdist workers, so they add up to more than the wall time. One run "
        "each (n = 1)."
    )
    return [section]


def wall_seconds(report: Path) -> float:
    """The run's wall time as pytest wrote it in the report (the testsuite's `time`)."""
    suite = ET.parse(report).getroot()  # noqa: S314 (our own report)
    suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
    return float(suite.get("time", 0))


def pytest_arguments(target: str) -> list[str]:
    """All the pytest arguments of *target*'s recipe in the Makefile (`$(BIN)/python -m pytest
    ARGS`): the Makefile owns them, the bench times what `make <target>` runs."""
    lines = (REPO_DIR / "Makefile").read_text().splitlines()
    rule = f"{target}: $(STAMP)"
    if rule not in lines:
        raise BenchError(f"Makefile: no `{rule}` rule")
    recipe = shlex.split(lines[lines.index(rule) + 1])
    if recipe[:3] != ["$(BIN)/python", "-m", "pytest"]:
        raise BenchError(f"Makefile: `{target}` no longer runs `$(BIN)/python -m pytest`")
    return recipe[3:]


def make_recipe(target: str) -> list[str]:
    """*target*'s pytest arguments but its JUnit report (`--quick` writes its own)."""
    return [arg for arg in pytest_arguments(target) if not arg.startswith(JUNIT_OPTION)]


def make_report(target: str) -> Path | None:
    """Where *target*'s recipe writes its JUnit report (None: it writes none)."""
    written = [arg for arg in pytest_arguments(target) if arg.startswith(JUNIT_OPTION)]
    return REPO_DIR / written[-1].removeprefix(JUNIT_OPTION) if written else None


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
