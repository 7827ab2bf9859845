"""A whole template repository under tmp_path (both templates, as a user's clone holds them),
and ingest projects and warehouses made from it with `cruft create`, each in its own git repo;
`scripts/regenerate.py` run in them."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import cruft

from support import package
from support.commands import REPO_DIR, run_python
from support.git import commit_all, git
from support.warehouse import WAREHOUSE

INGEST_TEMPLATE = "{{cookiecutter.project_slug}}"
TEMPLATE_SUBDIR = "warehouse-template"
# The repository's parts that make the two templates (tests, scripts and docs are not):
# contract/ is the hooks' glue and the script both kinds of project carry; prh-ingest/ the engine
# package (its naming module is the contract).
TEMPLATE_PARTS = (
    "cookiecutter.json", "hooks", "contract", "prh-ingest", INGEST_TEMPLATE, "warehouse-template"
)
OWN_CODE = ["transform.py"]  # what `cruft create --skip` lists, as the README says
# The last release before the engine package (wave 4): its projects carry the engine's copy.
RELEASE_BEFORE_PACKAGE = "f7d04d7976ce5cba5379152ff2eecc49d7f6e3f0"
WAREHOUSE_OWN_CODE = ["prefect/flows.json"]  # the same for a warehouse


def template_repo(root: Path) -> Path:
    """A git repo holding both templates of this repository, committed once."""
    repo = root / "template"
    repo.mkdir(parents=True)
    copy_template_parts(repo)
    git(repo, "init", "-q", "-b", "main")
    commit_all(repo, "template")
    return repo


def released_template_repo(root: Path, commit: str) -> Path:
    """A git repo holding both templates as this repository had them at *commit* (from this
    checkout's history: CI clones it whole)."""
    repo = root / "template"
    repo.mkdir(parents=True)
    listed = git(REPO_DIR, "ls-tree", "--name-only", commit).split()
    parts = [part for part in TEMPLATE_PARTS if part in listed]
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit, *parts],
        cwd=REPO_DIR, check=True, capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(repo, filter="tar")
    git(repo, "init", "-q", "-b", "main")
    commit_all(repo, f"template at {commit[:12]}")
    return repo


def update_template_repo(repo: Path, message: str) -> None:
    """Commit this checkout's templates over the template repo's: a release of this change."""
    for part in TEMPLATE_PARTS:
        old = repo / part
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        elif old.exists() or old.is_symlink():
            old.unlink()
    copy_template_parts(repo)
    commit_all(repo, message)


def copy_template_parts(repo: Path) -> None:
    for part in TEMPLATE_PARTS:
        source = REPO_DIR / part
        if source.is_dir():
            shutil.copytree(
                source, repo / part, symlinks=True,
                ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"),
            )
        else:
            shutil.copy2(source, repo / part)


def cruft_project(template: Path, output_dir: Path, **answers: Any) -> Path:
    """`cruft create <template> --skip transform.py` with *answers*, committed in its own repo;
    the project installs the package under test (a template without the answer ignores it)."""
    project = cruft.create(
        str(template),
        output_dir=output_dir,
        extra_context={"prh_ingest": package.answer(), **answers},
        no_input=True,
        skip=list(OWN_CODE),
    )
    git(project, "init", "-q", "-b", "main")
    commit_all(project, "baked")
    return Path(project)


def cruft_warehouse(
    template: Path,
    output_dir: Path,
    flows: dict[str, Any],
    skip: tuple[str, ...] = tuple(WAREHOUSE_OWN_CODE),
) -> Path:
    """`cruft create --directory warehouse-template --skip prefect/flows.json` with *flows*,
    committed in its own repo (skip=(): a warehouse made before flows.json was the team's)."""
    cruft.create(
        str(template),
        output_dir=output_dir,
        directory=TEMPLATE_SUBDIR,
        extra_context={"flows": flows},
        no_input=True,
        skip=list(skip),
    )
    warehouse = output_dir / WAREHOUSE
    git(warehouse, "init", "-q", "-b", "main")
    commit_all(warehouse, "baked")
    return warehouse


def edit(root: Path, relative: str, old: str, new: str, message: str | None = None) -> None:
    """Replace *old* by *new* in one file; with *message*, commit the change."""
    path = root / relative
    text = path.read_text()
    assert old in text, f"{old!r} not in {relative}"
    path.write_text(text.replace(old, new, 1))
    if message:
        commit_all(root, message)


def edit_ingest_template(template: Path, relative: str, old: str, new: str) -> None:
    edit(template, f"{INGEST_TEMPLATE}/{relative}", old, new, f"ingest template: {relative}")


def regenerate(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The project's documented command, with this venv's python (it has cruft)."""
    return run_python(["scripts/regenerate.py", *args], cwd=project)


def cruft_state(project: Path) -> dict[str, Any]:
    return json.loads((project / ".cruft.json").read_text())


def cruft_flows(warehouse: Path) -> dict[str, Any]:
    state = json.loads((warehouse / ".cruft.json").read_text())
    return state["context"]["cookiecutter"]["flows"]
