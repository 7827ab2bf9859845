"""How the suite is split: `make test` (two xdist workers) and the slow sets `make test-e2e`,
`make test-systemd` and `make test-migration`, which .ci/run runs too. Each test belongs to
exactly one of them, by its marks, so none is run twice and none is never run."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from _pytest.mark.expression import Expression
from support.commands import REPO_DIR, run

from benchmarks.suite import MAKE_TARGETS, make_recipe

MARKS_PLUGIN = """
import json, os

def pytest_collection_finish(session):
    marks = {item.nodeid: sorted({mark.name for mark in item.iter_markers()})
             for item in session.items}
    with open(os.environ["MARKS_OUT"], "w") as out:
        json.dump(marks, out)
"""


def selection(target: str) -> Expression:
    """The `-m` expression of *target*'s recipe in the Makefile."""
    recipe = make_recipe(target)
    return Expression.compile(recipe[recipe.index("-m") + 1])


def selected(expression: Expression, marks: list[str]) -> bool:
    return expression.evaluate(lambda name, **_: name in marks)


def collected_marks(tmp_path: Path) -> dict[str, list[str]]:
    (tmp_path / "marks_plugin.py").write_text(MARKS_PLUGIN)
    out = tmp_path / "marks.json"
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "MARKS_OUT": str(out)}
    argv = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "marks_plugin"]
    result = run(argv, cwd=REPO_DIR, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return json.loads(out.read_text())


def test_each_test_runs_under_exactly_one_make_target(tmp_path: Path) -> None:
    marks = collected_marks(tmp_path)
    targets = {target: selection(target) for target in MAKE_TARGETS}
    owners = {
        test: [target for target, expression in targets.items() if selected(expression, names)]
        for test, names in marks.items()
    }
    assert len(marks) > 1000
    assert {test: found for test, found in owners.items() if len(found) != 1} == {}
    by_target = {target: sum(found == [target] for found in owners.values()) for target in targets}
    assert all(by_target.values()), by_target


def test_the_e2e_tests_share_one_process_and_make_test_splits_the_rest_over_two() -> None:
    assert "-n" not in make_recipe("test-e2e")  # one live site, built once
    recipe = make_recipe("test")
    assert recipe[recipe.index("-n") + 1] == "2"


def test_the_mark_expressions_read_as_the_marks_say() -> None:
    assert selected(selection("test-e2e"), ["e2e", "network"])
    assert not selected(selection("test-e2e"), ["e2e", "systemd"])  # booted: make test-systemd
    assert not selected(selection("test"), ["e2e"])
    assert selected(selection("test"), ["network"])
