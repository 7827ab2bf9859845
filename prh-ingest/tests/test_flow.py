"""What every flow does, without running one: names, settings, the shell step's commands,
the retry policy and the summary line it reads (prh_ingest.flow; the flow runs end to end in
the repository's e2e tests)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from prefect.states import Failed
from prh_ingest import flow

PROJECT_SETTINGS = (
    "CLINIC_CAL_EPIC_SOURCE_FILE=/srv/epic.csv\nCLINIC_CAL_DATABASE_URL=sqlite:///${HOME}/w.db\n"
)


@pytest.fixture
def project(tmp_path: Path) -> flow.Project:
    (tmp_path / "prefect").mkdir()
    (tmp_path / "prefect" / ".env").write_text(PROJECT_SETTINGS)
    return flow.Project("clinic-cal", tmp_path, "{python} ingest.py")


def test_names_come_from_the_naming_contract(project: flow.Project) -> None:
    assert flow.source_setting(project, "lab-results") == "CLINIC_CAL_LAB_RESULTS_SOURCE_FILE"


def test_the_shell_step_is_fail_fast_and_runs_the_flows_python(project: flow.Project) -> None:
    assert flow.ingest_commands(project, "epic") == [
        "set -euo pipefail",
        f"{sys.executable} ingest.py epic",
    ]
    pipenv = flow.Project(
        "clinic-cal", project.folder, "prefect/sync-venv.sh pipenv run python ingest.py"
    )
    assert (
        flow.ingest_commands(pipenv, "epic")[-1]
        == "prefect/sync-venv.sh pipenv run python ingest.py epic"
    )


def test_settings_come_from_the_file_and_exported_variables_win(
    project: flow.Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", "/home/etl")
    monkeypatch.delenv("CLINIC_CAL_DATABASE_URL", raising=False)
    monkeypatch.setenv("CLINIC_CAL_EPIC_SOURCE_FILE", "/srv/landing/exported.csv")
    settings = flow.load_settings(project)
    assert settings == {"CLINIC_CAL_DATABASE_URL": "sqlite:////home/etl/w.db"}
    assert flow.setting(settings, "CLINIC_CAL_EPIC_SOURCE_FILE") == "/srv/landing/exported.csv"


def test_a_missing_setting_names_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLINIC_CAL_DATABASE_URL", raising=False)
    with pytest.raises(ValueError, match="CLINIC_CAL_DATABASE_URL is not set"):
        flow.setting({}, "CLINIC_CAL_DATABASE_URL")


@pytest.mark.parametrize(
    ("error", "retry"),
    [
        (flow.BadSourceFile("rejected"), False),
        (flow.CannotStart("exit 69"), False),
        (flow.ShortLoadRefused("exit 66"), False),
        (RuntimeError("database down"), True),
    ],
    ids=["bad-source", "cannot-start", "short-load", "other"],
)
def test_only_failures_a_retry_can_fix_are_retried(error: Exception, retry: bool) -> None:
    assert flow.retry_unless_bad_source(None, None, Failed(data=error)) is retry


def test_a_kept_ingest_py_is_the_projects_own(project: flow.Project) -> None:
    assert flow.uses_template_loader(project)
    (project.folder / ".cruft.json").write_text(json.dumps({"skip": ["transform.py", "ingest.py"]}))
    assert not flow.uses_template_loader(project)


def test_the_summary_is_the_last_line_of_its_kind() -> None:
    summary = {"summary": "prh-ingest-load", "ok": True, "rows": 3}
    output = ["delimiter ',' (detected)", json.dumps(summary), "{not json", '{"summary": "other"}']
    assert flow.load_summary(output) == summary
    assert flow.load_summary(["loaded 3 rows"]) is None


def test_the_flow_process_needs_no_sqlalchemy() -> None:
    """The worker's flow process has prefect, prefect-shell, prefect-aws and the package only."""
    import subprocess

    script = 'import sys; sys.modules["sqlalchemy"] = None; import prh_ingest.flow'
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_the_load_artifact_says_unchanged_and_short(
    project: flow.Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A re-send of bytes already loaded, and a short load's counts, show in the run's table."""
    made: list[list[dict]] = []
    monkeypatch.setattr(flow, "create_table_artifact", lambda rows, **_: made.append(rows))
    summary = {"ok": True, "rows": 0, "same_as_load": 3, "columns_added": []}
    flow.show_load(project, "epic", summary, 0)
    short = {"ok": True, "rows": 40, "row_check": "short-warn", "usual_rows": 100.0}
    flow.show_load(project, "epic", short, 0)
    assert made[0][0]["same_as_load"] == "unchanged: load 3"
    assert (made[1][0]["same_as_load"], made[1][0]["row_check"]) == ("new data", "short-warn")
    assert made[1][0]["usual_rows"] == 100.0


def test_accept_short_load_reaches_the_shell_steps_environment(
    project: flow.Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flow's `accept_short_load` parameter becomes the loader's setting, for that run."""
    import contextlib
    import logging

    envs: list[dict[str, str]] = []
    monkeypatch.setattr(flow, "get_run_logger", lambda: logging.getLogger("test"))
    monkeypatch.setattr(flow, "run_ingest", lambda _project, _source, _path, env: envs.append(env))
    monkeypatch.delenv("CLINIC_CAL_EPIC_ACCEPT_SHORT_LOAD", raising=False)
    local = lambda _flow, _name, path, _setting: contextlib.nullcontext(path)  # noqa: E731
    flow.load_source(project, "clinic-cal-epic-ingest", "epic", local)
    flow.load_source(project, "clinic-cal-epic-ingest", "epic", local, accept_short_load=True)
    assert "CLINIC_CAL_EPIC_ACCEPT_SHORT_LOAD" not in envs[0]
    assert envs[1]["CLINIC_CAL_EPIC_ACCEPT_SHORT_LOAD"] == "1"
