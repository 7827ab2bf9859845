"""Shared fixtures. pytest puts tests/ on sys.path, so helpers import as `support.*`."""

from pathlib import Path

import pytest
from support.baking import write_cookiecutter_config
from support.booted import booted_system  # noqa: F401 (fixture)
from support.services import postgres_server, prefect_server, s3_server  # noqa: F401 (fixtures)


@pytest.fixture(scope="session")
def _cookiecutter_config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pytest-cookies' user config (its fixture, replaced): bakes install the package under test."""
    return write_cookiecutter_config(tmp_path_factory.mktemp("cookiecutter-user"))
