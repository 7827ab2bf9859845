"""LOAD_MODE=merge on PostgreSQL against a plain append of the same file (issue 28).

`python -m benchmarks.merge [--rows N] [--repetitions N]`: a table of N rows (default 1M),
then a file of N rows, half of them updates of the table's keys and half new keys, loaded
into a copy of that table twice: appended (COPY into the table) and merged (COPY into the
table, then prh_ingest.load.merge.merge_copied, as the loader merges a delimited file). Both
feed COPY the file's bytes as the loader does, in one transaction each. Prints the medians,
their ratio (target: at most 3) and this process's peak RSS. Starts its own PostgreSQL
(tests/support/services.py) and drops it after. `make bench` runs it (benchmarks/formats_merge.py,
`--json`).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

REPO_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_DIR / "tests"))  # support.services: a throwaway PostgreSQL

from prh_ingest.load.merge import merge_copied, tune_postgresql  # noqa: E402
from prh_ingest.load.sinks import (  # noqa: E402
    LOAD_ID_SETTING,
    load_id_default,
    make_load_id_function,
)
from support.services import running_postgres  # noqa: E402

TABLE = "bench_appointments"
COLUMNS = ["appointment_id", "patient_id", "clinic", "provider", "status", "booked_at",
           "starts_at", "notes"]  # fmt: skip
KEYS = ["appointment_id"]
CHUNK = 1 << 20


def write_export(path: Path, first: int, rows: int, status: str) -> None:
    """A CSV of appointments A<first> .. A<first + rows - 1> (header first)."""
    with path.open("w") as file:
        file.write(",".join(COLUMNS) + "\n")
        for n in range(first, first + rows):
            file.write(
                f"A{n:09d},P{n % 250_000:07d},C{n % 40},D{n % 900:04d},{status},"
                f"2026-11-{n % 28 + 1:02d}T08:{n % 60:02d}:00,2026-12-{n % 28 + 1:02d}T"
                f'{8 + n % 10:02d}:00:00,"room {n % 30}, floor {n % 5}"\n'
            )


def copy_file(connection: sa.Connection, into: str, path: Path) -> int:
    """The file's data rows through COPY (FORMAT csv), as the loader streams a plain CSV."""
    cursor = connection.connection.cursor()
    with cursor.copy(f"COPY {into} ({', '.join(COLUMNS)}) FROM STDIN (FORMAT csv)") as copy:
        with path.open("rb") as file:
            file.readline()  # the header
            while chunk := file.read(CHUNK):
                copy.write(chunk)
    return cursor.rowcount


def create_table(connection: sa.Connection) -> None:
    """The table as the loader makes it for merge: text columns, `_load_id` from the
    transaction's setting (the loader's default), a BRIN index on it (merge finds its load's
    rows by it). The append baseline COPYs into the same table, index included; an
    append-mode table has none and takes about 0.2 s less per 1M rows."""
    values = ", ".join(f"{column} TEXT" for column in COLUMNS)
    default = load_id_default(connection)
    connection.exec_driver_sql(
        f"CREATE TABLE {TABLE} ({values}, _load_id INTEGER NOT NULL DEFAULT {default})"
    )
    connection.exec_driver_sql(f"CREATE INDEX ix_{TABLE}__load_id ON {TABLE} USING brin (_load_id)")


def set_load_id(connection: sa.Connection, load_id: int) -> None:
    connection.exec_driver_sql(f"SELECT set_config('{LOAD_ID_SETTING}', '{load_id:d}', true)")


def appended(engine: sa.Engine, path: Path) -> None:
    with engine.begin() as connection:
        set_load_id(connection, 2)
        copy_file(connection, TABLE, path)


def merged(engine: sa.Engine, path: Path, load_id: int = 2) -> None:
    """As the loader merges a delimited file on PostgreSQL: COPY into the table, then
    merge_copied (its keys are sound: the staging path is not taken)."""
    with engine.begin() as connection:
        tune_postgresql(connection)
        set_load_id(connection, load_id)
        rows = copy_file(connection, TABLE, path)
        if merge_copied(connection, TABLE, KEYS, load_id, rows) is None:
            raise AssertionError("the bench's keys are unique: no doubt expected")


def first_load(engine: sa.Engine, path: Path, mode: str) -> None:
    """The table with the first file in it, loaded in the same mode (a merged table has the
    key index and the history)."""
    make_load_id_function(engine)
    with engine.begin() as connection:
        create_table(connection)
    if mode == "merge":
        merged(engine, path, load_id=1)
    else:
        with engine.begin() as connection:
            set_load_id(connection, 1)
            copy_file(connection, TABLE, path)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql(f"VACUUM ANALYZE {TABLE}")


def timed(server, base: Path, export: Path, mode: str, load: Callable) -> float:  # noqa: ANN001
    engine = sa.create_engine(server.url(server.create_database(f"bench_{mode}")))
    try:
        first_load(engine, base, mode)
        started = time.perf_counter()
        load(engine, export)
        return time.perf_counter() - started
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.merge", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the samples as JSON")
    args = parser.parse_args(argv)
    rows = args.rows
    with (
        tempfile.TemporaryDirectory(prefix="prh-bench-merge-") as folder,
        running_postgres() as server,
    ):
        base, export = Path(folder) / "monday.csv", Path(folder) / "tuesday.csv"
        write_export(base, 1, rows, "Scheduled")
        write_export(export, rows // 2 + 1, rows, "Arrived")  # half updates, half new keys
        times: dict[str, list[float]] = {"append": [], "merge": []}
        for repetition in range(args.repetitions):
            for mode, load in (("append", appended), ("merge", merged)):
                seconds = timed(server, base, export, mode, load)
                times[mode].append(seconds)
                print(f"[{repetition + 1}] {mode}: {seconds:.2f} s", file=sys.stderr, flush=True)
    if args.json:  # for `make bench` (benchmarks/formats_merge.py)
        print(json.dumps(times))
        return 0
    append, merging = (statistics.median(times[mode]) for mode in ("append", "merge"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{rows:,} rows over a {rows:,}-row table, {rows // 2:,} of them updates "
          f"(median of {args.repetitions}):")  # fmt: skip
    print(f"  append (COPY into the table):          {append:6.2f} s")
    print(f"  merge (COPY into the table, then merge):{merging:6.2f} s  = {merging / append:.2f}x "
          f"the append (target: at most 3x)")  # fmt: skip
    print(f"  peak RSS of this process: {peak:.0f} MB (PostgreSQL's own not counted)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
