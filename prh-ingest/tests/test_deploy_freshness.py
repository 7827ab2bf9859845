"""A warehouse entry's `freshness` and `source` (issue 27), in-process: checked with the other
keys (--dry-run too, one line naming the entry and the key), kept in flows.json only when
set, and the automations the plan wants of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from deploy_entries import CLINIC_CAL, ENTRY, warehouse_with
from prh_ingest.deploy import flows_file, main
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
