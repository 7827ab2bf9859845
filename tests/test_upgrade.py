"""A project generated before the engine package (the release at RELEASE_BEFORE_PACKAGE)
becomes current through its own `python scripts/regenerate.py`, the copy it carries: one
update, one commit, as MIGRATING.md's section says (its commands run here as written). Its
names, settings and table stay; the copies the package replaces go.

Whether its next load behaves as before is the loader's thin ingest.py (tests of the
package); here: the regeneration mechanics."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from support.commands import REPO_DIR, run, tool_env
from support.git import commit_all, git, head, tree
from support.migrating_doc import read_steps
from support.regeneration import (
    RELEASE_BEFORE_PACKAGE,
    cruft_project,
    cruft_state,
    cruft_warehouse,
    regenerate,
    released_template_repo,
    update_template_repo,
)
from support.warehouse import CLINIC_CAL

ENTRY_POINT = REPO_DIR / "contract/scripts/regenerate.py"
# The private names cookiecutter.json derived before prh_ingest.jinja's filters did.
DERIVED_ANSWERS = (
    "__env_prefix",
    "__flow_name",
    "__flow_function",
    "__source_key",
    "__source_setting",
    "__sink_setting",
    "__table_name",
)
MARKERS = re.compile(r"^(<<<<<<<|>>>>>>>) ", re.MULTILINE)
SECTION = "Projects made before the engine package"  # MIGRATING.md's


def run_as_written(line: str, project: Path) -> str:
    """One line of MIGRATING.md's block, in bash, with this venv's python (cruft, prh_ingest)."""
    result = run(["bash", "-c", line], project, tool_env(os.environ))
    assert result.returncode == 0, f"{line}\n{result.stdout}{result.stderr}"
    return result.stdout


def marked(project: Path) -> list[str]:
    """The project's files with conflict markers."""
    texts = {name: data.decode(errors="replace") for name, data in tree(project).items()}
    return [name for name, text in texts.items() if MARKERS.search(text)]


@pytest.fixture
def released(tmp_path: Path) -> tuple[Path, Path]:
    """(template repo at the release, a project made from it with `cruft create`, committed);
    then this checkout's templates committed to the template repo as the next release."""
    template = released_template_repo(tmp_path, RELEASE_BEFORE_PACKAGE)
    project = cruft_project(template, tmp_path / "projects")
    assert (project / "scripts/naming.py").is_file()  # what the release's projects carry
    return template, project


def settings_lines(env: Path | str) -> list[str]:
    """The lines of a prefect/.env that set something (comments and blank lines aside)."""
    text = env.read_text() if isinstance(env, Path) else env
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_an_old_project_takes_the_package_in_one_update(released: tuple[Path, Path]) -> None:
    template, project = released
    old_settings = (project / "prefect/.env").read_text()
    update_template_repo(template, "wave 4: the engine package")
    update, commit, check = read_steps()[SECTION].block().lines

    assert update.startswith("python scripts/regenerate.py ")  # the release's own copy
    run_as_written(update, project)

    assert not (project / "scripts/naming.py").exists()  # removed: the template has none
    assert (project / "scripts/regenerate.py").read_bytes() == ENTRY_POINT.read_bytes()
    state = cruft_state(project)
    assert state["commit"] == head(template)
    assert not set(DERIVED_ANSWERS) & set(state["context"]["cookiecutter"])
    assert not marked(project)
    # Same names and settings: only comments (new optional settings, commented out) may change.
    assert settings_lines(project / "prefect/.env") == settings_lines(old_settings)
    run_as_written(commit, project)  # the one commit
    assert git(project, "status", "--porcelain") == ""
    assert len(git(project, "log", "--format=%h").split()) == 2  # the bake and the update
    # The new entry point runs on the package and finds nothing left to take.
    assert "Up to date" in run_as_written(check, project)


def test_an_old_warehouse_takes_the_package_in_one_update(tmp_path: Path) -> None:
    template = released_template_repo(tmp_path, RELEASE_BEFORE_PACKAGE)
    warehouse = cruft_warehouse(template, tmp_path / "warehouses", CLINIC_CAL)
    flows = (warehouse / "prefect/flows.json").read_text()
    update_template_repo(template, "wave 4: the engine package")

    result = regenerate(warehouse)

    assert result.returncode == 0, result.stdout + result.stderr
    assert not (warehouse / "scripts/naming.py").exists()
    assert (warehouse / "scripts/regenerate.py").read_bytes() == ENTRY_POINT.read_bytes()
    assert (warehouse / "prefect/flows.json").read_text() == flows
    assert cruft_state(warehouse)["commit"] == head(template) and not marked(warehouse)


def test_a_hand_edited_ingest_py_is_a_clear_conflict(released: tuple[Path, Path]) -> None:
    template, project = released
    ingest = project / "ingest.py"  # the release's: the whole loader, which the package now holds
    ours = re.sub(r"^(SINK_SETTING = .*)$", r"\1  # our fix", ingest.read_text(), flags=re.M)
    assert "# our fix" in ours
    ingest.write_text(ours)
    commit_all(project, "our fix in ingest.py")
    old_state = (project / ".cruft.json").read_bytes()
    update_template_repo(template, "wave 4: the engine package")

    result = regenerate(project)

    assert result.returncode == 1
    assert result.stderr.startswith("error: merge conflicts to resolve by hand: ingest.py;")
    assert MARKERS.search(ingest.read_text()) and "# our fix" in ingest.read_text()
    assert (project / ".cruft.json").read_bytes() == old_state
