"""What a load prints: a line saying what was loaded, then one JSON summary line
(SUMMARY_KIND) that the flow turns into the run's table artifact (the loader, a shell
subprocess of the flow, has no run context). No cell value is ever part of either.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from prh_ingest import naming
from prh_ingest.settings import Names

if TYPE_CHECKING:
    from prh_ingest.load.modes import Loaded

SUMMARY_KIND = "prh-ingest-load"  # the JSON summary line's "summary" (the flow looks for it)


def print_summary(names: Names, **fields: object) -> None:
    """The one JSON line the flow reads (no cell value is ever part of it)."""
    print(
        json.dumps(
            {"summary": SUMMARY_KIND, "source": names.source, "table": names.table, **fields}
        )
    )


def print_loaded(names: Names, loaded: Loaded, source: object, where: str) -> None:
    """The line saying what was loaded, for the person reading the run's log."""
    if loaded.same_as is not None:
        print(
            f"loaded 0 rows: {source} has the same bytes as load {loaded.same_as}, already in "
            f"table {names.table} at {where} ({names.load_mode_setting}={loaded.mode})"
        )
    else:
        replaced = (
            f", replacing the rows of {loaded.replaced} earlier load(s)" if loaded.replaced else ""
        )
        print(
            f"loaded {loaded.rows} rows from {source} into table {names.table} at {where} "
            f"({names.load_mode_setting}={loaded.mode}{replaced})"
        )
    if loaded.rejected:
        shown = ", ".join(str(number) for number in loaded.rejected_rows[:10])
        more = ", ..." if loaded.rejected > 10 else ""
        print(
            f"set aside {loaded.rejected} unreadable row(s) in {naming.rejects_table(names.table)} "
            f"(rows {shown}{more}; {naming.bad_rows_setting(names.project, names.source)}"
            "=quarantine)"
        )
    if loaded.check is not None and loaded.check.short:
        print(loaded.check.line())
