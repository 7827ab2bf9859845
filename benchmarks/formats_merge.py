"""9. The newer formats and LOAD_MODE=merge, at sizes that fit `make bench`'s 15 minutes.

The headline figures of benchmarks/formats.py (HL7 v2, FHIR ndjson, xlsx streamed) and
benchmarks/merge.py (merge against append), run through their own code, in a process each:
HL7 through the loader's whole load into PostgreSQL; FHIR, xlsx and merge through the
package's reader or merge step on its own, and the report says which. Their full-size runs
stay `python -m benchmarks.formats` and `python -m benchmarks.merge`.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path

import psycopg

from benchmarks import data, formats
from benchmarks.common import REPO_DIR, Context, Section, Target, progress, run_timed

MB = 1_000_000
PYTHON_HL7_MESSAGES = 10_000  # python-hl7 takes seconds per 10,000: a sample sets its rate


def measure(ctx: Context) -> list[Section]:
    sizes = ctx.sizes
    section = Section(
        9, "Other formats and merge (HL7 through the loader; the others their step alone)"
    )
    folder = ctx.folder("formats")

    progress(f"formats: HL7, {sizes.hl7_messages:,} messages into PostgreSQL")
    hl7 = str(formats.hl7_file(folder, sizes.hl7_messages))
    url = ctx.postgres.url(ctx.postgres.create_database())
    result, rss = formats.child("hl7-load", hl7, url)
    section.add("hl7-rate", "HL7 v2 ADT into PostgreSQL (the loader, formats.run_hl7_load)",
                "msgs/s", [sizes.hl7_messages / result["seconds"]])  # fmt: skip
    section.add("hl7-rss", "HL7 v2 ADT into PostgreSQL, peak RSS", "MB", [rss])
    sample = formats.hl7_file(folder, min(PYTHON_HL7_MESSAGES, sizes.hl7_messages))
    result, _ = formats.child("python-hl7", str(sample))
    section.add("hl7-python-hl7-rate",
                f"HL7 v2 ADT, python-hl7's parse and every field's text alone (no database, "
                f"{result['messages']:,} of the messages)",
                "msgs/s", [result["messages"] / result["seconds"]])  # fmt: skip

    progress(f"formats: FHIR, {sizes.fhir_resources:,} Observations")
    fhir_rates(ctx, folder, section, sizes.fhir_resources)

    progress(f"formats: xlsx streamed, {sizes.xlsx_rows[-1] + 1:,} rows")
    (ctx.scratch / "data").mkdir(exist_ok=True)  # shared with the ingest section's workbook
    workbook = data.xlsx_file(ctx.scratch / "data", sizes.xlsx_rows[-1])
    result, rss = formats.child("xlsx", str(workbook), "streamed")
    section.add("xlsx-rate", "xlsx streamed read + cell_text (formats.run_xlsx)", "rows/s",
                [result["rows"] / result["seconds"]])  # fmt: skip
    section.add("xlsx-rss", "xlsx streamed read, peak RSS", "MB", [rss])

    progress(f"merge: {sizes.merge_rows:,} rows over a {sizes.merge_rows:,}-row table")
    merge_times(ctx, section, sizes.merge_rows)

    section.targets += [
        Target("HL7 >= 20,000 msgs/s into PostgreSQL", "hl7-rate", 20_000, at_most=False),
        Target("HL7 peak RSS <= 150 MB", "hl7-rss", 150, at_most=True),
        Target("FHIR peak RSS <= 150 MB", "fhir-rss", 150, at_most=True),
        Target(
            "xlsx streamed >= 60,000 rows/s",
            "xlsx-rate",
            60_000,
            at_most=False,
            note_if_missed=(
                f"a wall-clock rate on {sizes.xlsx_rows[-1] + 1:,} rows (the issue's size is "
                "1,048,576: `python -m benchmarks.formats --only xlsx`), so a busy second core "
                "lowers it: the stream takes about as much CPU per row as calamine with "
                "cell_text (2026-12-07, 1,048,576 rows: 84,000-111,000 rows/s against "
                "calamine's 97,000-121,000)"
            ),
        ),
        Target("xlsx streamed peak RSS <= 300 MB", "xlsx-rss", 300, at_most=True),
        Target("merge peak RSS <= 150 MB", "merge-rss", 150, at_most=True),
        Target(
            "merge <= 3x the append",
            "merge-ratio",
            3,
            at_most=True,
            note_if_missed=(
                "the merge writes the file's rows once, COPYed straight into the table, then "
                "one grouping pass checks their keys and one DELETE ... USING hash join moves "
                "the replaced rows to the history (2026-12-07, 1,000,000 rows over 1,000,000, "
                "timed by statement: COPY 1.2 s, key check 0.45 s, move 1.95 s, of it about "
                "0.5 s the history insert, which INSERT ... SELECT writes row by row; 2.94x "
                "the append's 1.2 s over 3 runs of `python -m benchmarks.merge`). What is "
                "left is the move itself: a key index on the table would make the join cheap "
                "but every load's COPY two to three times slower"
            ),
        ),
    ]
    section.notes.append(
        f"Sizes cut to fit the bench: {sizes.hl7_messages:,} HL7 messages of 8 segments, "
        f"{sizes.fhir_resources:,} FHIR Observations (.ndjson.gz through copy_chunks() into "
        "(id, last_updated, resource jsonb), against `psql \\copy` of the same resources as a "
        f"one-column jsonb file) and {sizes.xlsx_rows[-1] + 1:,} xlsx rows (the ingest "
        "section's workbook) read by the streamed reader, n = 1 each. HL7 is the loader's "
        "whole load into PostgreSQL (prh_ingest.load.main, from its imports to the commit), "
        "beside what a careful engineer would use instead: python-hl7 (hl7.split_file, then "
        "hl7.parse and str() of every field), which stores nothing. Merge is at the issue's "
        f"size: {sizes.merge_rows:,} rows (half updates, half new keys) over a "
        f"{sizes.merge_rows:,}-row table, against appending the same file, each into a fresh "
        "copy of the table, interleaved: the COPY and merge step in one process (no "
        "interpreter start; `python -m benchmarks.merge`), whose peak RSS is the figure."
    )
    return [section]


def fhir_rates(ctx: Context, folder: Path, section: Section, count: int) -> None:
    gz, plain = formats.fhir_files(folder, count)
    server = ctx.postgres
    ours_db, psql_db = server.create_database(), server.create_database()
    for database, columns in (
        (ours_db, "id text, last_updated text, resource jsonb"),
        (psql_db, "resource jsonb"),
    ):
        with psycopg.connect(server.conninfo(database)) as connection:
            connection.execute(f"CREATE TABLE bulk_observation ({columns})")
    result, rss = formats.child("fhir", str(gz), server.conninfo(ours_db))
    section.add("fhir-rate", "FHIR ndjson.gz into jsonb (formats.run_fhir)", "resources/s",
                [count / result["seconds"]])  # fmt: skip
    section.add("fhir-rss", "FHIR ndjson.gz into jsonb, peak RSS", "MB", [rss])
    if formats.PSQL:
        psql = [formats.PSQL, "-q", "-v", "ON_ERROR_STOP=1", server.conninfo(psql_db), "-c"]
        copy = f"\\copy bulk_observation (resource) FROM '{plain}' WITH {formats.COPY_CSV}"
        theirs = run_timed([*psql, copy], cwd=REPO_DIR, env=os.environ)
        section.add("fhir-psql-rate", "FHIR as a jsonb file, `psql \\copy`", "resources/s",
                    [count / theirs.seconds])  # fmt: skip
        section.targets.append(
            Target("FHIR >= 0.5x `psql \\copy` (resources/s)", "fhir-vs-psql", 0.5, at_most=False)
        )
        section.add("fhir-vs-psql", "FHIR, ours / psql rate", "x",
                    [section.figure("fhir-rate").median / (count / theirs.seconds)])  # fmt: skip


def merge_times(ctx: Context, section: Section, rows: int) -> None:
    """`python -m benchmarks.merge` as a child (its own PostgreSQL): append and merge
    interleaved, n times each, and the child's peak RSS."""
    reps = ctx.sizes.repetitions
    argv = ["--rows", str(rows), "--repetitions", str(reps), "--json"]
    run = run_timed([sys.executable, "-m", "benchmarks.merge", *argv], cwd=REPO_DIR, env=os.environ)
    times = json.loads(run.output.strip().splitlines()[-1])
    section.add("merge-append", "append (COPY into the table)", "s", times["append"])
    merged = times["merge"]
    section.add("merge-merge", "merge (COPY into the table, then merge_copied)", "s", merged)
    ratio = statistics.median(merged) / statistics.median(times["append"])
    section.add("merge-ratio", "merge / append (medians)", "x", [ratio])
    section.add("merge-rss", "merge process, peak RSS", "MB", [run.peak_rss_bytes / MB])
