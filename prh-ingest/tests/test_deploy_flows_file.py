"""prefect/flows.json's rules, in-process: the one implementation the warehouse template's
hook applies to the `flows` answer and the deploy tool to the file, every time it reads it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from deploy_entries import CLINIC_CAL, ENTRY
from prh_ingest.deploy import flows_file
from prh_ingest.naming import Invalid

HOSTILE_FLOWS = {
    "cron-four-fields": ({"x": {**ENTRY, "cron": "0 6 * *"}}, "5-field cron"),
    "cron-out-of-range": ({"x": {**ENTRY, "cron": "0 25 * * *"}}, "not a valid cron"),
    "cron-command-substitution": ({"x": {**ENTRY, "cron": "$(reboot) * * * *"}}, "5-field"),
    "entrypoint-without-function": ({"x": {**ENTRY, "entrypoint": "prefect/x.py"}}, "path.py"),
    "entrypoint-escapes-repo": ({"x": {**ENTRY, "entrypoint": "prefect/../../x.py:f"}}, "'..'"),
    "entrypoint-backticks": ({"x": {**ENTRY, "entrypoint": "`id`.py:f"}}, "path.py"),
    "repo-command-substitution": ({"x": {**ENTRY, "repo": "https://h/$(id).git"}}, "git URL"),
    "repo-semicolon": ({"x": {**ENTRY, "repo": "/srv/a.git; rm -rf /"}}, "git URL"),
    "repo-with-credentials": ({"x": {**ENTRY, "repo": "https://u:t@h.org/a.git"}}, "git URL"),
    "repo-relative-path": ({"x": {**ENTRY, "repo": "a.git"}}, "git URL"),
    "deployment-quote": ({"x'y": ENTRY}, "flows key"),
    "deployment-newline": ({"x\ny": ENTRY}, "flows key"),
    "branch-dotdot": ({"x": {**ENTRY, "branch": "main..evil"}}, "'..'"),
    "env-value-substitution": ({"x": {**ENTRY, "env": {"A": "$(id)"}}}, "without quotes, $"),
    "env-value-newline": ({"x": {**ENTRY, "env": {"A": "a\nB=b"}}}, "without quotes, $"),
    "env-key-shell": ({"x": {**ENTRY, "env": {"A;B": "1"}}}, "environment variable name"),
    **{
        f"env-secret-{key.lower()}": ({"x": {**ENTRY, "env": {key: "x"}}}, "looks like a secret")
        for key in ("DB_PASSWORD", "AWS_SECRET", "GITHUB_TOKEN", "VENDOR_API_KEY", "api_key")
    },
    "env-secret-url-password": (
        {"x": {**ENTRY, "env": {"CLINIC_CAL_DATABASE_URL": "postgresql://etl:pw@db/prh"}}},
        "Secret block",
    ),
    "timezone-unknown": ({"x": {**ENTRY, "timezone": "Mars/Base"}}, "IANA timezone"),
    "timezone-path": ({"x": {**ENTRY, "timezone": "../../etc/passwd"}}, "IANA timezone"),
    "concurrency-zero": ({"x": {**ENTRY, "concurrency_limit": 0}}, "positive whole number"),
    "unknown-key": ({"x": {**ENTRY, "schedule": "daily"}}, "unknown key"),
    "missing-cron": ({"x": {"repo": ENTRY["repo"], "entrypoint": ENTRY["entrypoint"]}}, "cron"),
}


@pytest.mark.parametrize(
    ("flows", "message"), list(HOSTILE_FLOWS.values()), ids=list(HOSTILE_FLOWS)
)
def test_a_bad_entry_is_refused_naming_it(flows: dict, message: str) -> None:
    with pytest.raises(Invalid) as refused:
        flows_file.check_flows(flows, "flows")
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_hand_written_entry_gets_every_default(tmp_path: Path) -> None:
    path = tmp_path / "prefect" / "flows.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"b-ingest": ENTRY, "a-ingest": {**ENTRY, "branch": "prod"}}))
    (b, a) = flows_file.load(path, "America/New_York")
    assert (b.deployment, a.deployment) == ("b-ingest", "a-ingest")  # the file's order
    assert (b.branch, b.timezone, b.parameters, b.env, b.concurrency_limit) == (
        "main",
        "America/New_York",
        {},
        {},
        1,
    )
    assert a.branch == "prod"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "prefect/flows.json is not JSON (Expecting property name"),
        ("[]", "prefect/flows.json must hold a JSON object of deployments, got []"),
        (
            json.dumps({"x-ingest": {**ENTRY, "cron": "0 25 * * *"}}),
            "prefect/flows.json['x-ingest'].cron: '0 25 * * *' is not a valid cron",
        ),
        (
            json.dumps({"x-ingest": {**ENTRY, "schedule": "daily"}}),
            "prefect/flows.json['x-ingest']: unknown key(s) 'schedule'",
        ),
        (json.dumps({"X": ENTRY}), "prefect/flows.json key 'X' is not valid"),
    ],
    ids=["not-json", "not-an-object", "bad-cron", "unknown-key", "bad-name"],
)
def test_reading_a_bad_file_names_the_entry_and_the_key(
    text: str, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "prefect" / "flows.json"
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(Invalid) as refused:
        flows_file.load(path)
    assert str(refused.value).startswith(message), refused.value


def test_add_and_remove_write_the_file_as_a_fresh_bake_does(tmp_path: Path) -> None:
    path = tmp_path / "flows.json"
    path.write_text("{}\n")
    extra = {"a-ingest": {**ENTRY, "concurrency_limit": "2", "env": {"A_MODE": "x"}}}
    assert flows_file.add(path, [json.dumps(CLINIC_CAL)], "UTC") == ["clinic-cal-epic-ingest"]
    assert flows_file.add(path, [json.dumps(extra)], "UTC") == ["a-ingest"]
    both = {**CLINIC_CAL, **extra}
    assert path.read_text() == flows_file.dumps(flows_file.completed(both, "UTC"))
    assert list(json.loads(path.read_text())) == ["a-ingest", "clinic-cal-epic-ingest"]
    assert json.loads(path.read_text())["a-ingest"]["concurrency_limit"] == 2
    flows_file.remove(path, ["a-ingest"], "UTC")
    assert path.read_text() == flows_file.dumps(flows_file.completed(CLINIC_CAL, "UTC"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("add", [json.dumps({"x-ingest": {**ENTRY, "repo": "`id`"}})]), "--add['x-ingest'].repo"),
        (("add", ["{{ 7*7 }}"]), "--add must not contain template markers"),
        (("add", ["[1, 2]"]), "--add must be a JSON object, got [1, 2]"),
        (("add", [json.dumps({"ok-ingest": ENTRY}), "[1, 2]"]), "--add must be a JSON object"),
        (("remove", ["no-such-ingest"]), "--remove no-such-ingest: no such flow (have: clinic"),
    ],
    ids=["bad-repo", "jinja-markers", "not-an-object", "good-then-bad", "unknown-name"],
)
def test_a_refused_edit_leaves_the_file_as_it_was(
    change: tuple, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "flows.json"
    path.write_text(flows_file.dumps(flows_file.completed(CLINIC_CAL, "UTC")))
    before = path.read_bytes()
    action, argument = change
    with pytest.raises(Invalid) as refused:
        getattr(flows_file, action)(path, argument, "UTC")
    assert str(refused.value).startswith(message), refused.value
    assert path.read_bytes() == before
