"""Regenerating a warehouse (scripts/regenerate.py, cruft underneath), offline: template and
warehouse are git repos under tmp_path. Unchanged answers change nothing; prefect/flows.json is
the team's file (prw_deploy.py --add/--remove edit it as a fresh bake writes it; template
updates skip it); hand edits survive or conflict loudly; a dirty tree is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pytest_cookies.plugin import Cookies
from support import package
from support.baking import baked
from support.commands import run_python
from support.git import commit_all, git, tree
from support.regeneration import (
    TEMPLATE_SUBDIR,
    cruft_flows,
    cruft_warehouse,
    regenerate,
    template_repo,
)
from support.warehouse import (
    CLINIC_CAL,
    LAB_RESULTS,
    PRH_DASH,
    WAREHOUSE_TEMPLATE_DIR,
    dry_run_env,
)

TEMPLATE_PROJECT = f"{TEMPLATE_SUBDIR}/{{{{cookiecutter.warehouse_slug}}}}"
README_INTRO = "Where the team schedules every ingest flow"


@pytest.fixture
def template(tmp_path: Path) -> Path:
    return template_repo(tmp_path)


def bake(template: Path, root: Path, flows: dict) -> Path:
    return cruft_warehouse(template, root, flows)


def edit_template(template: Path, relative: str, old: str, new: str) -> None:
    """Commit a change to one template file, as a template release would."""
    path = template / TEMPLATE_PROJECT / relative
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    commit_all(template, f"template: change {relative}")


def assert_ok(result) -> None:
    assert result.returncode == 0, result.stdout + result.stderr


def edit_flows(warehouse: Path, *args: str):
    """The README's `python prefect/prw_deploy.py --add '<entry>'` (or --remove NAME)."""
    return run_python(["prefect/prw_deploy.py", *args], warehouse, dry_run_env(warehouse.parent))


def without_answers(files: dict[str, bytes]) -> dict[str, bytes]:
    """A warehouse's files but .cruft.json: --add edits flows.json, never the answers."""
    return {name: text for name, text in files.items() if name != ".cruft.json"}


def test_unchanged_answers_change_nothing(template: Path, tmp_path: Path) -> None:
    warehouse = bake(template, tmp_path / "w", {**CLINIC_CAL, **LAB_RESULTS})
    before = tree(warehouse)
    assert_ok(regenerate(warehouse))
    assert_ok(edit_flows(warehouse, "--add", json.dumps(CLINIC_CAL)))
    assert tree(warehouse) == before
    assert git(warehouse, "status", "--porcelain") == ""


def test_adding_the_printed_entry_equals_a_fresh_bake(template: Path, tmp_path: Path) -> None:
    warehouse = bake(template, tmp_path / "w", {})
    assert_ok(edit_flows(warehouse, "--add", json.dumps(CLINIC_CAL)))
    commit_all(warehouse, "add clinic-cal")
    assert_ok(edit_flows(warehouse, "--add", json.dumps(PRH_DASH)))
    fresh = bake(template, tmp_path / "fresh", {**CLINIC_CAL, **PRH_DASH})
    assert without_answers(tree(warehouse)) == without_answers(tree(fresh))
    assert cruft_flows(warehouse) == {}  # the answer only seeded the first flows.json


def test_removing_a_flow_removes_its_entry(template: Path, tmp_path: Path) -> None:
    warehouse = bake(template, tmp_path / "w", {**CLINIC_CAL, **LAB_RESULTS})
    assert_ok(edit_flows(warehouse, "--remove", "lab-results-ingest"))
    flows = (warehouse / "prefect/flows.json").read_text()
    assert "lab-results-ingest" not in flows and "lab_results" not in flows
    fresh = bake(template, tmp_path / "fresh", CLINIC_CAL)
    assert without_answers(tree(warehouse)) == without_answers(tree(fresh))


def test_removing_an_unknown_flow_is_refused(template: Path, tmp_path: Path) -> None:
    warehouse = bake(template, tmp_path / "w", CLINIC_CAL)
    result = edit_flows(warehouse, "--remove", "no-such-ingest")
    assert result.returncode == 1
    assert result.stderr == (
        "error: --remove no-such-ingest: no such flow (have: clinic-cal-epic-ingest)\n"
    )


def test_regenerate_points_flow_edits_to_the_deploy_tool(template: Path, tmp_path: Path) -> None:
    warehouse = bake(template, tmp_path / "w", CLINIC_CAL)
    before = tree(warehouse)
    result = regenerate(warehouse, "--add", json.dumps(LAB_RESULTS))
    assert result.returncode == 1
    assert result.stderr == (
        "error: a warehouse's flows are its own prefect/flows.json: `python prefect/prw_deploy.py"
        " --add '<entry>'` or `python prefect/prw_deploy.py --remove NAME` edits it; nothing"
        " changed\n"
    )
    assert tree(warehouse) == before


def test_flows_json_is_the_teams_through_every_template_update(
    template: Path, tmp_path: Path
) -> None:
    """In a warehouse made before flows.json was the team's (no skip), a hand edit of it (here
    a changed cron) and an added entry stay through a template update, which lists the file in
    .cruft.json's skip from then on."""
    warehouse = cruft_warehouse(template, tmp_path / "w", CLINIC_CAL, skip=())
    flows_json = warehouse / "prefect/flows.json"
    flows_json.write_text(flows_json.read_text().replace('"0 6 * * *"', '"15 4 * * *"'))
    assert_ok(edit_flows(warehouse, "--add", json.dumps(LAB_RESULTS)))
    commit_all(warehouse, "our flows")
    ours = flows_json.read_bytes()
    edit_template(template, "README.md", README_INTRO, "Where the whole team schedules each flow")

    result = regenerate(warehouse)

    assert_ok(result)
    assert "prefect/flows.json is yours: listed in .cruft.json's skip" in result.stdout
    assert flows_json.read_bytes() == ours
    assert "prefect/flows.json" in json.loads((warehouse / ".cruft.json").read_text())["skip"]
    assert git(warehouse, "status", "--porcelain").split() == ["M", ".cruft.json", "M", "README.md"]


def test_a_warehouse_without_answers_is_told_how_to_link_it(
    tmp_path: Path, cookies: Cookies
) -> None:
    warehouse = baked(cookies.bake(template=WAREHOUSE_TEMPLATE_DIR))  # no .cruft.json: not cruft
    git(warehouse, "init", "-q", "-b", "main")
    commit_all(warehouse, "baked")
    result = regenerate(warehouse)
    assert result.returncode == 1
    assert "error: no .cruft.json: link this project to its template" in result.stderr
    link = "`cruft link -y --directory warehouse-template --skip prefect/flows.json --checkout "
    assert link in result.stderr


def test_hand_edits_and_files_survive_a_template_update(template: Path, tmp_path: Path) -> None:
    warehouse = bake(template, tmp_path / "w", CLINIC_CAL)
    (warehouse / "prefect/notes.md").write_text("Written by hand.\n")
    with (warehouse / "README.md").open("a") as readme:
        readme.write("\nOn-call: the data team.\n")
    deploy = warehouse / "prefect/prw_deploy.py"
    deploy.write_text(deploy.read_text().replace('timezone="UTC"', 'timezone="America/Chicago"'))
    commit_all(warehouse, "hand edits")
    edit_template(template, "README.md", README_INTRO, "Where the whole team schedules each flow")

    assert_ok(regenerate(warehouse))

    readme = (warehouse / "README.md").read_text()
    assert "Where the whole team schedules each flow" in readme
    assert readme.endswith("\nOn-call: the data team.\n")
    assert 'timezone="America/Chicago"' in deploy.read_text()
    assert (warehouse / "prefect/notes.md").read_text() == "Written by hand.\n"


def test_a_pin_bump_reaches_the_warehouse_through_a_normal_update(
    template: Path, tmp_path: Path
) -> None:
    """How an engine fix reaches every warehouse: the template pins the new version (its
    `__versions`), and the warehouse's next `regenerate.py` brings the new pin into both venvs'
    requirements; the answer keeps its {version} placeholder, so it never holds an old one."""
    warehouse = bake(template, tmp_path / "w", CLINIC_CAL)
    old = package.version()
    assert f"@v{old}#" in (warehouse / "requirements-worker.txt").read_text()
    cookiecutter_json = template / TEMPLATE_SUBDIR / "cookiecutter.json"
    text = cookiecutter_json.read_text()
    bumped = f'"prh-ingest": "{old}"'
    assert bumped in text
    cookiecutter_json.write_text(text.replace(bumped, '"prh-ingest": "9.9.9"'))
    commit_all(template, "prh-ingest 9.9.9")

    assert_ok(regenerate(warehouse))

    assert "@v9.9.9#subdirectory=prh-ingest" in (warehouse / "requirements-worker.txt").read_text()
    changed = git(warehouse, "status", "--porcelain").split()
    assert changed == ["M", ".cruft.json", "M", "requirements-worker.txt"]


# Built from parts so that this file holds no line a conflict-marker check would flag.
CONFLICT = "\n".join(
    [
        "<" * 7 + " ours",
        "Our own intro and installs the Prefect worker that runs them.",
        "=" * 7,
        "The template's new intro and installs the Prefect worker that runs them.",
        ">" * 7 + " theirs",
        "",
    ]
)


def test_conflicting_edit_is_reported_not_lost(template: Path, tmp_path: Path) -> None:
    warehouse = bake(template, tmp_path / "w", CLINIC_CAL)
    readme = warehouse / "README.md"
    readme.write_text(readme.read_text().replace(README_INTRO, "Our own intro"))
    commit_all(warehouse, "hand edit")
    edit_template(template, "README.md", README_INTRO, "The template's new intro")
    old_state = (warehouse / ".cruft.json").read_bytes()

    result = regenerate(warehouse)

    assert result.returncode == 1
    assert (warehouse / ".cruft.json").read_bytes() == old_state  # cruft alone advances it
    assert "merge conflicts to resolve by hand" in result.stderr and "README.md" in result.stderr
    assert CONFLICT in readme.read_text()


def test_files_the_template_drops_are_removed(template: Path, tmp_path: Path) -> None:
    warehouse = bake(template, tmp_path / "w", CLINIC_CAL)
    git(template, "rm", "-q", f"{TEMPLATE_PROJECT}/ruff.toml")
    commit_all(template, "template: drop ruff.toml")
    assert_ok(regenerate(warehouse))
    assert not (warehouse / "ruff.toml").exists()
    assert (warehouse / "prefect/prw_deploy.py").exists()


def test_a_dropped_file_you_edited_is_kept_and_reported(template: Path, tmp_path: Path) -> None:
    warehouse = bake(template, tmp_path / "w", CLINIC_CAL)
    ruff_toml = warehouse / "ruff.toml"
    ruff_toml.write_text(ruff_toml.read_text() + "# ours\n")
    commit_all(warehouse, "hand edit")
    ours = ruff_toml.read_text()
    git(template, "rm", "-q", f"{TEMPLATE_PROJECT}/ruff.toml")
    commit_all(template, "template: drop ruff.toml")

    result = regenerate(warehouse)

    assert result.returncode == 1
    assert "merge conflicts to resolve by hand: ruff.toml;" in result.stderr
    assert ruff_toml.read_text() == ours  # kept as edited: no markers, nothing dropped


@pytest.mark.parametrize("change", ["modified", "untracked"])
def test_dirty_tree_is_refused(change: str, template: Path, tmp_path: Path) -> None:
    warehouse = bake(template, tmp_path / "w", {})
    if change == "modified":
        (warehouse / "README.md").write_text("work in progress\n")
    else:
        (warehouse / "scratch.txt").write_text("work in progress\n")
    before = tree(warehouse)
    result = regenerate(warehouse)
    assert result.returncode == 1
    assert "error: uncommitted changes" in result.stderr
    assert tree(warehouse) == before


ENTRY = CLINIC_CAL["clinic-cal-epic-ingest"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"x": {**ENTRY, "cron": "61 * * * *"}}, "error: --add['x'].cron: '61 * * * *'"),
        ("[1, 2]", "error: --add must be a JSON object, got [1, 2]"),
    ],
    ids=["bad-cron", "not-an-object"],
)
def test_rejected_entry_changes_nothing(
    entry: dict | str, message: str, template: Path, tmp_path: Path
) -> None:
    """Every rule is tested in-process (prh-ingest/tests); here, the warehouse's command."""
    warehouse = bake(template, tmp_path / "w", CLINIC_CAL)
    before = tree(warehouse)
    result = edit_flows(warehouse, "--add", entry if isinstance(entry, str) else json.dumps(entry))
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(message), result.stderr
    assert tree(warehouse) == before
