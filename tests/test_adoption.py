"""Adopting runbook-era projects (scripts/adopt.py): the template repository and the
hand-made projects are git repos under tmp_path. The project is linked at the pinned commit,
keeps its own ingest.py, and its first update then applies cleanly. Offline but for the
`network` tests: a --link that adds the project's packages to a Pipfile resolves them with uv
(PyPI) to bound what they pull in."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import pytest
from support.commands import REPO_DIR, run
from support.git import commit_all, git, head, tree
from support.regeneration import cruft_state, edit, edit_ingest_template, regenerate, template_repo
from support.runbook import CLINIC_CAL_ANSWERS, PRH_DASH_ANSWERS, clinic_cal, prh_dash

RUN_HEADING = "## Run it locally"
# A change to the template's ingest.py (the entry point; the loader is the package's).
LOADER_OLD = "sys.exit(69)  # EX_UNAVAILABLE: the flow does not retry it"
LOADER_NEW = "sys.exit(69)  # EX_UNAVAILABLE (sysexits.h): the flow does not retry it"
FIXTURES = {
    "clinic-cal": (clinic_cal, CLINIC_CAL_ANSWERS, "clinic-cal-epic-ingest"),
    "prh-dash": (prh_dash, PRH_DASH_ANSWERS, "prh-dash-ingest"),
}


def adopt(project: Path, template: Path, commit: str, answers: dict, *more: str):
    argv = [sys.executable, str(REPO_DIR / "scripts/adopt.py"), str(project)]
    options = ["--answers", json.dumps(answers), "--template", str(template), "--commit", commit]
    return run([*argv, *options, *more], cwd=project.parent)


@pytest.fixture
def template(tmp_path: Path) -> Path:
    return template_repo(tmp_path)


@pytest.mark.parametrize("name", list(FIXTURES))
def test_the_preview_shows_the_whole_difference_and_writes_nothing(
    name: str, template: Path, tmp_path: Path
) -> None:
    make, answers, flow_name = FIXTURES[name]
    project = make(tmp_path / "projects")
    before = tree(project)

    result = adopt(project, template, head(template), answers)

    assert result.returncode == 0, result.stderr
    assert tree(project) == before
    out = result.stdout
    assert f"Template {template} at {head(template)[:12]}" in out
    assert "  add              scripts/regenerate.py  (the project lacks it)" in out
    assert "  add              prefect/sync-venv.sh  (the project lacks it)" in out
    assert f"  replace          prefect/{flow_name}.py" in out
    assert "  keep             ingest.py  (your own code" in out
    # The diff itself: the runbook's flow out, the template's in, and new files whole.
    assert '-        commands=["pipenv install", "pipenv run python ingest.py"],' in out
    assert f'+FLOW_NAME = "{flow_name}"' in out
    assert "+++ b/template/scripts/regenerate.py" in out and "--- /dev/null" in out
    assert "Nothing written." in out


@pytest.mark.network
@pytest.mark.parametrize("name", list(FIXTURES))
def test_adoption_links_at_the_pinned_commit_and_a_later_update_applies_cleanly(
    name: str, template: Path, tmp_path: Path
) -> None:
    make, answers, flow_name = FIXTURES[name]
    project = make(tmp_path / "projects")
    own_ingest = (project / "ingest.py").read_bytes()
    pinned = head(template)
    edit_ingest_template(template, "README.md", RUN_HEADING, "## Run it on your machine")
    edit_ingest_template(template, "ingest.py", LOADER_OLD, LOADER_NEW)

    result = adopt(project, template, pinned, answers, "--link")

    assert result.returncode == 0, result.stderr
    assert f"Linked {name} at template commit {pinned[:12]}." in result.stdout
    state = cruft_state(project)
    assert state["commit"] == pinned  # not the newest: the first update has work to do
    assert state["template"] == str(template)
    assert state["skip"] == ["transform.py", "ingest.py", "tests/test_ingest.py"]
    assert (project / "ingest.py").read_bytes() == own_ingest
    assert not (project / "tests/test_ingest.py").exists()  # the template loader's tests
    flow = (project / f"prefect/{flow_name}.py").read_text()  # same path: same entrypoint
    assert f'FLOW_NAME = "{flow_name}"' in flow and "load_source(PROJECT, FLOW_NAME, SOURCE" in flow
    assert "from prh_ingest.flow import" in flow  # what a flow does is the package's
    assert "PIPENV_CUSTOM_VENV_NAME=prefect-" + name in (project / "prefect/.env").read_text()
    commit_all(project, "adopt the template")

    assert regenerate(project, "--check").returncode == 1
    update = regenerate(project)

    assert update.returncode == 0, update.stdout + update.stderr
    assert "2 change(s) to the ingest-project template" in update.stdout
    assert "## Run it on your machine" in (project / "README.md").read_text()
    assert (project / "ingest.py").read_bytes() == own_ingest  # the template's change skipped
    assert not list(project.rglob("*.rej"))
    assert cruft_state(project)["commit"] == head(template)
    assert not (project / "tests/test_ingest.py").exists()  # skipped by the update too


@pytest.mark.network
@pytest.mark.parametrize("name", list(FIXTURES))
def test_a_kept_ingest_py_keeps_its_settings_and_packages(
    name: str, template: Path, tmp_path: Path
) -> None:
    """The runbook's prefect/.env values (production paths) win over the template's, and the
    Pipfile packages its ingest.py imports are added to the template's Pipfile."""
    make, answers, _ = FIXTURES[name]
    project = make(tmp_path / "projects")
    own_settings = (project / "prefect/.env").read_text().splitlines()

    result = adopt(project, template, head(template), answers, "--link")

    assert result.returncode == 0, result.stderr
    settings = (project / "prefect/.env").read_text().splitlines()
    assert [line for line in own_settings if line not in settings] == []
    names = [line.split("=")[0] for line in own_settings]
    assert f"  prefect/.env: kept your settings {', '.join(names)} (your values win)" in (
        result.stdout
    )
    assert len([line for line in settings if line.split("=")[0] == names[0]]) == 1
    assert "  Pipfile: added your ingest.py's packages pandas, openpyxl\n" in result.stdout
    pipfile = tomllib.loads((project / "Pipfile").read_text())
    assert pipfile["packages"]["pandas"] == "*" and pipfile["packages"]["openpyxl"] == "*"
    assert pipfile["packages"]["sqlalchemy"].startswith("==")  # the template's pin stays
    # pandas pulls in python-dateutil; prefect (a dev package) needs it below 3, and pipenv
    # locks [packages] first: the bound makes that lock take a version prefect accepts.
    assert pipfile["packages"]["python-dateutil"] == "<3.0.0"
    assert "  Pipfile: bounded python-dateutil<3.0.0, " in result.stdout


@pytest.mark.network
def test_prefect_2_leftovers_do_not_block_the_link(template: Path, tmp_path: Path) -> None:
    """Deployment.build_from_flow's .prefectignore and the runbook's untracked Pipfile.lock
    are removed by --link, with a line each; any other untracked file still blocks it."""
    project = clinic_cal(tmp_path / "projects")
    (project / ".prefectignore").write_text("# prefect artifacts\n.prefectignore\n")
    (project / "Pipfile.lock").write_text("{}\n")

    result = adopt(project, template, head(template), CLINIC_CAL_ANSWERS, "--link")

    assert result.returncode == 0, result.stderr
    assert "  .prefectignore: removed (left by Prefect 2" in result.stdout
    assert not (project / ".prefectignore").exists() and not (project / "Pipfile.lock").exists()


@pytest.mark.network
def test_packages_that_cannot_go_beside_prefect_are_refused(
    template: Path, tmp_path: Path
) -> None:
    """A package the project needs in a version the dev packages' prefect refuses: one error
    line (after uv's reason), nothing written."""
    project = clinic_cal(tmp_path / "projects")
    edit(project, "Pipfile", 'pandas = "*"', 'pandas = "*"\npython-dateutil = ">=3"')
    commit_all(project, "our dateutil")
    before = tree(project)
    result = adopt(project, template, head(template), CLINIC_CAL_ANSWERS, "--link")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "error: your packages cannot be installed beside the template's dev packages "
        "(uv's reason above)"
    )
    assert "python-dateutil" in result.stderr
    assert tree(project) == before


def test_a_runbook_flow_name_needs_the_legacy_answer(template: Path, tmp_path: Path) -> None:
    """Without legacy_flow_name, prh-dash's flow would be renamed: the preview shows its
    runbook flow file as only in the project and a new one added."""
    project = prh_dash(tmp_path / "projects")
    answers = {key: value for key, value in PRH_DASH_ANSWERS.items() if key != "legacy_flow_name"}
    result = adopt(project, template, head(template), answers)
    assert result.returncode == 0, result.stderr
    assert "  only-in-project  prefect/prh-dash-ingest.py" in result.stdout
    assert "  add              prefect/prh-dash-redcap-ingest.py" in result.stdout


@pytest.mark.parametrize("change", ["edit", "untracked"])
def test_link_refuses_a_dirty_tree(change: str, template: Path, tmp_path: Path) -> None:
    project = clinic_cal(tmp_path / "projects")
    if change == "edit":
        edit(project, "ingest.py", "pandas", "polars")
    else:
        (project / "notes.txt").write_text("draft\n")
    before = tree(project)
    result = adopt(project, template, head(template), CLINIC_CAL_ANSWERS, "--link")
    assert result.returncode == 1
    assert result.stderr == (
        f"error: {project} has uncommitted changes: commit or stash them first\n"
    )
    assert tree(project) == before


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ('{"project_name": "Clinic Cal", "source_name": "Epic!"}', "error: source_name 'Epic!'"),
        ("[1]", 'error: --answers takes a JSON object with at least "project_name"'),
        ("{nope", "error: --answers is not valid JSON"),
    ],
    ids=["bad-answer", "not-an-object", "not-json"],
)
def test_bad_answers_are_refused_in_one_line(
    answers: str, message: str, template: Path, tmp_path: Path
) -> None:
    project = clinic_cal(tmp_path / "projects")
    argv = [sys.executable, str(REPO_DIR / "scripts/adopt.py"), str(project), "--answers", answers]
    result = run([*argv, "--template", str(template), "--link"], cwd=tmp_path)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert git(project, "status", "--porcelain") == ""
