"""Your own changes to the rows before they are loaded: column renames, type fixes, filters.

This file is yours: template updates never touch it (`.cruft.json` lists it in `skip`).
The flow, the dependency step and the loader (`ingest.py`) are the template's and take its
updates cleanly as long as your changes live here.

`ingest.py` calls `transform` once per load with the source's name (`{{ cookiecutter.source_name }}`),
its column names (from the header: `Visit Type` -> `visit_type`) and its rows (lists of
text, None for an empty cell; each row already has one value per column), and loads what
it returns. The default returns them unchanged. For example:

    RENAMES = {"pat_mrn": "mrn"}

    def transform(source, columns, rows):
        columns = [RENAMES.get(name, name) for name in columns]
        visit_date = columns.index("visit_date")

        def fixed(rows):
            for row in rows:
                if row[visit_date] is None:  # a filter: skip rows without a visit date
                    continue
                row[visit_date] = row[visit_date][:10]  # a type fix: the date only
                yield row

        return columns, fixed(rows)

Keep it a generator as above: rows stream through, so memory stays flat on large files.
"""

from __future__ import annotations

from collections.abc import Iterator

Row = list[str | None]


def transform(source: str, columns: list[str], rows: Iterator[Row]) -> tuple[list[str], Iterator[Row]]:
    """The columns and rows to load from `source`'s file: here, all of them, unchanged."""
    return columns, rows
