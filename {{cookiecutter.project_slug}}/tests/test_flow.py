"""The flows' own logic, without running a flow: names, settings and retry policy."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest
from prefect.states import Failed

PREFECT_DIR = Path(__file__).resolve().parent.parent / "prefect"
SOURCE = "{{ cookiecutter.source_name }}"
SOURCE_SETTING = "{{ cookiecutter | source_setting }}"


@pytest.fixture(scope="module")
def flow_module() -> ModuleType:
    """prefect/ingest_flow.py, imported as the flow files import it (from their folder)."""
    sys.path.insert(0, str(PREFECT_DIR))
    return importlib.import_module("ingest_flow")


def test_every_source_has_its_flow_file_with_the_contract_names(flow_module: ModuleType) -> None:
    first = importlib.import_module("{{ cookiecutter | flow_name }}")
    assert first.{{ cookiecutter | flow_function }}.name == "{{ cookiecutter | flow_name }}"
    assert first.SOURCE == SOURCE
    assert flow_module.source_setting(SOURCE) == SOURCE_SETTING
    commands = flow_module.ingest_commands(SOURCE)
    assert commands[0] == "set -euo pipefail" and commands[-1].endswith(f"ingest.py {SOURCE}")
    flow_files = [path for path in PREFECT_DIR.glob("*.py") if "\nFLOW_NAME = " in path.read_text()]
    settings = (PREFECT_DIR / ".env").read_text().splitlines()
    sources = [line for line in settings if line.split("=")[0].endswith("_SOURCE_FILE")]
    assert len(flow_files) == len(sources)


def test_settings_file_names_source_and_sink(flow_module: ModuleType, monkeypatch) -> None:
    for name in (SOURCE_SETTING, flow_module.SINK_SETTING):
        monkeypatch.delenv(name, raising=False)
    settings = flow_module.load_settings()
    assert settings[SOURCE_SETTING]
    if flow_module.uses_template_loader():  # a project's own ingest.py may not need the sink
        # a URL, with ${HOME} expanded by python-dotenv as the shell would
        assert "://" in settings[flow_module.SINK_SETTING]
        assert "${" not in settings[flow_module.SINK_SETTING]


def test_exported_variables_win_over_the_settings_file(flow_module: ModuleType, monkeypatch) -> None:
    monkeypatch.setenv(SOURCE_SETTING, "/tmp/exported.{{ cookiecutter.source_format }}")
    settings = flow_module.load_settings()
    assert SOURCE_SETTING not in settings
    assert flow_module.setting(settings, SOURCE_SETTING) == "/tmp/exported.{{ cookiecutter.source_format }}"


def test_missing_setting_names_itself(flow_module: ModuleType, monkeypatch) -> None:
    monkeypatch.delenv(flow_module.SINK_SETTING, raising=False)
    with pytest.raises(ValueError, match=flow_module.SINK_SETTING):
        flow_module.setting({}, flow_module.SINK_SETTING)


@pytest.mark.parametrize(("bad_source", "retry"), [(True, False), (False, True)])
def test_only_failures_other_than_a_bad_source_are_retried(
    flow_module: ModuleType, bad_source: bool, retry: bool
) -> None:
    error = flow_module.BadSourceFile("rejected") if bad_source else RuntimeError("db down")
    assert flow_module.retry_unless_bad_source(None, None, Failed(data=error)) is retry
