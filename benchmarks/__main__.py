"""`python -m benchmarks [--quick] [--only NAME,...] [--output FILE] [--scratch DIR]`.

Runs the measurements a user decides on (issue 26) and writes all of BENCHMARKS.md (or --output)
from this one run.
Everything it creates (projects, venvs, Prefect's home, git repos) stays under --scratch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback
from pathlib import Path

from benchmarks.common import FULL, QUICK, REPO_DIR, BenchError, Context, compiled, progress
from benchmarks.report import render

# In the order they run: --only name -> module (its measure(ctx) returns sections).
BENCHMARKS = {
    "ingest": "ingest_load",  # 7: load speed and peak memory by shape and sink
    "deps": "deps",  # 1, 2, 3: the venv step
    "deploy": "deploy",  # 4: deploy of 100 flows
    "latency": "latency",  # 5: trigger to COMPLETED
    "suite": "suite",  # 8: make test, test-systemd, test-migration
    "formats": "formats_merge",  # 9: HL7 into PostgreSQL, FHIR, xlsx streamed, merge
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the smoke test)")
    parser.add_argument(
        "--only",
        default=",".join(BENCHMARKS),
        help=f"comma-separated subset of: {', '.join(BENCHMARKS)}",
    )
    parser.add_argument("--output", type=Path, default=REPO_DIR / "BENCHMARKS.md")
    parser.add_argument("--scratch", type=Path, default=REPO_DIR / ".bench")
    args = parser.parse_args(argv)
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(args.only) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    ctx = Context(QUICK if args.quick else FULL, args.scratch.resolve())
    ctx.scratch.mkdir(parents=True, exist_ok=True)
    sections, loads = [], []
    try:
        compiled(REPO_DIR / "prh-ingest" / "src", REPO_DIR / "benchmarks")  # the timed code's
        for name in (name for name in BENCHMARKS if name in args.only):
            progress(f"{name}: start")
            loads.append(os.getloadavg()[0])
            module = importlib.import_module(f"benchmarks.{BENCHMARKS[name]}")
            sections += module.measure(ctx)
    except Exception as error:
        if not isinstance(error, BenchError):
            traceback.print_exc()
        finished = args.scratch / "BENCHMARKS.partial.md"
        write(finished, sections, args, started, loads)
        print(
            f"benchmark failed, {args.output} not written (what finished: {finished}): {error}",
            file=sys.stderr,
        )
        return 1
    finally:
        ctx.close()
    write(args.output, sections, args, started, loads)
    progress(f"wrote {args.output}")
    return 0


def write(
    path: Path,
    sections: list,
    args: argparse.Namespace,
    started: float,
    loads: list,
) -> None:
    """Render the report of this run's *sections* and replace *path* with it in one step."""
    loads = [*loads, os.getloadavg()[0]]
    not_run = tuple(name for name in BENCHMARKS if name not in args.only)
    text = render(sections, args.quick, time.monotonic() - started, loads, not_run)
    partial = path.with_name(path.name + ".writing")
    partial.write_text(text)
    partial.replace(path)


if __name__ == "__main__":
    sys.exit(main())
