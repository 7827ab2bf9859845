"""The version a project pins is the package's own."""

from __future__ import annotations

import tomllib
from pathlib import Path

import prh_ingest

PYPROJECT = Path(__file__).parents[1] / "pyproject.toml"


def test_the_installed_version_is_the_pyprojects() -> None:
    assert prh_ingest.__version__ == tomllib.loads(PYPROJECT.read_text())["project"]["version"]
