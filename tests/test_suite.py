"""How `make test` runs the suite: two xdist workers, the e2e tests together on one."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from support.commands import REPO_DIR, run

SAMPLE_TEST = """
import os, pytest

@pytest.mark.parametrize("n", range(4))
@pytest.mark.e2e
def test_live(n):
    with open({log!r}, "a") as log:
        log.write(f"e2e {{os.environ['PYTEST_XDIST_WORKER']}}\\n")

@pytest.mark.parametrize("n", range(4))
def test_plain(n):
    with open({log!r}, "a") as log:
        log.write(f"plain {{os.environ['PYTEST_XDIST_WORKER']}}\\n")
"""


def make_test_options() -> list[str]:
    from benchmarks.suite import make_recipe

    return make_recipe("test")[2:]  # what follows `-m "not systemd"`


def test_make_test_keeps_the_e2e_tests_on_one_worker(tmp_path: Path) -> None:
    log = tmp_path / "workers.log"
    for module in ("test_one.py", "test_two.py"):
        (tmp_path / "sample" / module).parent.mkdir(exist_ok=True)
        (tmp_path / "sample" / module).write_text(SAMPLE_TEST.format(log=str(log)))
    env = {**os.environ, "PYTHONPATH": str(REPO_DIR / "tests")}
    plugins = ["-p", "support.live_site_group", "-p", "no:cacheprovider"]
    argv = [sys.executable, "-m", "pytest", *plugins, *make_test_options(), "sample"]
    result = run(argv, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    ran = [line.split() for line in log.read_text().splitlines()]
    assert len(ran) == 16
    assert {worker for kind, worker in ran} <= {"gw0", "gw1"}
    assert len({worker for kind, worker in ran if kind == "e2e"}) == 1
