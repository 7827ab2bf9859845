"""The runbook's local run, as a developer types it: `python prefect/<flow>.py` on Prefect's
ephemeral default, the venv installed by the project's manager on the first run and found
up to date on the second. Each run starts Prefect's ephemeral server and the first installs
Prefect into a venv, so these are the slowest of the template's tests: they run with the
end-to-end set."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_cookies.plugin import Cookies
from support.baking import (
    DEPENDENCY_MANAGERS,
    INGEST_TEMPLATE_DIR,
    SAMPLE_ROWS,
    SOURCE_SETTING,
    baked,
    local_run_env,
    run_flow_script,
    table_count,
)
from support.services import offline_env

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def venvs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared venvs for the local runs, as on a developer's machine."""
    return tmp_path_factory.mktemp("venvs") / "virtualenvs"


@pytest.mark.network
@pytest.mark.parametrize("manager", DEPENDENCY_MANAGERS)
def test_runbook_local_run_loads_sample_and_rerun_adds_nothing(
    manager: str, tmp_path: Path, venvs: Path, cookies: Cookies
) -> None:
    project = baked(
        cookies.bake(extra_context={"dependency_manager": manager}, template=INGEST_TEMPLATE_DIR)
    )
    database = tmp_path / "sink" / "clinic-cal.db"
    env = local_run_env(offline_env(tmp_path / "prefect-home"), project, venvs, database)

    first = run_flow_script(project, env)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    assert f"loaded {SAMPLE_ROWS} rows" in first.stdout + first.stderr
    assert table_count(database) == SAMPLE_ROWS

    again = run_flow_script(project, env)
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    assert table_count(database) == SAMPLE_ROWS
    if manager != "none":
        assert "is up to date" in again.stdout + again.stderr  # the warm run skipped the install
        assert [path.name for path in venvs.iterdir() if path.is_dir()] == ["prefect-clinic-cal"]


def test_a_failing_step_fails_the_flow_and_leaves_the_sink(
    tmp_path: Path, cookies: Cookies
) -> None:
    project = baked(
        cookies.bake(extra_context={"dependency_manager": "none"}, template=INGEST_TEMPLATE_DIR)
    )
    database = tmp_path / "sink" / "clinic-cal.db"
    env = local_run_env(offline_env(tmp_path / "prefect-home"), project, tmp_path / "v", database)
    bad = tmp_path / "landing" / "sample.xlsx"
    bad.parent.mkdir()
    bad.write_text("not a workbook")
    env[SOURCE_SETTING] = str(bad)

    result = run_flow_script(project, env)

    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"error: {SOURCE_SETTING}={bad}: not a readable .xlsx workbook" in output
    assert output.count("triggered with") == 1  # a rejected file is not retried
    assert not database.exists() or table_count(database) == 0
