"""How the hooks of both templates reach this package, and the scripts every project carries.

Cookiecutter (and cruft, in create, update, link and diff) puts the template's folder on
sys.path while it renders, so cookiecutter.json's `_extensions` loads TemplateFolder from
there; and it renders and runs each hook from inside that folder (that is where it finds
hooks/). So in a hook, `{{ template_folder() }}` is the template's folder: the repository
itself for the ingest template, warehouse-template/ for the warehouse, which holds
`contract` as a link to the repository's. A hook puts that folder first on sys.path and
imports `prh_ingest.naming` (importing `contract` puts the package's source first).
(cookiecutter 2.7.1 also puts the folder in the context
as `cookiecutter._repo_dir`, but cruft does not, and cruft renders every template update.)

A generated project must stand alone, so the post-generation hook copies the scripts it
runs later (scripts/regenerate.py and the scripts/naming.py it imports) from here; a
template update renders the hook at the new commit, so it brings their changes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from jinja2 import Environment
from jinja2.ext import Extension

REPOSITORY = Path(__file__).resolve().parents[1]  # the template repository's checkout
# The project's file -> the repository's file it is a copy of.
PROJECT_SCRIPTS = {
    "scripts/regenerate.py": "contract/regenerate.py",
    "scripts/naming.py": "prh-ingest/src/prh_ingest/naming.py",
}


class TemplateFolder(Extension):
    """`{{ template_folder() }}`: the folder of the template whose hook is being rendered."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.globals["template_folder"] = os.getcwd


def copy_project_scripts(project: Path) -> None:
    """The scripts every project carries, as they are in this package (never rendered)."""
    for name, source in PROJECT_SCRIPTS.items():
        target = project / name
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(REPOSITORY / source, target)
