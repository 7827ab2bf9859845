"""7. The generated ingest.py on a large CSV into SQLite and PostgreSQL, and on large xlsx files,
side by side with what a careful engineer would use instead (pandas with dtype=str, the
databases' own CSV loaders)."""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from support.baking import SINK_SETTING, SOURCE_SETTING, TABLE, bake_ingest_project
from support.services import PG_BIN

from benchmarks import data
from benchmarks.common import (
    PYTHON,
    REPO_DIR,
    BenchError,
    Comparison,
    Context,
    Section,
    Target,
    progress,
    quiet,
    run_timed,
)

MB = 1_000_000
Load = tuple[float, int]  # wall seconds, peak RSS bytes
HAVE_PANDAS = importlib.util.find_spec("pandas") is not None
SQLITE_CLI = shutil.which("sqlite3")
PSQL = shutil.which("psql")
XLSX_RSS_LIMIT_MB = 400


def measure(ctx: Context) -> list[Section]:
    section = Section(7, "The generated ingest.py: rows per second and peak memory")
    root = ctx.folder("ingest")
    data_dir = ctx.scratch / "data"
    data_dir.mkdir(exist_ok=True)
    with quiet():
        project = bake_ingest_project(root, dependency_manager="none", database="postgresql")
    rows = ctx.sizes.csv_rows
    progress(f"ingest: {rows:,}-row csv")
    source = data.csv_file(data_dir, rows)
    what = f"{rows:,}-row csv"
    loaders = Loaders(project, source, root, ctx)

    # Each repetition runs every way once, so a change in the machine's load hits all alike.
    sqlite_ways = {"ours": loaders.ours_sqlite}
    postgres_ways = {"ours": loaders.ours_postgres}
    if HAVE_PANDAS:
        sqlite_ways["pandas"] = loaders.pandas_sqlite
        postgres_ways["pandas"] = loaders.pandas_postgres
    if SQLITE_CLI:
        sqlite_ways["cli"] = loaders.sqlite_import
    if PSQL:
        postgres_ways["cli"] = loaders.psql_copy
    labels = {
        "ours": "generated ingest.py",
        "pandas": "pandas read_csv(dtype=str) + to_sql(chunksize=50,000)",
        "cli": "",
    }
    for database, ways, cli in (
        ("sqlite", sqlite_ways, "`sqlite3 .import --csv`"),
        ("postgresql", postgres_ways, "`psql \\copy` (FORMAT csv)"),
    ):
        progress(f"ingest: csv into {database}")
        samples: dict[str, list[Load]] = {way: [] for way in ways}
        for _ in range(ctx.sizes.repetitions):
            for way, load in ways.items():
                samples[way].append(load())
        for way, loads in samples.items():
            label = labels[way] or cli
            add_loads(section, f"{database}-{way}", f"{what} into {database}: {label}", rows, loads)
    add_csv_targets(section)

    for count in ctx.sizes.xlsx_rows:
        progress(f"ingest: {count + 1:,}-row xlsx (header included)")
        workbook = data.xlsx_file(data_dir, count)
        times = ctx.sizes.repetitions if count < 1_000_000 else 1
        loads = [loaders.ours_sqlite(workbook) for _ in range(times)]
        label = f"{count + 1:,}-row xlsx into sqlite: generated ingest.py"
        add_loads(section, f"xlsx-{count}", label, count, loads)
    smallest, largest = min(ctx.sizes.xlsx_rows), max(ctx.sizes.xlsx_rows)
    section.targets.append(
        Target(
            f"xlsx >= 50,000 rows/s at {smallest + 1:,} rows (the earlier issue's target)",
            f"xlsx-{smallest}-rate",
            50_000,
            at_most=False,
            note_if_missed=XLSX_RATE_NOTE,
        )
    )
    section.targets.append(
        Target(
            f"xlsx peak RSS <= {XLSX_RSS_LIMIT_MB} MB at {largest + 1:,} rows",
            f"xlsx-{largest}-rss",
            XLSX_RSS_LIMIT_MB,
            at_most=True,
            note_if_missed=XLSX_NOTE,
        )
    )
    section.notes += notes()
    return [section]


class Loaders:
    """Each way of loading the file: one timed process, into a fresh database."""

    def __init__(self, project: Path, source: Path, root: Path, ctx: Context) -> None:
        self.project, self.source, self.root, self.ctx = project, source, root, ctx

    def fresh_sqlite(self, name: str) -> Path:
        path = self.root / f"{name}.db"
        for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            leftover.unlink(missing_ok=True)
        return path

    def ours(self, url: str, source: Path) -> Load:
        env = {**os.environ, SOURCE_SETTING: str(source), SINK_SETTING: url}
        run = run_timed([PYTHON, "ingest.py"], cwd=self.project, env=env)
        return run.seconds, run.peak_rss_bytes

    def ours_sqlite(self, source: Path | None = None) -> Load:
        return self.ours(f"sqlite:///{self.fresh_sqlite('ours')}", source or self.source)

    def ours_postgres(self) -> Load:
        server = self.ctx.postgres
        return self.ours(server.url(server.create_database()), self.source)

    def pandas(self, url: str) -> Load:
        argv = [PYTHON, "-m", "benchmarks.pandas_load", str(self.source), url, TABLE]
        run = run_timed(argv, cwd=REPO_DIR, env=os.environ)
        return run.seconds, run.peak_rss_bytes

    def pandas_sqlite(self) -> Load:
        return self.pandas(f"sqlite:///{self.fresh_sqlite('pandas')}")

    def pandas_postgres(self) -> Load:
        server = self.ctx.postgres
        return self.pandas(server.url(server.create_database()))

    def sqlite_import(self) -> Load:
        database = self.fresh_sqlite("cli")
        argv = [SQLITE_CLI, str(database), f".import --csv {self.source} {TABLE}"]
        run = run_timed(argv, cwd=self.root, env=os.environ)
        if run.output.strip():  # .import reports bad rows on stderr and goes on
            raise BenchError(f"sqlite3 .import: {run.output[-500:]}")
        return run.seconds, run.peak_rss_bytes

    def psql_copy(self) -> Load:
        server = self.ctx.postgres
        database = server.create_database()
        columns = ", ".join(f"{name} text" for name in data.HEADER)
        psql = [PSQL, "-q", "-v", "ON_ERROR_STOP=1", server.conninfo(database)]
        run_timed([*psql, "-c", f"CREATE TABLE {TABLE} ({columns})"], cwd=self.root, env=os.environ)
        copy = f"\\copy {TABLE} FROM '{self.source}' (FORMAT csv, HEADER)"
        run = run_timed([*psql, "-c", copy], cwd=self.root, env=os.environ)
        return run.seconds, run.peak_rss_bytes


def add_loads(section: Section, key: str, label: str, rows: int, loads: list[Load]) -> None:
    """Rows/s and peak RSS figures of one way of loading, from its (seconds, bytes) samples."""
    section.add(f"{key}-rate", label, "rows/s", [rows / seconds for seconds, _ in loads])
    section.add(f"{key}-rss", f"{label}, peak RSS", "MB", [rss / MB for _, rss in loads])


def add_csv_targets(section: Section) -> None:
    keys = {figure.key for figure in section.figures}
    wanted: list[tuple[str, str, str, float, Callable[[], str]]] = [
        ("sqlite", "pandas", "pandas", 1.2, lambda: SQLITE_PANDAS_NOTE),
        ("sqlite", "cli", "`sqlite3 .import`", 0.6, lambda: SQLITE_CLI_NOTE),
        ("postgresql", "pandas", "pandas", 5, lambda: POSTGRES_NOTE),
        ("postgresql", "cli", "`psql \\copy`", 0.5, lambda: POSTGRES_NOTE),
    ]
    for database, way, name, limit, note in wanted:
        if f"{database}-{way}-rate" not in keys:
            section.notes.append(f"{name} into {database} was not measured (not installed).")
            continue
        label = f"{database} rows/s, ours vs {name}"
        section.comparisons.append(
            Comparison(label, f"{database}-ours-rate", f"{database}-{way}-rate", True)
        )
        section.comparisons.append(
            Comparison(
                f"{database} peak RSS, {name} vs ours",
                f"{database}-ours-rss",
                f"{database}-{way}-rss",
            )
        )
        section.targets.append(
            Target(
                f"CSV into {database}: at least {limit}x {name} (rows/s, same run)",
                f"{database}-ours-rate",
                limit,
                at_most=False,
                ratio_of=label,
                note_if_missed=note(),
            )
        )
    for database in ("sqlite", "postgresql"):
        section.targets.append(
            Target(
                f"CSV into {database}: peak RSS <= 100 MB",
                f"{database}-ours-rss",
                100,
                at_most=True,
            )
        )


SQLITE_PANDAS_NOTE = (
    "both spend most of their time in SQLite's per-row insert; ours adds the B-tree on "
    "_load_id that finds an earlier load's rows and WAL"
)
SQLITE_CLI_NOTE = (
    "`.import` parses and binds in C; ours builds 8 Python strings per row and binds them "
    "through executemany (the csv reader alone is about a third of our time). Reaching it "
    "would need the parsing out of Python (a C extension, or SQLite's csv virtual table, "
    "which Python's sqlite3 does not ship)"
)
POSTGRES_NOTE = (
    "the server parses the CSV in both; ours adds Python's start (SQLAlchemy's import, about "
    "0.4 s), hashing the file, the load-id default per row and the BRIN index"
)
XLSX_RATE_NOTE = (
    "the data changed: ids are zero-padded text and a third of the cells unicode or quoted "
    "text, where the earlier data was mostly numbers and dates, so the reader and the per-cell "
    "conversion in Python set the rate; a faster rate needs the conversion out of Python"
)
XLSX_NOTE = (
    "python-calamine 0.9.1 reads a sheet whole into memory before the first row (its Rust "
    "reader holds every cell); it has no streaming API. Reaching the limit needs a streaming "
    "reader such as openpyxl's read-only mode, which trades the memory for several times "
    "calamine's CPU"
)


def notes() -> list[str]:
    return [
        "Rows/s is data rows over the wall time of the whole process (`python ingest.py`: "
        "interpreter start, imports, hashing the file, one transaction; `psql` and `sqlite3` "
        "likewise). Peak RSS is the process's own peak (VmHWM from /proc): for PostgreSQL it is "
        "the client's, the server's memory is not counted for any of them. Each load goes into a "
        "new database (SQLite file, or PostgreSQL database on one throwaway PostgreSQL "
        f"{PG_BIN.parent.name} "
        "server started by the bench, fsync off for all). Each repetition runs every way once "
        "in turn, so a change in the machine's load hits them alike.",
        "Data (`benchmarks/data.py`): 8 text columns like the template's sample, with "
        "zero-padded ids, unicode names, quoted fields with commas and doubled quotes and "
        "cells with embedded newlines (LF and CRLF); the xlsx has the same rows as typed "
        "cells.",
        "The pandas baseline is `read_csv(dtype=str)` + `to_sql(chunksize=50_000)` "
        "(`benchmarks/pandas_load.py`): pandas' defaults turn `00012345` into 12345, which "
        "no warehouse may do, so they are not a fair baseline. `psql \\copy` loads into a "
        "table created beforehand (untimed) with the file's 8 text columns and no index.",
    ]
