"""The format readers of prh_ingest.formats against the issue's targets, at full size (`make
bench` runs them smaller: benchmarks/formats_merge.py):

- HL7 v2: messages/s and peak RSS for 100,000 ADT messages of 8 segments, parsed, and loaded
  into PostgreSQL by the loader (target: 20,000 messages/s into PostgreSQL, 150 MB);
- FHIR: 1,000,000 Observations from `.ndjson.gz` through copy_chunks() into a PostgreSQL
  table (id, last_updated, resource jsonb), against `psql \\copy` of the same resources as a
  one-column jsonb file (target: at least 0.5x psql's rate, 150 MB);
- xlsx: rows/s and peak RSS reading a 1,048,576-row x 8-column sheet, streamed and through
  python-calamine with the loader's cell_text (target: 60,000 rows/s, 300 MB).

`python -m benchmarks.formats [--messages N] [--resources N] [--rows N] [--scratch DIR]`.
Each reader runs in its own process (peak RSS is that process's VmHWM).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import shutil
import sys
import time
from pathlib import Path

from benchmarks import data
from benchmarks.common import REPO_DIR, progress, run_timed

PSQL = shutil.which("psql")
MB = 1_000_000
COPY_CSV = "(FORMAT csv, DELIMITER E'\\x1f', QUOTE E'\\x1e')"


def adt_message(number: int) -> str:
    return "\r".join(
        [
            "MSH|^~\\&|ADT1|GOOD HEALTH HOSPITAL|GHH LAB|GHH|"
            f"20240501{number % 86400:06d}||ADT^A08^ADT_A01|MSG{number:09d}|P|2.5.1",
            "EVN|A08|20240501120000",
            f"PID|1||{number:07d}^^^GHH^MR~S{number}^^^SSA^SS||DOE^JOHN^Q^JR||19800101|M|||"
            "123 MAIN ST^^ANYTOWN^CA^90210||(555)555-1234",
            "PV1|1|I|2000^2012^01||||004777^ATTEND^AARON^A|||SUR||||ADM|A0|",
            "OBX|1|NM|8867-4^Heart rate^LN||72|/min|60-100|N|||F",
            "OBX|2|ST|8480-6^Systolic^LN||120 \\F\\ 80|mm[Hg]|||||F",
            "AL1|1||^PENICILLIN||PRODUCES HIVES~RASH",
            "ZPI|1|custom\\S\\value",
        ]
    )


def hl7_file(folder: Path, count: int) -> Path:
    path = folder / f"adt-{count}.hl7"
    if not path.exists():
        with path.open("w", newline="") as file:
            file.write("FHS|^~\\&|ADT1|GHH\rBHS|^~\\&|ADT1|GHH\r")
            for number in range(count):
                file.write(adt_message(number) + "\r")
            file.write(f"BTS|{count}\rFTS|1\r")
    return path


def observation(number: int) -> dict:
    return {
        "resourceType": "Observation",
        "id": f"obs-{number:09d}",
        "meta": {"lastUpdated": "2024-05-01T10:00:00.000+00:00"},
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                        "display": "Vital Signs",
                    }
                ]
            }
        ],
        "code": {
            "coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}],
            "text": "Heart rate",
        },
        "subject": {"reference": f"Patient/pat-{number % 50000}", "display": "Zoë Łukasiewicz"},
        "effectiveDateTime": "2024-05-01T09:58:00+00:00",
        "valueQuantity": {"value": 60 + number % 40, "unit": "beats/minute", "code": "/min"},
        "note": [{"text": 'taken at rest; C:\\notes "quoted"'}],
    }


def fhir_files(folder: Path, count: int) -> tuple[Path, Path]:
    """Observation.000.ndjson.gz (ours) and the same resources as psql's one-column csv."""
    gz = folder / f"Observation-{count}.ndjson.gz"
    plain = folder / f"Observation-{count}.ndjson"
    if not gz.exists():
        with plain.open("wb") as out, gzip.open(gz.with_suffix(".partial"), "wb", 6) as zipped:
            for number in range(count):
                line = json.dumps(observation(number), ensure_ascii=False).encode() + b"\n"
                out.write(line)
                zipped.write(line)
        gz.with_suffix(".partial").rename(gz)
    return gz, plain


# --- the measured processes ---------------------------------------------------------------


def run_hl7(path: str) -> None:
    from prh_ingest.formats.hl7 import SegmentTables, read_path

    started, started_cpu = time.perf_counter(), time.process_time()
    tables = SegmentTables()
    segments = messages = 0
    for message in read_path(Path(path)):
        tables.add(message)
        messages += 1
        segments += message.segment_count
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "messages": messages, **cpu(started_cpu)}))


def run_python_hl7(path: str) -> None:
    """What a careful engineer would use instead: python-hl7's parse of each message, and
    the text of every field as sent (str() of its parsed field)."""
    import hl7

    started, started_cpu = time.perf_counter(), time.process_time()
    messages = 0
    with Path(path).open(encoding="utf-8", newline="") as file:  # segments end in CR
        text = file.read()
    for message in hl7.split_file(text):  # its own split of a batch file into messages
        for segment in hl7.parse(message):
            [str(field) for field in segment]
        messages += 1
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "messages": messages, **cpu(started_cpu)}))


def run_hl7_load(path: str, url: str) -> None:
    """The loader on an HL7 file into PostgreSQL, as ingest.py runs it (its imports too)."""
    from prh_ingest import naming

    os.environ[naming.source_setting("bench", "adt")] = path
    os.environ[naming.sink_setting("bench")] = url
    started, started_cpu = time.perf_counter(), time.process_time()
    from prh_ingest import load

    with contextlib.redirect_stdout(sys.stderr):  # its report: our stdout is the JSON line
        code = load.main("bench", "adt", lambda _source, columns, rows: (columns, rows), [])
    if code != 0:
        raise SystemExit(f"the loader exited {code}")
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, **cpu(started_cpu)}))


def run_fhir(path: str, conninfo: str) -> None:
    import psycopg
    from prh_ingest.formats.fhir import (
        COPY_COLUMNS,
        COPY_OPTIONS,
        copy_chunks,
        open_ndjson,
        read_resources,
    )

    started = time.perf_counter()
    with psycopg.connect(conninfo) as connection, open_ndjson(Path(path)) as stream:
        columns = ", ".join(COPY_COLUMNS)
        with connection.cursor().copy(
            f"COPY bulk_observation ({columns}) FROM STDIN WITH {COPY_OPTIONS}"
        ) as copy:
            for chunk in copy_chunks(read_resources(stream), "Observation"):
                copy.write(chunk)
    print(json.dumps({"seconds": time.perf_counter() - started}))


def run_xlsx(path: str, reader: str) -> None:
    started, started_cpu = time.perf_counter(), time.process_time()
    count = 0
    if reader == "streamed":
        from prh_ingest.formats.xlsx import open_sheet

        for _ in open_sheet(Path(path)).rows():
            count += 1
    else:
        from prh_ingest.formats.xlsx import cell_text  # the loader's text of calamine's values
        from python_calamine import CalamineWorkbook

        workbook = CalamineWorkbook.from_path(path)
        sheet = workbook.get_sheet_by_index(0)
        for row in sheet.iter_rows():
            [cell_text(value) for value in row]
            count += 1
    print(json.dumps({"seconds": time.perf_counter() - started, "rows": count, **cpu(started_cpu)}))


def cpu(since: float) -> dict[str, float]:
    """The process's own CPU seconds since *since*: on a busy machine, wall time also counts
    the waiting for a core."""
    return {"cpu": time.process_time() - since}


# --- the driver ----------------------------------------------------------------------------


def child(*argv: str) -> tuple[dict, float]:
    """(what the child printed, its peak RSS in MB)."""
    run = run_timed(
        [sys.executable, "-m", "benchmarks.formats", *argv], cwd=REPO_DIR, env=os.environ
    )
    return json.loads(run.output.strip().splitlines()[-1]), run.peak_rss_bytes / MB


def measure_hl7(folder: Path, count: int) -> None:
    from support.services import running_postgres

    path = hl7_file(folder, count)
    result, rss = child("hl7", str(path))
    rate = result["messages"] / result["seconds"]
    print(f"HL7: {result['messages']:,} ADT messages parsed in {result['seconds']:.2f} s: "
          f"{rate:,.0f} messages/s ({result['messages'] / result['cpu']:,.0f} per CPU second), "
          f"peak RSS {rss:.0f} MB")  # fmt: skip
    with running_postgres() as server:
        result, rss = child("hl7-load", str(path), server.url(server.create_database()))
    print(f"HL7: the same through the loader into PostgreSQL in {result['seconds']:.2f} s: "
          f"{count / result['seconds']:,.0f} messages/s, peak RSS {rss:.0f} MB")  # fmt: skip


def measure_fhir(folder: Path, count: int) -> None:
    import psycopg
    from support.services import running_postgres

    gz, plain = fhir_files(folder, count)
    with running_postgres() as server:
        ours_db, psql_db = server.create_database("ours"), server.create_database("psql")
        for database, columns in (
            (ours_db, "id text, last_updated text, resource jsonb"),
            (psql_db, "resource jsonb"),
        ):
            with psycopg.connect(server.conninfo(database)) as connection:
                connection.execute(f"CREATE TABLE bulk_observation ({columns})")
        result, rss = child("fhir", str(gz), server.conninfo(ours_db))
        psql = [PSQL, "-q", "-v", "ON_ERROR_STOP=1", server.conninfo(psql_db), "-c"]
        copy = f"\\copy bulk_observation (resource) FROM '{plain}' WITH {COPY_CSV}"
        theirs = run_timed([*psql, copy], cwd=REPO_DIR, env=os.environ)
        loaded = server.query(ours_db, "SELECT count(*) FROM bulk_observation")[0][0]
    ours_rate, psql_rate = count / result["seconds"], count / theirs.seconds
    print(f"FHIR: {loaded:,} Observations from .ndjson.gz into jsonb in {result['seconds']:.2f} s:"
          f" {ours_rate:,.0f} resources/s, peak RSS {rss:.0f} MB; psql \\copy of the same as a "
          f"one-column jsonb file: {theirs.seconds:.2f} s, {psql_rate:,.0f} resources/s, peak RSS "
          f"{theirs.peak_rss_bytes / MB:.0f} MB; ratio {ours_rate / psql_rate:.2f}x")  # fmt: skip


def measure_xlsx(folder: Path, rows: int) -> None:
    path = data.xlsx_file(folder, rows - 1)  # the header is a row too
    for reader in ("streamed", "calamine"):
        result, rss = child("xlsx", str(path), reader)
        rate, per_cpu = result["rows"] / result["seconds"], result["rows"] / result["cpu"]
        print(f"xlsx ({reader}): {result['rows']:,} rows x {len(data.HEADER)} columns in "
              f"{result['seconds']:.2f} s: {rate:,.0f} rows/s ({per_cpu:,.0f} per CPU second), "
              f"peak RSS {rss:.0f} MB")  # fmt: skip


def main() -> None:
    runs = {
        "hl7": run_hl7,
        "python-hl7": run_python_hl7,
        "hl7-load": run_hl7_load,
        "fhir": run_fhir,
        "xlsx": run_xlsx,
    }
    if len(sys.argv) > 1 and sys.argv[1] in runs:
        runs[sys.argv[1]](*sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--resources", type=int, default=1_000_000)
    parser.add_argument("--rows", type=int, default=1_048_576)
    parser.add_argument("--scratch", type=Path, default=REPO_DIR / ".bench" / "formats")
    parser.add_argument("--only", default="hl7,fhir,xlsx")
    options = parser.parse_args()
    options.scratch.mkdir(parents=True, exist_ok=True)
    wanted = options.only.split(",")
    if "hl7" in wanted:
        progress("formats: HL7")
        measure_hl7(options.scratch, options.messages)
    if "fhir" in wanted:
        progress("formats: FHIR")
        measure_fhir(options.scratch, options.resources)
    if "xlsx" in wanted:
        progress("formats: xlsx")
        measure_xlsx(options.scratch, options.rows)


if __name__ == "__main__":
    main()
