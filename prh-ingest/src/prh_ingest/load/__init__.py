"""The loader: a project's `python ingest.py [SOURCE]` (default: the project's first source).

Source: the file named by `<PREFIX>_<SOURCE>_SOURCE_FILE`, read by its suffix: delimited text
        (`.csv` `.txt` `.tsv` `.psv` `.dat`) or a workbook (`.xlsx` `.xlsm` streamed; `.xls` `.xlsb`
        `.ods` through calamine); or messages (`.hl7`: HL7 v2; `.ndjson` `.ndjson.gz`: FHIR Bulk
        Data; or `<PREFIX>_<SOURCE>_FORMAT`), see messages. Optional settings (prh_ingest.settings):
        the sheet (default: the first visible one), the header's row number as Excel shows it
        (default: the first non-empty row), how many trailing rows to drop (control totals; default
        0) and, for text, its encoding (default utf-8-sig; Windows exports are often cp1252),
        delimiter (default: the one of `,` `|` `^` tab `;` giving the header the most fields; ties:
        `,`) and text qualifier (default `"`; `none`: every character is data).
Sink:   table `<slug>_<source>` at the SQLAlchemy URL in `<PREFIX>_DATABASE_URL`: SQLite
        (`sqlite:///path.db`) or PostgreSQL (`postgresql+psycopg://user@host/db`); see sinks.

The load is
- fast: PostgreSQL gets the file through COPY (copy_feed); SQLite gets the csv reader
  straight into executemany. Memory stays flat for text and for `.xlsx`/`.xlsm` (read as a
  stream); an `.xls` `.xlsb` or `.ods` sheet is read whole by calamine (about 0.8 KB per row
  of 8 columns), where streaming is not possible;
- explicit about history (`<PREFIX>_<SOURCE>_LOAD_MODE`, see modes);
- atomic: one transaction, so a failure half-way leaves the table as it was.

Output: a line saying what was loaded, then one JSON summary line (summary.SUMMARY_KIND).

Row check: a load far shorter than the source's usual (prh_ingest.load.checks; ROW_CHECK,
MIN_ROWS_RATIO, ACCEPT_SHORT_LOAD) is refused, exit 66, in one line of counts, the table
untouched; or it lands, and the summary says it was short.

Exit codes: 0 loaded; 66 a short load refused; 65 bad input (missing, unreadable or
malformed file, bad setting), printed as one line on stderr; 69 cannot start (a module
missing from the Python that runs it), one line too; the flow retries none of them.
Anything else is another failure (e.g. the database is down), which the flow retries.

This module (with the readers and summary it imports) needs nothing beyond the standard
library until `main` runs, so a missing SQLAlchemy, reader or driver is the one 69 line, not
a traceback.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from prh_ingest.load.checks import ShortLoad  # these three need only the standard library
from prh_ingest.load.readers import Sha256, open_source
from prh_ingest.load.summary import print_loaded, print_summary
from prh_ingest.settings import SOURCE_NAME, BadInput, Names, read_settings

if TYPE_CHECKING:  # imported where main needs it (see above)
    import sqlalchemy as sa

BAD_INPUT_EXIT_CODE = (
    65  # EX_DATAERR: no tool in the shell step uses it (uv and pipenv use 1 and 2)
)
SHORT_LOAD_EXIT_CODE = 66  # the row check refused the load: the flow does not retry it
CANNOT_START_EXIT_CODE = 69  # EX_UNAVAILABLE: the flow does not retry it


def cannot_start(missing: ImportError) -> int:
    """A module missing from the Python that runs the loader: one line, exit 69."""
    hint = f"install requirements.txt into {sys.executable}"
    print(f"error: ingest.py cannot start: {missing} ({hint})", file=sys.stderr)
    return CANNOT_START_EXIT_CODE


def source_file(names: Names) -> Path:
    """The source's file, checked to be there and readable (BadInput otherwise)."""
    if not SOURCE_NAME.fullmatch(names.source):
        raise BadInput(
            f"source {names.source!r} is not a source name (lowercase words joined by -)"
        )
    return open_source(os.environ.get(names.source_setting), names)


def refused(names: Names, error: BadInput) -> int:
    """Bad input: its one line, the summary saying so, exit 65."""
    print(f"error: {error}", file=sys.stderr)
    print_summary(names, ok=False, error=str(error))
    return BAD_INPUT_EXIT_CODE


@contextlib.contextmanager
def imported_for_good() -> Iterator[None]:
    """Importing SQLAlchemy and the driver makes about 87,000 objects that live as long as
    the process: no collection runs while they are made, and none walks them after
    (gc.freeze), during the load or at the interpreter's exit. About 0.09 s of a 1M-row
    load's 1.5 s on PostgreSQL. Once per process: a caller that loads in-process again (the
    tests) has SQLAlchemy imported already, and nothing more is frozen."""
    if "sqlalchemy" in sys.modules:
        yield
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def main(
    project: str,
    default_source: str,
    transform: Callable[..., tuple[list[str], object]],
    argv: Sequence[str] = (),
) -> int:
    """Load one source's file (`argv[0]`, else `default_source`) into the project's sink."""
    started = time.monotonic()
    names = Names(project, argv[0] if argv else default_source)
    try:
        source = source_file(names)
        sha256 = Sha256(source)  # hashed while SQLAlchemy and the sink's driver are imported
    except BadInput as error:
        refusal: BadInput | None = error  # said once SQLAlchemy is imported: a broken install first
    else:
        refusal = None
    engine: sa.Engine | None = None
    try:
        with imported_for_good():
            from prh_ingest.load import messages, modes, sinks

            if refusal is not None:
                raise refusal
            kind = messages.message_format(source, names)  # HL7 v2, FHIR Bulk NDJSON, or None
            settings = read_settings(names, keyed=kind is None)  # a message format's key is its own
            engine = sinks.open_sink(os.environ.get(names.sink_setting), names)  # and its driver
        if kind:
            loaded = messages.load(source, sha256, engine, settings, kind)
        else:
            loaded = modes.load(source, sha256, engine, settings, transform)
    except ImportError as missing:  # SQLAlchemy, a reader or the driver: a broken install
        return cannot_start(missing)
    except BadInput as error:
        return refused(names, error)
    except ShortLoad as short:  # counts only
        print(f"error: {short}", file=sys.stderr)
        print_summary(names, ok=False, error=str(short), **short.check.counts())
        return SHORT_LOAD_EXIT_CODE
    finally:
        if engine is not None:
            engine.dispose()  # a frozen engine is never collected: its connection closes here
    print_loaded(names, loaded, source, engine.url.render_as_string(hide_password=True))
    fields: dict[str, object] = {
        "ok": True,
        "file": source.name,
        "path": str(source),
        "size_bytes": source.stat().st_size,
        "sha256": loaded.sha256,
        "rows": loaded.rows,
        "mode": loaded.mode,
        "same_as_load": loaded.same_as,
        "replaced_loads": loaded.replaced,
        "columns_added": loaded.added,
        "rejected_rows": loaded.rejected,  # BAD_ROWS=quarantine: a count (None: not set)
        "seconds": round(time.monotonic() - started, 3),
    }
    if loaded.check is not None:  # the row check's counts (its `rows` is the same count)
        fields |= loaded.check.counts()
    print_summary(names, **fields)
    return 0
