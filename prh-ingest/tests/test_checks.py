"""Row counts against the source's own history: the verdicts and the settings' parsing."""

from __future__ import annotations

import pytest
from prh_ingest import naming
from prh_ingest.load.checks import (
    RowCheckSettings,
    check_rows,
    parse_min_rows_ratio,
    parse_row_check,
    row_check_settings,
)

REFUSE = RowCheckSettings("refuse", 0.5)
WARN = RowCheckSettings("warn", 0.5)
OFF = RowCheckSettings("off", 0.5)
USUAL = [100, 98, 103, 101, 99]  # five earlier loads: the 6th is the first judged


@pytest.mark.parametrize(
    ("history", "rows", "settings", "verdict", "median"),
    [
        pytest.param(USUAL, 40, REFUSE, "short-refuse", 100, id="6th-load-short-refused"),
        pytest.param(USUAL, 40, WARN, "short-warn", 100, id="6th-load-short-warned"),
        pytest.param(USUAL, 40, OFF, "ok", None, id="check-off-never-judges"),
        pytest.param(USUAL[:4], 1, REFUSE, "ok", None, id="5th-load-not-judged"),
        pytest.param([], 0, REFUSE, "ok", None, id="first-load-not-judged"),
        pytest.param(USUAL, 50, REFUSE, "ok", 100, id="exactly-the-ratio-is-enough"),
        pytest.param(USUAL, 49, REFUSE, "short-refuse", 100, id="one-under-the-ratio-is-short"),
        pytest.param(USUAL, 250, REFUSE, "ok", 100, id="more-rows-are-fine"),
        # Only the newest 7 count: the 1000s before them are no longer the usual.
        pytest.param([10] * 7 + [1000] * 20, 6, REFUSE, "ok", 10, id="median-of-the-newest-seven"),
        # One odd day among seven does not move the median.
        pytest.param(
            [100, 100, 2, 100, 100, 100, 100], 60, REFUSE, "ok", 100, id="median-not-mean"
        ),
        pytest.param(
            [100, 100, 100, 100, 1, 1, 1, 1],
            49,
            REFUSE,
            "short-refuse",
            100,
            id="older-ones-ignored",
        ),
    ],
)
def test_verdict(
    history: list[int], rows: int, settings: RowCheckSettings, verdict: str, median: float | None
) -> None:
    check = check_rows(history, rows, settings)
    assert (check.verdict, check.median, check.rows) == (verdict, median, rows)
    assert check.short == (verdict != "ok")


def test_an_accepted_short_load_lands_as_a_warned_one() -> None:
    check = check_rows(USUAL, 40, REFUSE, accept_short=True)
    assert (check.verdict, check.accepted) == ("short-warn", True)
    assert "accepted for this run" in check.line()


def test_the_line_and_the_counts_carry_counts_only() -> None:
    check = check_rows(USUAL, 40, REFUSE)
    assert check.line() == (
        "short load refused: 40 rows, under 0.5 x the median 100 of the last 5 accepted loads"
        " (row check refuse)"
    )
    assert check.counts() == {
        "row_check": "short-refuse",
        "rows": 40,
        "usual_rows": 100.0,
        "min_rows_ratio": 0.5,
        "history_loads": 5,
        "short_accepted": False,
    }
    assert "not judged" in check_rows(USUAL[:2], 1, REFUSE).line()


@pytest.mark.parametrize(
    ("value", "mode", "expected"),
    [
        pytest.param(None, "snapshot", "refuse", id="unset-snapshot-refuses"),
        pytest.param(None, "append", "warn", id="unset-append-warns"),
        pytest.param("", "file", "warn", id="empty-file-warns"),
        pytest.param(" Off ", "snapshot", "off", id="case-and-spaces"),
        pytest.param("warn", "snapshot", "warn", id="explicit-wins"),
    ],
)
def test_row_check_setting(value: str | None, mode: str, expected: str) -> None:
    assert parse_row_check("X_ROW_CHECK", value, mode) == expected


def test_a_bad_row_check_names_the_setting_and_the_choices() -> None:
    with pytest.raises(naming.Invalid) as error:
        parse_row_check("CLINIC_CAL_EPIC_ROW_CHECK", "maybe", "append")
    assert str(error.value) == "CLINIC_CAL_EPIC_ROW_CHECK is 'maybe': use one of refuse, warn, off"


@pytest.mark.parametrize(
    ("value", "expected"), [(None, 0.5), ("", 0.5), ("0.8", 0.8), ("1", 1.0), (" .25 ", 0.25)]
)
def test_min_rows_ratio(value: str | None, expected: float) -> None:
    assert parse_min_rows_ratio("X_MIN_ROWS_RATIO", value) == expected


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("half", "'half': use a number above 0 and at most 1, e.g. 0.5"),
        ("0", "0: use a number above 0 and at most 1"),
        ("-0.5", "-0.5: use a number above 0 and at most 1"),
        ("1.5", "1.5: use a number above 0 and at most 1"),
        ("nan", "nan: use a number above 0 and at most 1"),
    ],
)
def test_a_bad_ratio_is_one_clear_error(value: str, problem: str) -> None:
    with pytest.raises(naming.Invalid) as error:
        parse_min_rows_ratio("CLINIC_CAL_EPIC_MIN_ROWS_RATIO", value)
    assert str(error.value) == f"CLINIC_CAL_EPIC_MIN_ROWS_RATIO is {problem}"


def test_settings_are_read_under_the_contracts_names() -> None:
    environ = {"CLINIC_CAL_EPIC_ROW_CHECK": "off", "CLINIC_CAL_EPIC_MIN_ROWS_RATIO": "0.7"}
    assert naming.row_check_setting("clinic-cal", "epic") == "CLINIC_CAL_EPIC_ROW_CHECK"
    assert row_check_settings("clinic-cal", "epic", "snapshot", environ) == RowCheckSettings(
        "off", 0.7
    )
    assert row_check_settings("clinic-cal", "labs", "snapshot", environ) == REFUSE
