"""Schema drift: a later file's new and missing columns.

A later file must have the table's columns; with `<PREFIX>_<SOURCE>_NEW_COLUMNS=add` its new
ones are added (text; earlier rows NULL there) and the table's columns it lacks load as NULL.
"""

from __future__ import annotations

import sqlalchemy as sa

from prh_ingest.settings import BadInput, Settings

LOAD_ID_COLUMN = "_load_id"  # the loader's own column: never a file's


def add_new_columns(
    connection: sa.Connection, existing: sa.Inspector, columns: list[str], settings: Settings
) -> list[str]:
    """The file's columns the table lacks, added to it when the setting allows (else refused)."""
    names = settings.names
    if not existing.has_table(names.table):
        return []
    have = [c["name"] for c in existing.get_columns(names.table) if c["name"] != LOAD_ID_COLUMN]
    added = [name for name in columns if name not in have]
    if not settings.add_columns and have != columns:
        missing = [name for name in have if name not in columns]
        raise BadInput(
            f"columns {columns} differ from table {names.table}'s {have} (new: "
            f"{', '.join(added) or 'none'}; missing: {', '.join(missing) or 'none'}); "
            f"set {names.new_columns_setting}=add to add new columns"
        )
    # PostgreSQL: two loads adding a column take turns on the table's lock (SQLite's
    # loads always do); the second finds it there.
    if_new = "IF NOT EXISTS " if connection.dialect.name == "postgresql" else ""
    for name in added:
        connection.exec_driver_sql(f"ALTER TABLE {names.table} ADD COLUMN {if_new}{name} TEXT")
    return added
