"""A warehouse entry's `freshness` and `source` (issue 27), in-process: checked with the other
keys (--dry-run too, one line naming the entry and the key), kept in flows.json only when
set, and the automations the plan wants of them."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from deploy_entries import CLINIC_CAL, ENTRY, warehouse_with
from prefect.automations import Automation
from prh_ingest.deploy import automations, flows_file, main, status
from prh_ingest.deploy.flows_file import FlowEntry, completed
from prh_ingest.naming import Invalid

FRESH = {**ENTRY, "freshness": "26h", "source": "clinic-cal/epic"}

BAD_FRESHNESS = {
    "no-unit": ({**FRESH, "freshness": "26"}, ".freshness: '26' is not a duration"),
    "words": ({**FRESH, "freshness": "a day"}, ".freshness: 'a day' is not a duration"),
    "number": ({**FRESH, "freshness": 26}, ".freshness: must be text like '26h'"),
    "too-short": ({**FRESH, "freshness": "5s"}, ".freshness: '5s' is too short"),
    "without-source": ({**ENTRY, "freshness": "26h"}, ".freshness: needs the entry's source"),
    "source-no-slash": ({**FRESH, "source": "clinic-cal-epic"}, ".source: 'clinic-cal-epic' is"),
    "source-bad-slug": ({**FRESH, "source": "Clinic/epic"}, ".source (project slug)"),
    "source-two-slashes": ({**FRESH, "source": "a/b/c"}, ".source: 'a/b/c' is not"),
}


@pytest.mark.parametrize(
    ("entry", "message"), list(BAD_FRESHNESS.values()), ids=list(BAD_FRESHNESS)
)
def test_a_bad_freshness_is_refused_naming_the_entry_and_key(entry: dict, message: str) -> None:
    with pytest.raises(Invalid) as refused:
        flows_file.check_flows({"x-ingest": entry}, "flows")
    assert str(refused.value).startswith("flows['x-ingest']" + message), refused.value
    assert "\n" not in str(refused.value)


def test_dry_run_refuses_a_bad_freshness_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PRH_NOTIFY_URL", raising=False)
    warehouse = warehouse_with(tmp_path, {"x-ingest": {**FRESH, "freshness": "1 day"}})
    assert main(warehouse, ["--dry-run"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "error: prefect/flows.json['x-ingest'].freshness: '1 day' is not a duration: "
        "use a whole number and a unit: 45s, 90m, 26h or 2d\n"
    )


def test_freshness_and_source_are_kept_only_when_set(tmp_path: Path) -> None:
    path = tmp_path / "flows.json"
    path.write_text("{}\n")
    flows_file.add(path, [json.dumps({**CLINIC_CAL, "fresh-ingest": FRESH})], "UTC")
    written = json.loads(path.read_text())
    assert "freshness" not in written["clinic-cal-epic-ingest"]
    assert written["fresh-ingest"]["freshness"] == "26h"
    assert written["fresh-ingest"]["source"] == "clinic-cal/epic"
    (plain, fresh) = flows_file.load(path)  # in name order
    assert fresh.slug_and_source() == ("clinic-cal", "epic")
    assert (plain.freshness, plain.source) == ("", "")


# --- the plan of the automations, against automations as the server would hold them ---

WAREHOUSE = "prh-warehouse"
BLOCK = uuid.UUID(int=7)


def entries(flows: dict[str, Any]) -> list[FlowEntry]:
    return [FlowEntry(deployment=n, **e) for n, e in completed(flows, "UTC").items()]


def stored(automation: Automation) -> Automation:
    """The automation as the server returns it: with an id."""
    return automation.model_copy(update={"id": uuid.uuid4()})


def test_each_entry_with_freshness_gets_one_automation_and_the_warehouse_one_late_run() -> None:
    wanted = automations.wanted_automations(
        WAREHOUSE, entries({**CLINIC_CAL, "fresh-ingest": FRESH}), BLOCK
    )
    assert [(a.name, e and e.deployment) for a, e in wanted] == [
        ("late-runs-prh-warehouse", None),
        ("freshness-fresh-ingest", "fresh-ingest"),
    ]
    steps = automations.automation_steps(WAREHOUSE, wanted, [], prune=False)
    assert automations.automation_lines(steps) == [
        "create    automation late-runs-prh-warehouse",
        "create    automation freshness-fresh-ingest",
        "automations: 2 create",
    ]


def test_a_stored_automation_is_unchanged_until_its_freshness_changes() -> None:
    flows = {"fresh-ingest": FRESH}
    on_server = [
        stored(a) for a, _ in automations.wanted_automations(WAREHOUSE, entries(flows), BLOCK)
    ]
    same = automations.wanted_automations(WAREHOUSE, entries(flows), BLOCK)
    assert [s.action for s in automations.automation_steps(WAREHOUSE, same, on_server, False)] == [
        "unchanged",
        "unchanged",
    ]
    longer = automations.wanted_automations(
        WAREHOUSE, entries({"fresh-ingest": {**FRESH, "freshness": "30h"}}), BLOCK
    )
    steps = automations.automation_steps(WAREHOUSE, longer, on_server, False)
    assert [(s.action, s.name) for s in steps] == [
        ("unchanged", "late-runs-prh-warehouse"),
        ("update", "freshness-fresh-ingest"),
    ]


@pytest.mark.parametrize(("prune", "action"), [(False, "unlisted"), (True, "prune")])
def test_only_the_warehouses_own_unwanted_automations_are_pruned(prune: bool, action: str) -> None:
    own = automations.wanted_automations(WAREHOUSE, entries({"fresh-ingest": FRESH}), BLOCK)
    others = automations.wanted_automations("other", entries({"other-ingest": FRESH}), BLOCK)
    hand_made = Automation(**{**own[1][0].model_dump(), "name": "hand-made", "tags": []})
    on_server = [stored(a) for a, _ in [*own, *others]] + [stored(hand_made)]
    late_only = own[:1]
    steps = automations.automation_steps(WAREHOUSE, late_only, on_server, prune)
    assert [(s.action, s.name) for s in steps] == [
        ("unchanged", "late-runs-prh-warehouse"),
        (action, "freshness-fresh-ingest"),
    ]


# --- --status: one row per source, judged by its freshness ---

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def loaded(hours_ago: float, rows: int) -> SimpleNamespace:
    return SimpleNamespace(occurred=NOW - timedelta(hours=hours_ago), payload={"rows": rows})


@pytest.mark.parametrize(
    ("event", "row"),
    [
        (loaded(2, 120), ("2026-12-06 10:00:00", "2h00m", "120", "fresh")),
        (loaded(27.5, 90), ("2026-12-05 08:30:00", "27h30m", "90", "late (over 26h)")),
        (None, ("-", "-", "-", "never")),
    ],
    ids=["fresh", "late", "never"],
)
def test_a_status_row_says_when_the_source_last_loaded(event: object, row: tuple) -> None:
    (entry,) = entries({"fresh-ingest": FRESH})
    assert status.source_row(entry, event, NOW) == ("clinic-cal/epic", "fresh-ingest", *row)


def test_a_source_without_freshness_is_shown_as_not_watched() -> None:
    unwatched = {key: value for key, value in FRESH.items() if key != "freshness"}
    (entry,) = entries({"fresh-ingest": unwatched})
    assert status.source_row(entry, loaded(200, 7), NOW) == (
        "clinic-cal/epic", "fresh-ingest", "2026-11-28 04:00:00", "200h00m", "7",
        "not watched (no freshness)",
    )
