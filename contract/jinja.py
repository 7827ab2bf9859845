"""`_extensions: ["contract.jinja.Names"]`: the names filters of prh_ingest.jinja, from the
template commit being rendered.

Cookiecutter appends the template's folder to sys.path, after the installed packages, and
Python keeps a module once imported. So `prh_ingest.jinja.Names` itself would be whatever
prh_ingest the rendering process has: in a project's `python scripts/regenerate.py`, the
version the project pins (cruft renders the old and the new template commit in that process),
none at all in a project made before the package existed. Instead, every environment cookiecutter
or cruft creates loads the package's source from this checkout's files, apart from any other
prh_ingest (sys.modules is put back afterwards). cruft checks each commit out into the same
clone, so even this module, imported at the first commit, reads the commit being rendered.

This module is new with the filters: a cruft update from an older commit has never imported
it, and it stays this small, so a copy imported at one commit serves the next ones as well.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

from jinja2 import Environment
from jinja2.ext import Extension

PACKAGE = "prh_ingest"


def package_source() -> str:
    """This checkout's prh-ingest/src (through warehouse-template/contract too)."""
    return str(Path(__file__).resolve().parents[1] / "prh-ingest" / "src")


def loaded_apart(module: str) -> ModuleType:
    """*module* of this checkout's package, imported while no other prh_ingest is loaded.
    No bytecode is written: cruft checks two commits out into one clone within a second, and
    a cached .pyc of the same size and second would pass for the next commit's source."""
    held = {name: sys.modules.pop(name) for name in list(sys.modules) if is_package(name)}
    writes_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    sys.path.insert(0, package_source())
    try:
        return importlib.import_module(module)
    finally:
        sys.path.remove(package_source())
        sys.dont_write_bytecode = writes_bytecode
        for name in [name for name in sys.modules if is_package(name)]:
            del sys.modules[name]
        sys.modules.update(held)


def is_package(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


class Names(Extension):
    """The filters that render every derived name (see prh_ingest/jinja.py)."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.filters.update(loaded_apart(f"{PACKAGE}.jinja").FILTERS)
