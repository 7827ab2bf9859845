"""The project's flows, without running one: each source's flow file, its names and the
settings file (what a flow does is prh_ingest.flow's, tested with the package)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest
from prh_ingest import flow

PREFECT_DIR = Path(__file__).resolve().parent.parent / "prefect"
SOURCE = "{{ cookiecutter.source_name }}"
SOURCE_SETTING = "{{ cookiecutter | source_setting }}"
SINK_SETTING = "{{ cookiecutter | sink_setting }}"


@pytest.fixture(scope="module")
def first_flow() -> ModuleType:
    """The first source's flow file, imported as Prefect imports it (from its folder)."""
    sys.path.insert(0, str(PREFECT_DIR))
    return importlib.import_module("{{ cookiecutter | flow_name }}")


def test_every_source_has_its_flow_file_with_the_contract_names(first_flow: ModuleType) -> None:
    assert first_flow.{{ cookiecutter | flow_function }}.name == "{{ cookiecutter | flow_name }}"
    assert first_flow.SOURCE == SOURCE
    assert first_flow.PROJECT.folder == PREFECT_DIR.parent
    assert flow.source_setting(first_flow.PROJECT, SOURCE) == SOURCE_SETTING
    commands = flow.ingest_commands(first_flow.PROJECT, SOURCE)
    assert commands[0] == "set -euo pipefail" and commands[-1].endswith(f"ingest.py {SOURCE}")
    flow_files = [path for path in PREFECT_DIR.glob("*.py") if "\nFLOW_NAME = " in path.read_text()]
    settings = (PREFECT_DIR / ".env").read_text().splitlines()
    sources = [line for line in settings if line.split("=")[0].endswith("_SOURCE_FILE")]
    assert len(flow_files) == len(sources)


def test_settings_file_names_source_and_sink(first_flow: ModuleType, monkeypatch) -> None:
    for name in (SOURCE_SETTING, SINK_SETTING):
        monkeypatch.delenv(name, raising=False)
    settings = flow.load_settings(first_flow.PROJECT)
    assert settings[SOURCE_SETTING]
    if flow.uses_template_loader(first_flow.PROJECT):  # a project's own ingest.py may not need it
        # a URL, with ${HOME} expanded by python-dotenv as the shell would
        assert "://" in settings[SINK_SETTING]
        assert "${" not in settings[SINK_SETTING]


def test_exported_variables_win_over_the_settings_file(first_flow: ModuleType, monkeypatch) -> None:
    monkeypatch.setenv(SOURCE_SETTING, "/tmp/exported.{{ cookiecutter.source_format }}")
    settings = flow.load_settings(first_flow.PROJECT)
    assert SOURCE_SETTING not in settings
    assert flow.setting(settings, SOURCE_SETTING) == "/tmp/exported.{{ cookiecutter.source_format }}"
