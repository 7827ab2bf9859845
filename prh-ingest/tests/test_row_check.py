"""The row check in the loader (issue 27), on both databases: a load far shorter than the
source's own history is refused in snapshot mode (exit 66, the table untouched) and lands
with a warning in the others; an operator's override lets a refused one land; a re-send of
bytes already loaded says unchanged; no value of the data reaches the output, the summary
or the flow's events."""

from __future__ import annotations

import json
from pathlib import Path

from loading import KEY, LOAD_MODE_SETTING, TABLE, Result, Sink, ingest
from prh_ingest import freshness, naming
from prh_ingest.load import SHORT_LOAD_EXIT_CODE

ACCEPT_SHORT = naming.accept_short_load_setting("clinic-cal", "epic")
CANARY = "CANARY-7731-MRN"  # a patient identifier that must stay in the table


def write_day(path: Path, day: int, rows: int, canary: bool = False) -> Path:
    lines = ["mrn,visit"]
    lines += [f"{day:03}{n:06},2026-11-{day:02}" for n in range(rows)]
    if canary:
        lines[-1] = f"{CANARY},2026-11-{day:02}"
    path.write_text("\n".join(lines) + "\n")
    return path


def summary(result: Result) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


def five_days(sink: Sink, tmp_path: Path, mode: str) -> None:
    """The source's history: five accepted loads of 100 rows each."""
    for day in range(1, 6):
        landing = write_day(tmp_path / f"day{day}.csv", day, 100)
        result = ingest(landing, sink, **{LOAD_MODE_SETTING: mode})
        assert result.returncode == 0, result.stderr
        assert summary(result)["row_check"] == "ok"


def table_rows(sink: Sink) -> int:
    return sink.query(f"SELECT count(*) FROM {TABLE}")[0][0]  # noqa: S608


def test_a_short_snapshot_is_refused_and_the_table_keeps_every_row(
    sink: Sink, tmp_path: Path
) -> None:
    five_days(sink, tmp_path, "snapshot")
    short = write_day(tmp_path / "day6.csv", 6, 40, canary=True)
    result = ingest(short, sink, **{LOAD_MODE_SETTING: "snapshot"})
    assert result.returncode == SHORT_LOAD_EXIT_CODE, result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: short load refused: 40 rows, under 0.5 x the median 100 of the last 5 "
        "accepted loads (row check refuse)"
    ]
    assert table_rows(sink) == 100  # day 5's snapshot, untouched
    assert len(sink.loads()) == 5  # the refused load left no record
    refused = summary(result)
    assert refused["ok"] is False
    assert (refused["row_check"], refused["rows"], refused["usual_rows"]) == (
        "short-refuse",
        40,
        100.0,
    )
    assert freshness.load_events("clinic-cal", "epic", refused) == []  # the failure reports it
    assert CANARY not in result.stdout + result.stderr


def test_a_short_append_is_warned_and_loaded(sink: Sink, tmp_path: Path) -> None:
    five_days(sink, tmp_path, "append")
    short = write_day(tmp_path / "day6.csv", 6, 40, canary=True)
    result = ingest(short, sink)
    assert result.returncode == 0, result.stderr
    assert "short load: 40 rows, under 0.5 x the median 100" in result.stdout
    assert table_rows(sink) == 540
    warned = summary(result)
    assert (warned["ok"], warned["row_check"], warned["rows"]) == (True, "short-warn", 40)
    events = freshness.load_events("clinic-cal", "epic", warned)
    assert [event.event for event in events] == [freshness.LOADED, freshness.SHORT]
    assert events[1].payload["usual_rows"] == 100.0
    assert CANARY not in result.stdout + result.stderr + repr(events)
    assert CANARY in {row[0] for row in sink.rows()}  # the value itself landed


def test_the_override_loads_a_refused_one(sink: Sink, tmp_path: Path) -> None:
    five_days(sink, tmp_path, "snapshot")
    short = write_day(tmp_path / "day6.csv", 6, 40)
    result = ingest(short, sink, **{LOAD_MODE_SETTING: "snapshot", ACCEPT_SHORT: "1"})
    assert result.returncode == 0, result.stderr
    assert "(row check refuse, accepted for this run)" in result.stdout
    assert table_rows(sink) == 40
    accepted = summary(result)
    assert (accepted["row_check"], accepted["short_accepted"]) == ("short-warn", True)


def test_the_first_five_loads_and_row_check_off_are_not_judged(sink: Sink, tmp_path: Path) -> None:
    for day, rows in enumerate([100, 100, 100, 100, 3], start=1):  # the 5th: not judged yet
        landing = write_day(tmp_path / f"day{day}.csv", day, rows)
        result = ingest(landing, sink, **{LOAD_MODE_SETTING: "snapshot"})
        assert result.returncode == 0, result.stderr
    short = write_day(tmp_path / "day6.csv", 6, 10)
    off = {LOAD_MODE_SETTING: "snapshot", f"{KEY}_ROW_CHECK": "off"}
    result = ingest(short, sink, **off)
    assert result.returncode == 0, result.stderr
    assert summary(result)["row_check"] == "ok"


def test_a_bad_row_check_setting_is_one_line(sink: Sink, tmp_path: Path) -> None:
    landing = write_day(tmp_path / "day1.csv", 1, 10)
    result = ingest(landing, sink, **{f"{KEY}_ROW_CHECK": "maybe"})
    assert result.returncode == 65
    assert len(result.stderr.strip().splitlines()) == 1
    assert f"{KEY}_ROW_CHECK is 'maybe'" in result.stderr


def test_a_re_send_says_unchanged(sink: Sink, tmp_path: Path) -> None:
    landing = write_day(tmp_path / "day1.csv", 1, 10)
    assert ingest(landing, sink).returncode == 0
    again = summary(ingest(landing, sink))
    assert again["same_as_load"] == 1
    events = freshness.load_events("clinic-cal", "epic", again)
    assert [event.event for event in events] == [freshness.UNCHANGED]
