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

The templates' files render their names through `contract.jinja.Names` (the filters of
prh_ingest.jinja, from the commit being rendered; contract/jinja.py says why not directly).

The post-generation hook copies the scripts a project runs later from here, never rendered:
scripts/regenerate.py, a few-line entry point over prh_ingest.regenerate (the package the
project's development environment installs); a template update renders the hook at the
new commit, so it brings their changes.
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
    "scripts/regenerate.py": "contract/scripts/regenerate.py",
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
