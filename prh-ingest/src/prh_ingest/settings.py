"""One source's settings, read once from the environment (`<PREFIX>_<SOURCE>_*`).

Every name comes from prh_ingest.naming: a project passes its slug and the source, nothing
else. What the settings mean is in prh_ingest.load (the project's `python ingest.py`).
"""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from prh_ingest import naming

SOURCE_NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")  # as the template's answers
# What a load does to the rows already there: `append` adds a file's rows unless the same
# bytes (SHA-256) are loaded already; `file` replaces those of the earlier load of the same
# path; `snapshot` replaces the whole table. Unset, a table keeps the mode of its first
# load: `append` for a new table, `file` for one loaded before LOAD_MODE existed (its loads
# are recorded as `file`, what ingest.py did then), so a template update changes nothing.
LOAD_MODES = ("append", "file", "snapshot", "merge")  # merge: by KEY (load.merge)
DEFAULT_LOAD_MODE = "append"
EARLIER_LOAD_MODE = "file"  # what ingest.py did before LOAD_MODE (recorded for such loads)
DEFAULT_ENCODING = "utf-8-sig"
DEFAULT_QUOTE = '"'


class BadInput(Exception):
    """The source file or a setting is missing, unreadable or malformed (exit code 65)."""


def setting_named(suffix: str) -> property:
    """A source's optional setting: `SHEET` -> `<PREFIX>_<SOURCE>_SHEET`."""
    return property(lambda names: f"{names.key}_{suffix}")


@dataclass(frozen=True)
class Names:
    """One source's names in one project (the naming contract's, never derived here)."""

    project: str  # the project slug, e.g. clinic-cal
    source: str  # e.g. epic

    @cached_property
    def key(self) -> str:  # <PREFIX>_<SOURCE>
        return naming.source_key(self.project, self.source)

    @cached_property
    def table(self) -> str:
        return naming.table_name(self.project, self.source)

    @property
    def loads_table(self) -> str:
        return f"{self.table}_loads"

    @property
    def source_setting(self) -> str:
        return naming.source_setting(self.project, self.source)

    @property
    def sink_setting(self) -> str:
        return naming.sink_setting(self.project)

    # The optional settings, `<PREFIX>_<SOURCE>_<SUFFIX>` (the naming contract's table).
    sheet_setting = setting_named("SHEET")
    header_row_setting = setting_named("HEADER_ROW")
    encoding_setting = setting_named("ENCODING")
    delimiter_setting = setting_named("DELIMITER")
    quote_setting = setting_named("QUOTE")
    footer_rows_setting = setting_named("FOOTER_ROWS")
    load_mode_setting = setting_named("LOAD_MODE")
    new_columns_setting = setting_named("NEW_COLUMNS")
    format_setting = setting_named("FORMAT")  # a message format (load.messages), else by suffix

    def part_table(self, part: str) -> str:
        """`<table>_<part lowercase>`: an HL7 segment's or a FHIR resource type's table."""
        return naming.part_table_name(self.project, self.source, part)


@dataclass
class Settings:
    names: Names
    sheet: str | None = None
    header_row: int | None = None
    encoding: str = DEFAULT_ENCODING
    delimiter: str | None = None  # None: detected from the header line
    quote: str | None = DEFAULT_QUOTE  # None: no text qualifier (QUOTE=none)
    footer_rows: int = 0
    load_mode: str | None = None  # None: the table's default (see LOAD_MODES)
    add_columns: bool = False  # NEW_COLUMNS=add: a file's new columns are added to the table
    row_check: str | None = None  # ROW_CHECK as set (checked); None: the mode's default
    min_rows_ratio: float = 0.5  # MIN_ROWS_RATIO (see prh_ingest.load.checks)
    accept_short: bool = False  # ACCEPT_SHORT_LOAD=1: an operator accepts a short load
    key: str | None = None  # LOAD_MODE=merge: KEY, the key's header names (load.merge)
    duplicate_keys: str | None = None  # DUPLICATE_KEYS: refuse (unset) or last
    quarantine: bool = False  # BAD_ROWS=quarantine: unreadable rows go to <table>_rejects
    max_bad_rows: str | None = None  # MAX_BAD_ROWS (checked): a count, or a percent (1%)


def read_settings(
    names: Names, environ: Mapping[str, str] = os.environ, keyed: bool = True
) -> Settings:
    """The optional reader settings, checked. *keyed*: LOAD_MODE=merge needs KEY (a table
    file's; a message format merges on its own key)."""
    header_row = environ.get(names.header_row_setting) or None
    if header_row is not None and not (header_row.isdigit() and int(header_row) >= 1):
        raise BadInput(f"{names.header_row_setting}={header_row}: not a row number (1, 2, ...)")
    footer_rows = environ.get(names.footer_rows_setting) or "0"
    if not footer_rows.isdigit():
        raise BadInput(
            f"{names.footer_rows_setting}={footer_rows}: not a number of rows (0, 1, ...)"
        )
    encoding = environ.get(names.encoding_setting) or DEFAULT_ENCODING
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise BadInput(f"{names.encoding_setting}={encoding}: unknown encoding") from None
    quote_setting = names.quote_setting
    quote = text_character(quote_setting, environ.get(quote_setting) or DEFAULT_QUOTE, "none")
    load_mode = environ.get(names.load_mode_setting) or None
    if load_mode is not None and load_mode not in LOAD_MODES:
        raise BadInput(f"{names.load_mode_setting}={load_mode}: one of {', '.join(LOAD_MODES)}")
    new_columns = environ.get(names.new_columns_setting) or None
    if new_columns not in (None, "add"):
        raise BadInput(
            f"{names.new_columns_setting}={new_columns}: add, or unset (a new column is refused)"
        )
    delimiter_setting = names.delimiter_setting
    delimiter = environ.get(delimiter_setting) or None
    if delimiter is not None:
        delimiter = text_character(delimiter_setting, delimiter, "tab")
        if delimiter in ('"', "'", quote):
            raise BadInput(f"{delimiter_setting}={delimiter}: a quote character, not a delimiter")
    row_check, ratio, accept_short = read_row_check(names, environ)
    key = environ.get(naming.key_setting(names.project, names.source)) or None
    if load_mode == "merge" and key is None and keyed:
        key_name = naming.key_setting(names.project, names.source)
        raise BadInput(f"{key_name} is not set: LOAD_MODE=merge needs the key's header names")
    duplicates = environ.get(naming.duplicate_keys_setting(names.project, names.source)) or None
    quarantine, max_bad_rows = read_bad_rows(names, environ)
    return Settings(
        names,
        environ.get(names.sheet_setting) or None,
        header_row and int(header_row),
        encoding,
        delimiter,
        quote,
        int(footer_rows),
        load_mode,
        new_columns == "add",
        row_check,
        ratio,
        accept_short,
        key,
        duplicates,
        quarantine,
        max_bad_rows,
    )


def read_bad_rows(names: Names, environ: Mapping[str, str]) -> tuple[bool, str | None]:
    """BAD_ROWS (quarantine or not) and MAX_BAD_ROWS, checked."""
    from prh_ingest.load import rejects

    bad_rows_name = naming.bad_rows_setting(names.project, names.source)
    max_name = naming.max_bad_rows_setting(names.project, names.source)
    bad_rows, max_bad_rows = environ.get(bad_rows_name), environ.get(max_name) or None
    try:
        quarantine = rejects.parse_bad_rows(bad_rows) == "quarantine"
        rejects.parse_max_bad_rows(max_bad_rows)
    except rejects.BadRows as bad:  # `BAD_ROWS=...: ...`: named in full here
        raise BadInput(f"{names.key}_{bad}") from None
    return quarantine, max_bad_rows


def read_row_check(names: Names, environ: Mapping[str, str]) -> tuple[str | None, float, bool]:
    """ROW_CHECK (None: unset, the mode's default), MIN_ROWS_RATIO and ACCEPT_SHORT_LOAD."""
    from prh_ingest.load import checks

    check_name = naming.row_check_setting(names.project, names.source)
    accept_name = naming.accept_short_load_setting(names.project, names.source)
    accept = (environ.get(accept_name) or "0").strip().lower()
    if accept not in ("0", "1", "true", "false"):
        raise BadInput(f"{accept_name}={accept}: 1 or 0 (true or false)")
    ratio_name = naming.min_rows_ratio_setting(names.project, names.source)
    given = (environ.get(check_name) or "").strip() or None
    try:  # unset ROW_CHECK stays None: its default is the mode's, known when loading
        row_check = given and checks.parse_row_check(check_name, given, "")
        ratio = checks.parse_min_rows_ratio(ratio_name, environ.get(ratio_name))
    except ValueError as invalid:  # naming.Invalid: one line naming the setting
        raise BadInput(str(invalid)) from None
    return row_check, ratio, accept in ("1", "true")


def text_character(setting: str, value: str, word: str) -> str | None:
    """A delimiter or quote setting: one character that is not a letter, digit or line end,
    or its word (`tab` is a tab, `none` no character)."""
    if value.lower() == word:
        return {"tab": "\t", "none": None}[word]
    if len(value) != 1 or value.isalnum() or value in "\r\n":
        raise BadInput(f"{setting}={value}: one character (not a letter or digit) or {word}")
    return value
