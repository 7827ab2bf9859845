"""7. The generated ingest.py on a large CSV and xlsx into SQLite, vs pandas read_* + to_sql."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from support.baking import SINK_SETTING, SOURCE_SETTING, TABLE, bake_ingest_project

from benchmarks import data
from benchmarks.common import (
    PYTHON,
    REPO_DIR,
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


def measure(ctx: Context) -> list[Section]:
    section = Section(7, "The generated ingest.py: rows per second and peak memory into SQLite")
    root = ctx.folder("ingest")
    data_dir = ctx.scratch / "data"
    data_dir.mkdir(exist_ok=True)
    for source_format, rows, make in (
        ("csv", ctx.sizes.csv_rows, data.csv_file),
        ("xlsx", ctx.sizes.xlsx_rows, data.xlsx_file),
    ):
        progress(f"ingest: {rows:,}-row {source_format}")
        source = make(data_dir, rows)
        with quiet():
            project = bake_ingest_project(
                root / source_format, source_format=source_format, dependency_manager="none"
            )
        what, fmt = f"{rows:,}-row {source_format}", source_format
        times = range(ctx.sizes.repetitions)
        add_loads(
            section,
            f"{fmt}-ours",
            f"{what}: generated ingest.py",
            rows,
            [load_with_ingest_py(project, source, root) for _ in times],
        )
        add_loads(
            section,
            f"{fmt}-reader",
            f"{what}: its reader alone (no conversion, no insert)",
            rows,
            [read_only(source) for _ in times],
        )
        if not HAVE_PANDAS:
            continue
        add_loads(
            section,
            f"{fmt}-pandas",
            f"{what}: pandas baseline",
            rows,
            [load_with_pandas(source, root) for _ in times],
        )
        section.comparisons += [
            Comparison(
                f"{fmt} rows/s, ours vs pandas",
                f"{fmt}-ours-rate",
                f"{fmt}-pandas-rate",
                higher_is_better=True,
            ),
            Comparison(f"{fmt} peak RSS, pandas vs ours", f"{fmt}-ours-rss", f"{fmt}-pandas-rss"),
        ]
    section.targets += [
        Target("CSV peak RSS <= 150 MB", "csv-ours-rss", 150, at_most=True),
        Target("xlsx >= 50,000 rows/s", "xlsx-ours-rate", 50_000, at_most=False),
    ]
    if HAVE_PANDAS:
        section.targets.insert(
            0,
            Target(
                "CSV at least as fast as pandas in the same run",
                "csv-ours-rate",
                1.0,
                at_most=False,
                ratio_of="csv rows/s, ours vs pandas",
            ),
        )
    else:
        section.notes.append(
            "pandas is not installed, so the baseline was skipped: `make bench` "
            "installs benchmarks/requirements.txt."
        )
    section.notes.append(
        "Rows/s is rows over the wall time of the whole process (`python ingest.py`: interpreter "
        "start, imports, hashing the file, one transaction). Peak RSS is the child's ru_maxrss "
        "from wait4. Each repetition loads into a new SQLite file. The baseline is "
        "`benchmarks/pandas_load.py`: `read_csv`/`read_excel` (default engine, openpyxl for "
        "xlsx) then `to_sql(index=False)` with defaults, the code a data engineer would write. "
        f"Data: `benchmarks/data.py`, 8 columns like the template's sample; {PYTHON_NOTE}."
    )
    return [section]


def add_loads(section: Section, key: str, label: str, rows: int, loads: list[Load]) -> None:
    """Rows/s and peak RSS figures of one way of loading, from its (seconds, bytes) samples."""
    section.add(f"{key}-rate", label, "rows/s", [rows / seconds for seconds, _ in loads])
    section.add(f"{key}-rss", f"{label}, peak RSS", "MB", [rss / MB for _, rss in loads])


PYTHON_NOTE = (
    "both run on the bench venv's Python, which pins the Pipfile's versions. The issue "
    "estimated the CSV baseline at about 400,000 rows/s and 275 MB; the figures above are what "
    "pandas' defaults did in this run"
)


def load_with_ingest_py(project: Path, source: Path, root: Path) -> Load:
    database = fresh_database(root / "ours.db")
    env = {**os.environ, SOURCE_SETTING: str(source), SINK_SETTING: f"sqlite:///{database}"}
    run = run_timed([PYTHON, "ingest.py"], cwd=project, env=env)
    return run.seconds, run.peak_rss_bytes


def load_with_pandas(source: Path, root: Path) -> Load:
    database = fresh_database(root / "pandas.db")
    argv = [PYTHON, "-m", "benchmarks.pandas_load", str(source), f"sqlite:///{database}", TABLE]
    run = run_timed(argv, cwd=REPO_DIR, env=os.environ)
    return run.seconds, run.peak_rss_bytes


def read_only(source: Path) -> Load:
    """The reader ingest.py uses, iterating every row and nothing else: the floor for a load."""
    run = run_timed(
        [PYTHON, "-m", "benchmarks.read_only", str(source)], cwd=REPO_DIR, env=os.environ
    )
    return run.seconds, run.peak_rss_bytes


def fresh_database(path: Path) -> Path:
    path.unlink(missing_ok=True)
    return path
