"""prw_deploy.py's command line in-process, where no server is needed: a bad flows.json stops
every mode that reads it with one line before anything is deployed; --dry-run describes the
file; --add and --remove edit it. (tests/test_warehouse_deploy.py runs plan and deploy
against a live server.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from deploy_entries import CLINIC_CAL, ENTRY, warehouse_with
from prh_ingest.deploy import flows_file, main

BAD = {**CLINIC_CAL, "lab-ingest": {**ENTRY, "cron": "0 6 * *"}}
BAD_LINE = (
    "error: prefect/flows.json['lab-ingest'].cron: '0 6 * *' is not a 5-field cron expression"
    " like '0 6 * * *'\n"
)


@pytest.fixture(autouse=True)
def no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """A closed port: a mode that reached for the server would fail another way."""
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    monkeypatch.delenv("PRH_NOTIFY_URL", raising=False)


@pytest.mark.parametrize("argv", [["--dry-run"], ["--plan"], [], ["--prune"]])
def test_a_bad_entry_stops_every_mode_with_one_line(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    warehouse = warehouse_with(tmp_path, BAD)
    assert main(warehouse, argv) == 1
    captured = capsys.readouterr()
    assert (captured.err, captured.out) == (BAD_LINE, "")


def test_dry_run_describes_each_entry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    warehouse = warehouse_with(tmp_path, {**CLINIC_CAL, "x-ingest": {**ENTRY, "cron": ""}})
    assert main(warehouse, ["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 deployment(s) for work pool 'ingest'\n\nclinic-cal-epic-ingest\n")
    assert "  schedule:   0 6 * * * = At 06:00 AM (UTC)\n" in out
    assert "  schedule:   none (cron is empty" in out and "  next runs:  -\n" in out
    assert out.endswith("Dry run: nothing was deployed.\n")


@pytest.mark.parametrize(
    "url", ["https://h.example/x'y", "https://u:p@h.example/x", "hooks.slack.com/x", "http://h/ x"]
)
def test_a_bad_notify_url_stops_the_dry_run_with_one_line(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.setenv("PRH_NOTIFY_URL", url)
    assert main(warehouse_with(tmp_path, CLINIC_CAL), ["--dry-run"]) == 2
    captured = capsys.readouterr()
    assert captured.err == (
        "error: PRH_NOTIFY_URL is not an http(s) URL without credentials, quotes or spaces\n"
    )
    assert captured.out == ""


def test_add_then_remove_through_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    warehouse = warehouse_with(tmp_path, {}, timezone="America/Puerto_Rico")
    assert main(warehouse, ["--add", json.dumps(CLINIC_CAL)]) == 0
    assert capsys.readouterr().out.startswith(
        "Added clinic-cal-epic-ingest to prefect/flows.json.\n"
    )
    (entry,) = flows_file.load(warehouse.flows_file)
    assert entry.timezone == "America/Puerto_Rico"  # the warehouse's, written out
    assert main(warehouse, ["--remove", "clinic-cal-epic-ingest"]) == 0
    assert json.loads(warehouse.flows_file.read_text()) == {}


def test_a_refused_add_is_one_line_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    warehouse = warehouse_with(tmp_path, CLINIC_CAL)
    before = warehouse.flows_file.read_bytes()
    bad = json.dumps({"x-ingest": {**ENTRY, "env": {"DB_PASSWORD": "x"}}})
    assert main(warehouse, ["--add", bad]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: --add['x-ingest'].env['DB_PASSWORD'] looks like a secret")
    assert warehouse.flows_file.read_bytes() == before
