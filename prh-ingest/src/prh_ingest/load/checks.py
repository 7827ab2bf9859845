"""Row counts against the source's own history (issue 27): a load far shorter than the
source's usual is refused, reported, or let through, as its settings say.

Pure: the loader passes the row counts of the source's accepted loads (read from its loads
table, newest first) and the new count; nothing here reads a table or a file. A verdict
carries counts only, never a value of the data.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from prh_ingest import naming

ROW_CHECKS = ("refuse", "warn", "off")
DEFAULT_RATIO = 0.5
HISTORY = 7  # the median of this many of the newest accepted loads is the usual count
JUDGED_FROM = 6  # the first load judged is the source's 6th: 5 earlier ones are its history

Verdict = Literal["ok", "short-warn", "short-refuse"]


@dataclass(frozen=True)
class RowCheckSettings:
    check: str  # refuse, warn or off
    ratio: float


@dataclass(frozen=True)
class RowCheck:
    """The outcome of one check: counts only."""

    verdict: Verdict
    rows: int
    median: float | None  # None: not judged (check off, or too few earlier loads)
    ratio: float
    loads: int  # the earlier accepted loads the median was taken over
    check: str
    accepted: bool = False  # a short load an operator accepted for this run

    @property
    def short(self) -> bool:
        return self.verdict != "ok"

    @property
    def minimum(self) -> float | None:
        return None if self.median is None else self.ratio * self.median

    def line(self) -> str:
        """One line for the log and the artifact: the counts and what was done."""
        if self.median is None:
            return f"row check: {self.rows} rows, not judged ({self.why_not_judged()})"
        where = (
            f"{self.rows} rows, under {self.ratio:g} x the median {self.median:g} "
            f"of the last {self.loads} accepted loads"
        )
        if self.verdict == "short-refuse":
            return f"short load refused: {where} (row check {self.check})"
        if self.verdict == "short-warn":
            accepted = ", accepted for this run" if self.accepted else ""
            return f"short load: {where} (row check {self.check}{accepted})"
        return f"row check: {self.rows} rows, at least {self.ratio:g} x the median {self.median:g}"

    def why_not_judged(self) -> str:
        if self.check == "off":
            return "row check off"
        return f"{self.loads} earlier accepted loads, judged from load {JUDGED_FROM} on"

    def counts(self) -> dict[str, object]:
        """The fields a summary, artifact or event may carry."""
        return {
            "row_check": self.verdict,
            "rows": self.rows,
            "usual_rows": self.median,
            "min_rows_ratio": self.ratio,
            "history_loads": self.loads,
            "short_accepted": self.accepted,
        }


class ShortLoad(Exception):
    """The row check refused the load (exit 66): the transaction is rolled back."""

    def __init__(self, check: RowCheck) -> None:
        super().__init__(check.line())
        self.check = check


def check_rows(
    history: Sequence[int],
    rows: int,
    settings: RowCheckSettings,
    *,
    accept_short: bool = False,
) -> RowCheck:
    """Judge *rows* against *history*, the row counts of the source's accepted loads, newest
    first. From the source's 6th load on, fewer rows than `ratio` x the median of the newest
    7 is short: `refuse` refuses it, `warn` lets it land; *accept_short* (an operator's
    override for one run) lets a refused one land as a warned one."""
    recent = [int(count) for count in history[:HISTORY]]
    judged = settings.check != "off" and len(history) >= JUDGED_FROM - 1
    if not judged:
        return RowCheck("ok", rows, None, settings.ratio, len(recent), settings.check)
    median = float(statistics.median(recent))
    if rows >= settings.ratio * median:
        return RowCheck("ok", rows, median, settings.ratio, len(recent), settings.check)
    if settings.check == "refuse" and not accept_short:
        return RowCheck("short-refuse", rows, median, settings.ratio, len(recent), settings.check)
    return RowCheck(
        "short-warn", rows, median, settings.ratio, len(recent), settings.check, accept_short
    )


def default_row_check(mode: str) -> str:
    """`refuse` in snapshot mode (a short file would replace the whole table), else `warn`."""
    return "refuse" if mode == "snapshot" else "warn"


def parse_row_check(name: str, value: str | None, mode: str) -> str:
    """The value of the setting *name*; unset or empty takes the mode's default."""
    if value is None or not value.strip():
        return default_row_check(mode)
    check = value.strip().lower()
    if check not in ROW_CHECKS:
        raise naming.Invalid(f"{name} is {naming.shown(value)}: use one of {', '.join(ROW_CHECKS)}")
    return check


def parse_min_rows_ratio(name: str, value: str | None) -> float:
    """The value of the setting *name*: a number above 0 and at most 1; unset takes 0.5."""
    if value is None or not value.strip():
        return DEFAULT_RATIO
    try:
        ratio = float(value)
    except ValueError:
        raise naming.Invalid(
            f"{name} is {naming.shown(value)}: use a number above 0 and at most 1, e.g. 0.5"
        ) from None
    if not 0 < ratio <= 1:  # also refuses nan and inf
        raise naming.Invalid(f"{name} is {ratio:g}: use a number above 0 and at most 1")
    return ratio


def row_check_settings(
    slug: str, source: str, mode: str, environ: Mapping[str, str]
) -> RowCheckSettings:
    """One source's row check settings from the environment (names from prh_ingest.naming)."""
    check_name = naming.row_check_setting(slug, source)
    ratio_name = naming.min_rows_ratio_setting(slug, source)
    return RowCheckSettings(
        check=parse_row_check(check_name, environ.get(check_name), mode),
        ratio=parse_min_rows_ratio(ratio_name, environ.get(ratio_name)),
    )
