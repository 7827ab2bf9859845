"""Keeping ingest projects current (scripts/regenerate.py, cruft underneath), offline: the
template repository and each project are git repos under tmp_path. A template change reaches
an edited project; a conflict or an unappliable change exits 1 naming the files and leaves
.cruft.json at its old commit; --check looks only at its own template's files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pytest_cookies.plugin import Cookies
from support.baking import INGEST_TEMPLATE_DIR, baked
from support.commands import REPO_DIR, run_python
from support.git import commit_all, git, head, tree
from support.regeneration import (
    INGEST_TEMPLATE,
    cruft_project,
    cruft_state,
    cruft_warehouse,
    edit,
    edit_ingest_template,
    regenerate,
    template_repo,
)
from support.warehouse import CLINIC_CAL, WAREHOUSE_TEMPLATE_DIR

from contract.template import PROJECT_SCRIPTS

ENTRY_POINT = REPO_DIR / "contract/scripts/regenerate.py"  # what both kinds of project carry
TEMPLATES = {"ingest": INGEST_TEMPLATE_DIR, "warehouse": WAREHOUSE_TEMPLATE_DIR}
RUN_HEADING = "## Run it locally"


@pytest.fixture
def template(tmp_path: Path) -> Path:
    return template_repo(tmp_path)


@pytest.fixture
def project(template: Path, tmp_path: Path) -> Path:
    return cruft_project(template, tmp_path / "projects")


def assert_ok(result) -> None:
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("kind", list(TEMPLATES))
def test_every_project_carries_the_one_entry_point_copied_as_is(
    kind: str, cookies: Cookies, tmp_path: Path
) -> None:
    result = cookies.bake(template=TEMPLATES[kind])
    assert result.exit_code == 0, result.exception
    for name, source in PROJECT_SCRIPTS.items():
        assert (result.project_path / name).read_bytes() == (REPO_DIR / source).read_bytes()
    assert not (result.project_path / "scripts/naming.py").exists()  # the package's now
    # Run from anywhere, it runs prh_ingest.regenerate on its own project.
    alone = run_python([str(result.project_path / "scripts/regenerate.py"), "--help"], tmp_path)
    assert alone.returncode == 0 and "--check" in alone.stdout, alone.stderr
    assert not (result.project_path / "scripts/__pycache__").exists()
    # Without the package (python -S: no site-packages): one line; --check cannot say "behind".
    script = str(result.project_path / "scripts/regenerate.py")
    bare = run_python(["-S", script, "--check"], tmp_path)
    assert bare.returncode == 2 and bare.stdout == "", bare.stderr
    assert bare.stderr == (
        "error: No module named 'prh_ingest': install this project's development dependencies\n"
    )


def test_cruft_create_records_the_answers_and_the_commit(
    template: Path, project: Path, tmp_path: Path
) -> None:
    state = cruft_state(project)
    assert state["commit"] == head(template)
    assert state["skip"] == ["transform.py"]
    assert state["context"]["cookiecutter"]["source_name"] == "epic"
    script = (project / "scripts/regenerate.py").read_bytes()
    assert script == ENTRY_POINT.read_bytes()  # copied as is, not rendered
    result = regenerate(project, "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Up to date: no change to the ingest-project template since" in result.stdout
    # From another folder it still updates its own project (the entry point says which).
    elsewhere = run_python([str(project / "scripts/regenerate.py")], tmp_path)
    assert elsewhere.returncode == 0 and "No changes." in elsewhere.stdout, elsewhere.stderr


def test_a_change_to_the_shared_scripts_reaches_both_kinds_of_project(
    template: Path, project: Path, tmp_path: Path
) -> None:
    warehouse = cruft_warehouse(template, tmp_path / "warehouses", CLINIC_CAL)
    edit(template, "contract/scripts/regenerate.py", "how).", "how).\n# ours", "entry point")
    naming_module = "prh-ingest/src/prh_ingest/naming.py"
    edit(template, naming_module, "e.g. clinic-cal", "such as clinic-cal", "naming: hint")
    for made in (project, warehouse):
        assert regenerate(made, "--check").returncode == 1
        result = regenerate(made)
        assert_ok(result)
        assert "naming: hint" in result.stdout and "entry point" in result.stdout  # its commits
        for name, source in PROJECT_SCRIPTS.items():
            assert (made / name).read_text() == (template / source).read_text()
        assert cruft_state(made)["commit"] == head(template)


def test_an_update_renders_names_by_the_template_commit_s_naming(
    template: Path, project: Path
) -> None:
    """The names come from the naming module at the new template commit, not from the
    prh_ingest that runs the update (this checkout's, unchanged)."""
    naming_module = "prh-ingest/src/prh_ingest/naming.py"
    edit(template, naming_module, '_DATABASE_URL"', '_WAREHOUSE_URL"', "naming: sink setting")

    assert_ok(regenerate(project))

    settings = (project / "prefect/.env").read_text()
    assert "\nCLINIC_CAL_WAREHOUSE_URL=" in settings and "CLINIC_CAL_DATABASE_URL" not in settings


def test_a_template_change_reaches_an_edited_project(template: Path, project: Path) -> None:
    edit(project, "README.md", "Loads the", "Every morning, loads the")
    edit(project, "prefect/.env", "PIPENV_NOSPIN=1\n", "PIPENV_NOSPIN=1\nPIPENV_TIMEOUT=900\n")
    (project / "NOTES.md").write_text("On-call: the data team.\n")
    commit_all(project, "our edits")
    edit_ingest_template(template, "README.md", RUN_HEADING, "## Run it on your machine")

    result = regenerate(project)

    assert_ok(result)
    readme = (project / "README.md").read_text()
    assert "## Run it on your machine" in readme and "Every morning, loads the" in readme
    assert "PIPENV_TIMEOUT=900\n" in (project / "prefect/.env").read_text()
    assert (project / "NOTES.md").read_text() == "On-call: the data team.\n"
    assert cruft_state(project)["commit"] == head(template)
    assert "1 change(s) to the ingest-project template" in result.stdout
    assert "ingest template: README.md" in result.stdout  # what changed, by commit
    assert "M  README.md\n" in result.stdout  # the changed files (git apply -3 stages them)
    assert "Created clinic-cal/" not in result.stdout  # the first bake's message is not repeated


# Built from parts so that this file holds no line a conflict-marker check would flag.
CONFLICT = "\n".join(
    [
        "<" * 7 + " ours",
        "## Run it on your laptop",
        "=" * 7,
        "## Run it on your machine",
        ">" * 7 + " theirs",
        "",
    ]
)


def test_a_conflict_exits_1_and_keeps_cruft_json_at_the_old_commit(
    template: Path, project: Path
) -> None:
    old_state = (project / ".cruft.json").read_bytes()
    old_commit = cruft_state(project)["commit"]
    edit(project, "README.md", RUN_HEADING, "## Run it on your laptop", "our heading")
    edit_ingest_template(template, "README.md", RUN_HEADING, "## Run it on your machine")

    result = regenerate(project)

    assert result.returncode == 1
    assert result.stderr.startswith("error: merge conflicts to resolve by hand: README.md;")
    assert f".cruft.json stays at {old_commit[:12]}" in result.stderr
    assert CONFLICT in (project / "README.md").read_text()
    assert (project / ".cruft.json").read_bytes() == old_state
    assert regenerate(project, "--check").returncode == 1  # still behind

    refused = regenerate(project, "--resolved")
    assert refused.returncode == 1
    assert refused.stderr == "error: still unresolved: README.md\n"
    edit(project, "README.md", CONFLICT, "## Run it on your machine or laptop\n")
    git(project, "add", "README.md")
    assert_ok(regenerate(project, "--resolved"))
    assert cruft_state(project)["commit"] == head(template)
    commit_all(project, "take the template update")
    assert_ok(regenerate(project, "--check"))


def test_deleting_a_file_the_team_edited_exits_1(template: Path, project: Path) -> None:
    old_state = (project / ".cruft.json").read_bytes()
    edit(project, "ruff.toml", "line-length", "# ours\nline-length", "our lint settings")
    ours = (project / "ruff.toml").read_text()
    git(template, "rm", "-q", f"{INGEST_TEMPLATE}/ruff.toml")
    commit_all(template, "ingest template: drop ruff.toml")

    result = regenerate(project)

    assert result.returncode == 1
    assert "merge conflicts to resolve by hand: ruff.toml;" in result.stderr
    assert (project / "ruff.toml").read_text() == ours  # kept as edited: no markers
    assert (project / ".cruft.json").read_bytes() == old_state


def test_a_dirty_tree_is_refused(template: Path, project: Path) -> None:
    (project / "scratch.txt").write_text("work in progress\n")
    edit_ingest_template(template, "README.md", RUN_HEADING, "## Run it on your machine")
    before = tree(project)
    result = regenerate(project)
    assert result.returncode == 1
    assert result.stderr.startswith("error: uncommitted changes")
    assert tree(project) == before


def test_check_sees_only_its_own_template(template: Path, tmp_path: Path) -> None:
    project = cruft_project(template, tmp_path / "projects")
    warehouse = cruft_warehouse(template, tmp_path / "warehouses", CLINIC_CAL)
    recorded = head(template)
    edit(template, "warehouse-template/cookiecutter.json", '"deploy"', '"prefect"', "wh: user")

    assert regenerate(project, "--check").returncode == 0
    behind = regenerate(warehouse, "--check")
    assert behind.returncode == 1
    assert f"template update available: {recorded[:12]}..{head(template)[:12]}" in behind.stdout
    assert "1 commit(s) to the warehouse template" in behind.stdout and "wh: user" in behind.stdout

    # The warehouse takes it; then an ingest-only commit flags the project, not the warehouse.
    assert_ok(regenerate(warehouse))
    commit_all(warehouse, "template update")
    edit_ingest_template(template, "README.md", RUN_HEADING, "## Run it on your machine")
    assert regenerate(warehouse, "--check").returncode == 0
    stale = regenerate(project, "--check")
    assert stale.returncode == 1
    assert f"template update available: {recorded[:12]}..{head(template)[:12]}" in stale.stdout
    assert "2 commit(s)" not in stale.stdout and "1 commit(s)" in stale.stdout


def test_check_cannot_reach_the_template_exits_2(project: Path, template: Path) -> None:
    state = cruft_state(project)
    (project / ".cruft.json").write_text(json.dumps({**state, "template": str(template / "gone")}))
    result = regenerate(project, "--check")
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: cannot clone the template {template / 'gone'}:")


def test_a_plain_cookiecutter_project_is_told_how_to_link(cookies: Cookies) -> None:
    project = baked(cookies.bake(template=INGEST_TEMPLATE_DIR))  # no .cruft.json: not cruft
    git(project, "init", "-q", "-b", "main")
    commit_all(project, "baked")
    result = regenerate(project)
    assert result.returncode == 1
    assert result.stderr.startswith("error: no .cruft.json: link this project to its template")
    assert "`cruft link -y --skip transform.py --checkout <the template commit" in result.stderr
    assert "--directory" not in result.stderr
    assert regenerate(project, "--check").returncode == 2


def test_generated_ci_reports_template_updates_without_blocking(cookies: Cookies) -> None:
    project = baked(cookies.bake(template=INGEST_TEMPLATE_DIR))
    jobs = yaml.safe_load((project / ".github/workflows/ci.yml").read_text())["jobs"]
    job = jobs["template-update"]
    assert job["continue-on-error"] is True
    script = job["steps"][-1]["run"]
    assert "pipenv run python scripts/regenerate.py --check || status=$?" in script
    install = job["steps"][-2]["run"]  # the check is the package's: the dev install brings it
    assert install == jobs["test"]["steps"][2]["run"] and "pipenv install --dev" in install
    assert "::warning::template update available" in script
    assert "continue-on-error" not in jobs["test"]


CERNER_ENTRY = {
    "clinic-cal-cerner-ingest": {
        "repo": "https://github.com/org/clinic-cal.git",
        "entrypoint": "prefect/clinic-cal-cerner-ingest.py:clinic_cal_cerner_ingest",
        "cron": "0 6 * * *",
    }
}


def test_an_update_adds_a_source_as_a_fresh_bake_would(
    template: Path, project: Path, tmp_path: Path
) -> None:
    edit(project, "README.md", "Loads the", "Every morning, loads the", "our edit")

    result = regenerate(project, "--add", json.dumps({"cerner": "csv"}))

    assert_ok(result)
    flow = (project / "prefect/clinic-cal-cerner-ingest.py").read_text()
    assert 'FLOW_NAME = "clinic-cal-cerner-ingest"' in flow and 'SOURCE = "cerner"' in flow
    settings = (project / "prefect/.env").read_text()
    assert "CLINIC_CAL_CERNER_SOURCE_FILE=/srv/prh/landing/clinic-cal/cerner.csv\n" in settings
    assert "PIPENV_CUSTOM_VENV_NAME=prefect-clinic-cal\n" in settings  # still one venv
    printed = [line.split("'")[1] for line in result.stdout.splitlines() if "--add '" in line]
    assert [json.loads(entry) for entry in printed] == [CERNER_ENTRY]
    assert cruft_state(project)["context"]["cookiecutter"]["extra_sources"] == {"cerner": "csv"}
    fresh = cruft_project(template, tmp_path / "fresh", extra_sources={"cerner": "csv"})
    ours = {name: text for name, text in tree(project).items() if name != ".cruft.json"}
    theirs = {name: text for name, text in tree(fresh).items() if name != ".cruft.json"}
    assert ours.pop("README.md") != theirs.pop("README.md")  # our edit stays
    assert ours == theirs


def test_a_bad_source_is_refused_and_changes_nothing(project: Path) -> None:
    before = tree(project)
    result = regenerate(project, "--add", json.dumps({"Cerner!": "csv"}))
    assert result.returncode == 1
    assert "error: extra_sources key 'Cerner!' is not valid: lowercase words joined by '-'" in (
        result.stderr
    )
    assert tree(project) == before


def test_an_update_lists_the_team_s_own_code_in_skip_when_missing(
    template: Path, tmp_path: Path
) -> None:
    """A project made without `--skip transform.py`: its first update protects the file."""
    import cruft

    made = cruft.create(str(template), output_dir=tmp_path / "bare", no_input=True)
    git(made, "init", "-q", "-b", "main")
    commit_all(made, "baked without --skip")
    assert "skip" not in cruft_state(made)
    edit_ingest_template(template, "README.md", RUN_HEADING, "## Run it on your machine")

    result = regenerate(made)

    assert_ok(result)
    assert cruft_state(made)["skip"] == ["transform.py"]
    assert "transform.py is yours: listed in .cruft.json's skip" in result.stdout
