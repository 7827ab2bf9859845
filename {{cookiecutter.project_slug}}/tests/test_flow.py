"""The flow script's own logic, without running a flow: settings and retry policy."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest
from prefect.states import Failed

FLOW_FILE = Path(__file__).resolve().parent.parent / "prefect" / "{{ cookiecutter.__flow_name }}.py"


@pytest.fixture(scope="module")
def flow_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("flow_under_test", FLOW_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flow_has_the_contract_names(flow_module: ModuleType) -> None:
    flow = flow_module.{{ cookiecutter.__flow_function }}
    assert flow.name == "{{ cookiecutter.__flow_name }}"
    assert flow_module.INGEST_COMMANDS[0] == "set -euo pipefail"


def test_settings_file_names_source_and_sink(flow_module: ModuleType, monkeypatch) -> None:
    for name in (flow_module.SOURCE_SETTING, flow_module.SINK_SETTING):
        monkeypatch.delenv(name, raising=False)
    settings = flow_module.load_settings()
    assert settings[flow_module.SOURCE_SETTING].startswith("/")
    # python-dotenv expands ${HOME} as the shell would
    assert settings[flow_module.SINK_SETTING] == os.path.expandvars("{{ cookiecutter.__database_url }}")


def test_exported_variables_win_over_the_settings_file(flow_module: ModuleType, monkeypatch) -> None:
    monkeypatch.setenv(flow_module.SOURCE_SETTING, "/tmp/exported.{{ cookiecutter.source_format }}")
    settings = flow_module.load_settings()
    assert flow_module.SOURCE_SETTING not in settings
    assert flow_module.setting(settings, flow_module.SOURCE_SETTING) == "/tmp/exported.{{ cookiecutter.source_format }}"


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
