"""The benchmark suite (`make bench`) runs end to end with tiny sizes and writes a well-formed
table. Nothing here is timed: the figures themselves are checked only for shape."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support.commands import REPO_DIR

NUMBER = re.compile(r"^-?[0-9][0-9,]*(\.[0-9]+)?(e[-+][0-9]+)?$")


Table = list[list[str]]


def tables(markdown: str) -> dict[str, list[Table]]:
    """Each `## heading`'s tables, each as rows of cells (header first, separator dropped)."""
    found: dict[str, list[Table]] = {}
    heading, previous = None, ""
    for line in markdown.splitlines():
        if line.startswith("## "):
            heading = line[3:]
        elif line.startswith("|") and heading is not None:
            if not previous.startswith("|"):
                found.setdefault(heading, []).append([])
            cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if set("".join(cells)) != {"-"}:
                found[heading][-1].append(cells)
        previous = line
    return found


def bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "benchmarks", "--quick", "--scratch", str(tmp_path / "s"), *args]
    return subprocess.run(argv, cwd=REPO_DIR, capture_output=True, text=True, timeout=120)


def test_quick_bench_writes_a_well_formed_table(tmp_path: Path) -> None:
    output = tmp_path / "BENCHMARKS.md"
    result = bench(tmp_path, "--only", "ingest", "--output", str(output))
    assert result.returncode == 0, result.stderr[-3000:]
    found = tables(output.read_text())

    for heading, in_section in found.items():
        for rows in in_section:
            widths = {len(row) for row in rows}
            assert len(widths) == 1 and len(rows) > 1, f"{heading}: malformed table {rows}"
    machine = dict(found["Machine and versions"][0][1:])
    assert machine["CPU"].endswith("cores") and machine["prefect"] == "3.9.1"
    figures = found["7. The generated ingest.py: rows per second and peak memory"][0]
    assert figures[0] == ["figure", "unit", "median", "min – max", "n"]
    labels = [row[0] for row in figures[1:]]
    for database in ("sqlite", "postgresql"):
        assert f"2,000-row quoted csv into {database}: generated ingest.py" in labels
    assert "501-row xlsx into sqlite: generated ingest.py, peak RSS" in labels
    for label, _unit, median, spread, count in figures[1:]:
        low, high = spread.split(" – ")
        assert all(NUMBER.match(value) for value in (median, low, high)), label
        as_float = [float(value.replace(",", "")) for value in (low, median, high)]
        assert as_float == sorted(as_float) and as_float[0] > 0, label
        assert count == "1", label  # --quick: one load of each
    targets = found["Targets"][0]
    assert {row[3] for row in targets[1:]} <= {"met", "**missed**"}
    wanted = {
        "quoted CSV into postgresql: at least 0.7x `psql \\copy` (rows/s, same run)",
        "quoted CSV into postgresql: peak RSS <= 100 MB",
        "quoted CSV into sqlite: peak RSS <= 100 MB",
    }
    if importlib.util.find_spec("pandas"):  # a bench-only dependency (benchmarks/requirements.txt)
        wanted.add("quoted CSV into sqlite: at least 1.2x pandas (rows/s, same run)")
    assert wanted <= {row[1].replace("\\|", "|") for row in targets[1:]}


def test_a_report_holds_only_the_sections_of_its_own_run() -> None:
    """Nothing is carried over from another day: a run's report is its sections, whole."""
    from benchmarks.common import Section, Target
    from benchmarks.report import render

    section = Section(1, "thing 1")
    section.add("t", "time of thing 1", "s", [9.0])
    section.targets.append(Target("thing 1 <= 5 s", "t", 5, at_most=True))
    found = tables(render([section], quick=False, seconds=60, loads=[1.0]))
    assert found["1. thing 1"][0][1][:3] == ["time of thing 1", "s", "9"]
    assert [row[:4] for row in found["Targets"][0][1:]] == [
        ["1", "thing 1 <= 5 s", "9 s", "**missed**"]
    ]
    assert set(found) == {"Machine and versions", "Targets", "1. thing 1"}


def test_unknown_benchmark_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    output = tmp_path / "BENCHMARKS.md"
    result = bench(tmp_path, "--only", "ingest,nonsense", "--output", str(output))
    assert result.returncode == 2
    assert "unknown benchmark(s): nonsense" in result.stderr
    assert not output.exists()


def test_suite_times_each_make_target_s_own_command_and_groups_by_file(tmp_path: Path) -> None:
    from benchmarks.common import BenchError
    from benchmarks.suite import MAKE_TARGETS, REPORTS, group_times, make_recipe, make_report

    assert make_recipe("test")[:2] == ["-m", "not e2e and not systemd and not migration"]
    assert make_recipe("test-e2e") == ["-m", "e2e and not systemd and not migration"]
    assert make_recipe("test-systemd") == ["-m", "systemd"]
    assert make_recipe("test-migration") == ["-m", "migration"]
    with pytest.raises(BenchError, match=re.escape("Makefile: no `nonsense: $(STAMP)` rule")):
        make_recipe("nonsense")
    with pytest.raises(BenchError, match=re.escape("Makefile: no `nonsense: $(STAMP)` rule")):
        make_report("nonsense")
    for target in MAKE_TARGETS:  # each run of a target leaves the report a full bench reads
        assert make_report(target) == REPORTS / f"junit-{target}.xml"
    report = tmp_path / "junit.xml"
    report.write_text(
        '<testsuites><testsuite tests="3">'
        '<testcase classname="tests.systemd.test_booted" name="a" time="7.5"/>'
        '<testcase classname="tests.systemd.test_worker_service" name="b" time="500"/>'
        '<testcase classname="tests.test_ingest_hooks" name="c" time="2"/>'
        '<testcase classname="tests.test_ingest_hooks" name="d" time="1.5"/>'
        "</testsuite></testsuites>"
    )
    assert group_times(report) == {
        "tests/systemd/test_booted.py": (7.5, 1),
        "tests/systemd/test_worker_service.py": (500.0, 1),
        "tests/test_ingest_hooks.py": (3.5, 2),
    }


def test_suite_times_are_read_from_the_latest_run_s_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full bench does not run the suites: it reads each target's JUnit report, and says
    which target had none."""
    from benchmarks import suite
    from benchmarks.common import FULL, Context

    monkeypatch.setattr(suite, "REPORTS", REPO_DIR / ".bench" / "test-reports" / tmp_path.name)
    suite.REPORTS.mkdir(parents=True)
    try:
        (suite.REPORTS / "junit-test.xml").write_text(
            '<testsuites><testsuite tests="2" time="412.5">'
            '<testcase classname="tests.test_ingest_hooks" name="a" time="2"/>'
            '<testcase classname="tests.test_ingest_hooks" name="b" time="1"/>'
            "</testsuite></testsuites>"
        )
        (suite.REPORTS / "junit-test-e2e.xml").write_text(  # the same file, another target
            '<testsuites><testsuite tests="1" time="60">'
            '<testcase classname="tests.test_ingest_hooks" name="c" time="50"/>'
            "</testsuite></testsuites>"
        )
        (section,) = suite.measure(Context(FULL, tmp_path))
    finally:
        for report in suite.REPORTS.iterdir():
            report.unlink()
        suite.REPORTS.rmdir()
    assert [(f.key, f.samples) for f in section.figures] == [
        ("test", [412.5]),
        ("test-e2e", [60.0]),
        ("group-tests/test_ingest_hooks.py", [53.0]),
    ]
    (target,) = section.targets
    assert (target.label, target.limit) == ("`make test` < 6 min on 2 cores", 360)
    assert "`make test`: read from the report of the run of " in section.notes[0]
    missing = (suite.REPORTS / "junit-test-systemd.xml").relative_to(REPO_DIR)
    assert f"`make test-systemd`: no report in {missing}" in section.notes[0]


def test_the_timed_code_is_compiled_first(tmp_path: Path) -> None:
    """A shell with PYTHONDONTWRITEBYTECODE=1 never writes bytecode: the bench compiles the
    code it times first, and a folder it cannot compile stops the bench."""
    from benchmarks.common import BenchError, compiled

    edited = tmp_path / "package" / "edited.py"
    edited.parent.mkdir()
    edited.write_text("VALUE = 1\n")
    compiled(tmp_path / "package")
    assert Path(importlib.util.cache_from_source(str(edited))).is_file()
    with pytest.raises(BenchError, match="cannot compile"):
        compiled(tmp_path / "missing")
    edited.write_text("VALUE = (\n")
    later = edited.stat().st_mtime + 10  # compileall compares whole seconds of mtime
    os.utime(edited, (later, later))
    with pytest.raises(BenchError, match="cannot compile"):  # compileall prints the error
        compiled(tmp_path / "package")


def test_each_way_goes_first_as_often_as_the_other() -> None:
    """A load pays for some of the writes of the one it follows: the order reverses every
    repetition after an untimed load of the first way, so each way follows each equally
    often, and an odd count, which would favour one way, is refused."""
    from benchmarks.common import BenchError, alternated

    calls: list[str] = []

    def way(name: str, seconds: float):  # noqa: ANN202
        return lambda: (calls.append(name), (seconds, 1))[1]

    samples = alternated(4, {"ours": way("ours", 1.0), "psql": way("psql", 2.0)})
    assert calls == ["ours", "ours", "psql", "psql", "ours", "ours", "psql", "psql", "ours"]
    assert samples == {"ours": [(1.0, 1)] * 4, "psql": [(2.0, 1)] * 4}
    pairs = list(zip(calls, calls[1:], strict=False))
    for name in ("ours", "psql"):
        followed = [before for before, after in pairs if after == name]
        assert followed.count("ours") == followed.count("psql"), (name, followed)
    with pytest.raises(BenchError, match="even count"):
        alternated(5, {"ours": way("ours", 1.0), "psql": way("psql", 2.0)})
