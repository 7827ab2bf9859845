"""Freshness without a server: durations, the events' payloads, the automations' shape.
The live side (firing and not firing) is tests/e2e/test_freshness.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from prh_ingest import freshness, naming
from prh_ingest.load.checks import RowCheckSettings, check_rows

CANARY = "MRN-CANARY-7731"
SUMMARY = {
    "summary": "prh-ingest-load",
    "source": "epic",
    "table": "clinic_cal_epic",
    "ok": True,
    "file": f"{CANARY}.csv",
    "path": f"/data/{CANARY}.csv",
    "size_bytes": 2048,
    "sha256": "ab" * 32,
    "rows": 12,
    "mode": "append",
    "same_as_load": None,
    "replaced_loads": 0,
    "columns_added": [CANARY],
    "seconds": 0.2,
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("45s", timedelta(seconds=45)),
        ("90m", timedelta(minutes=90)),
        ("26h", timedelta(hours=26)),
        ("2d", timedelta(days=2)),
        (" 10s ", timedelta(seconds=10)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert freshness.parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("26", "'26' is not a duration: use a whole number and a unit: 45s, 90m, 26h or 2d"),
        ("0h", "'0h' is not a duration: use a whole number and a unit: 45s, 90m, 26h or 2d"),
        ("1.5h", "'1.5h' is not a duration: use a whole number and a unit: 45s, 90m, 26h or 2d"),
        ("26H", "'26H' is not a duration: use a whole number and a unit: 45s, 90m, 26h or 2d"),
        ("", "'' is not a duration: use a whole number and a unit: 45s, 90m, 26h or 2d"),
        ("9s", "'9s' is too short: Prefect watches for a missing event 10s at the least"),
        (26, "must be text like '26h', got 26"),
    ],
)
def test_a_bad_duration_says_what_is_wrong(text: object, message: str) -> None:
    with pytest.raises(ValueError) as error:
        freshness.parse_duration(text)
    assert str(error.value) == message


def test_an_entrys_bad_freshness_names_the_entry_and_the_key() -> None:
    where = "flows['clinic-cal-epic-ingest'].freshness"
    assert freshness.check_freshness(where, "26h") == timedelta(hours=26)
    with pytest.raises(naming.Invalid) as error:
        freshness.check_freshness(where, "a day")
    assert str(error.value) == (
        "flows['clinic-cal-epic-ingest'].freshness: 'a day' is not a duration: "
        "use a whole number and a unit: 45s, 90m, 26h or 2d"
    )


@pytest.mark.parametrize(
    ("hours_ago", "state"), [(None, "never"), (25, "fresh"), (26, "fresh"), (27, "late")]
)
def test_the_status_of_a_source(hours_ago: int | None, state: str) -> None:
    now = datetime(2026, 12, 6, 6, 0, tzinfo=UTC)
    last = None if hours_ago is None else now - timedelta(hours=hours_ago)
    assert freshness.freshness_state(last, timedelta(hours=26), now) == state


def test_status_exits_0_only_when_every_source_is_fresh() -> None:
    assert freshness.status_exit_code(["fresh", "fresh"]) == 0
    assert freshness.status_exit_code(["fresh", "late"]) == 2
    assert freshness.status_exit_code(["never"]) == 2


def test_a_load_emits_loaded_with_counts_only() -> None:
    [event] = freshness.load_events("clinic-cal", "epic", SUMMARY)
    assert event.event == "prh.ingest.loaded"
    assert event.resource["prefect.resource.id"] == "prh.source.clinic-cal-epic"
    assert event.payload == {
        "rows": 12,
        "bytes": 2048,
        "sha256": "ab" * 32,
        "mode": "append",
        "table": "clinic_cal_epic",
    }
    assert CANARY not in json.dumps([event.resource, event.payload])


def test_a_field_that_is_not_what_it_claims_is_left_out() -> None:
    odd = {**SUMMARY, "rows": CANARY, "sha256": CANARY, "mode": CANARY, "table": f"x; {CANARY}"}
    [event] = freshness.load_events("clinic-cal", "epic", odd)
    assert event.payload == {
        "rows": None,
        "bytes": 2048,
        "sha256": None,
        "mode": None,
        "table": None,
    }


@pytest.mark.parametrize(
    ("changes", "names"),
    [
        pytest.param({"same_as_load": 3}, ["prh.ingest.unchanged"], id="resend-is-unchanged"),
        pytest.param({"ok": False, "error": CANARY}, [], id="failed-load-emits-nothing"),
        pytest.param(
            {"row_check": "short-warn", "usual_rows": 100.0, "min_rows_ratio": 0.5},
            ["prh.ingest.loaded", "prh.ingest.short"],
            id="short-warned",
        ),
        pytest.param(
            {"rejected_rows": 4}, ["prh.ingest.loaded", "prh.ingest.rejects"], id="rejects"
        ),
    ],
)
def test_event_names(changes: dict[str, object], names: list[str]) -> None:
    events = freshness.load_events("clinic-cal", "epic", {**SUMMARY, **changes})
    assert [event.event for event in events] == names
    assert CANARY not in json.dumps([event.payload for event in events])


def test_a_short_event_carries_the_row_checks_counts() -> None:
    check = check_rows([100] * 7, 30, RowCheckSettings("warn", 0.5))
    summary = {**SUMMARY, "rows": 30, **check.counts(), "usual_rows": CANARY}
    short = freshness.load_events("clinic-cal", "epic", summary)[1]
    assert short.payload == {
        **freshness.load_payload(summary),
        "min_rows_ratio": 0.5,
        "history_loads": 7,
        "short_accepted": False,
    }


def test_no_summary_emits_nothing() -> None:
    assert freshness.load_events("clinic-cal", "epic", None) == []


def test_the_freshness_automation() -> None:
    block = uuid4()
    automation = freshness.freshness_automation(
        "north", "clinic-cal-epic-ingest", "clinic-cal", "epic", timedelta(hours=26), block
    )
    assert automation.name == naming.freshness_automation_name("clinic-cal-epic-ingest")
    assert freshness.is_warehouses(automation, "north")
    assert not freshness.is_warehouses(automation, "south")
    trigger = automation.trigger
    assert (trigger.posture, trigger.expect, trigger.within) == (
        "Proactive",
        {"prh.ingest.loaded"},
        timedelta(hours=26),
    )
    assert trigger.match.model_dump() == {"prefect.resource.id": "prh.source.clinic-cal-epic"}
    [action] = automation.actions
    assert action.block_document_id == block
    assert "Source: clinic-cal-epic\nDeployment: clinic-cal-epic-ingest\n" in action.body
    assert "No load within 26h" in action.body


def test_plan_compares_automations_without_ids() -> None:
    block = uuid4()

    def build(within: timedelta) -> object:
        return freshness.freshness_automation("north", "d", "p", "s", within, block)

    same = freshness.comparable(build(timedelta(hours=26)))
    assert same == freshness.comparable(build(timedelta(hours=26)))
    assert same != freshness.comparable(build(timedelta(hours=25)))
    json.dumps(same)  # plain JSON: plan can print or hash it


def test_the_late_run_automation_matches_the_warehouses_runs() -> None:
    automation = freshness.late_run_automation("north", uuid4())
    assert automation.name == "late-runs-north"
    assert automation.trigger.expect == {"prefect.flow-run.Late"}
    assert automation.trigger.match_related.model_dump() == {
        "prefect.resource.role": "tag",
        "prefect.resource.id": "prefect.tag.warehouse:north",
    }
