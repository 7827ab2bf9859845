"""BENCHMARKS.md: machine, versions, targets, then each measurement's figures and ratios."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

from benchmarks.common import Section, Target

PACKAGES = [
    "prefect",
    "prefect-shell",
    "pipenv",
    "uv",
    "SQLAlchemy",
    "python-calamine",
    "psycopg",
    "cookiecutter",
    "pytest",
    "pandas",
    "numpy",
]


def number(value: float) -> str:
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    magnitude = abs(value)
    if value == int(value) and magnitude < 1000:
        return str(int(value))
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def row_line(row: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [row_line(row) for row in rows]
    return lines


def machine_rows() -> list[list[str]]:
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    git = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    rows = [
        ["CPU", f"{cpu}, {os.cpu_count()} cores"],
        ["memory", f"{memory:.1f} GiB"],
        ["OS", f"{platform.system()} {platform.release()}"],
        ["Python", platform.python_version()],
        ["git", git.removeprefix("git version ")],
    ]
    for name in PACKAGES:
        try:
            rows.append([name, metadata.version(name)])
        except metadata.PackageNotFoundError:
            rows.append([name, "not installed"])
    return rows


def target_value(section: Section, target: Target) -> float:
    if target.ratio_of:
        comparison = next(c for c in section.comparisons if c.label == target.ratio_of)
        return section.ratio(comparison)
    return section.figure(target.key).median


def target_met(section: Section, target: Target) -> bool:
    value = target_value(section, target)
    return value <= target.limit if target.at_most else value >= target.limit


def target_rows(sections: list[Section]) -> list[list[str]]:
    rows = []
    for section in sections:
        for target in section.targets:
            value = target_value(section, target)
            shown = (
                f"{number(value)}x"
                if target.ratio_of
                else (f"{number(value)} {section.figure(target.key).unit}")
            )
            met = "met" if target_met(section, target) else "**missed**"
            note = "" if target_met(section, target) else target.note_if_missed
            rows.append([str(section.number), target.label, shown, met, note])
    return rows


def section_lines(section: Section) -> list[str]:
    lines = [f"## {section.number}. {section.title}", ""]
    if section.figures:
        rows = [
            [
                f.label,
                f.unit,
                number(f.median),
                f"{number(f.low)} – {number(f.high)}",
                str(len(f.samples)),
            ]
            for f in section.figures
        ]
        lines += table(["figure", "unit", "median", "min – max", "n"], rows) + [""]
    if section.comparisons:
        rows = []
        for comparison in section.comparisons:
            ours, theirs = section.figure(comparison.ours), section.figure(comparison.theirs)
            rows.append(
                [
                    comparison.label,
                    f"{number(ours.median)} {ours.unit}",
                    f"{number(theirs.median)} {theirs.unit}",
                    f"{number(section.ratio(comparison))}x",
                ]
            )
        lines += table(["comparison (same run)", "ours", "instead", "ratio"], rows) + [""]
    lines += [note + "\n" for note in section.notes]
    return lines


def render(
    sections: list[Section],
    quick: bool,
    seconds: float,
    loads: list[float],
    not_run: tuple[str, ...] = (),
) -> str:
    """The whole report, from this run's *sections* only (nothing carried over from another);
    *not_run* names the benchmarks an `--only` run left out."""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    cores = os.cpu_count() or 1
    header = []
    if max(loads, default=0) > cores:
        header.append(
            f"The machine was shared: the load average reached {max(loads):.1f} on {cores} "
            "cores during this run, so absolute times are pessimistic and noisy; the ratios, "
            "measured in the same minutes, are what to read."
        )
    if not_run:
        header.append(
            f"Not run this time (`--only`): {', '.join(not_run)}; their sections are absent, "
            "not carried over from another day."
        )
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (`python -m benchmarks{' --quick' if quick else ''}`) on "
        f"{stamp}, in {seconds / 60:.1f} min, every section below measured in this one run. "
        "Every figure is the "
        "median of its n repetitions with the lowest and highest sample; every ratio compares "
        'medians measured in the same run. Ratios read "how many times better ours is" (time, '
        "bytes: instead / ours; rates: ours / instead). The timed Python is compiled to "
        "bytecode first, as an installed package's is.",
        "",
        *(line for paragraph in header for line in (paragraph, "")),
        "## Machine and versions",
        "",
        *table(
            ["item", "value"],
            [
                *machine_rows(),
                ["load average (1 min)", " -> ".join(f"{load:.2f}" for load in loads)],
            ],
        ),
        "",
        "The load average is sampled before each benchmark and at the end: above the core count "
        "means other work shared the machine and the times are pessimistic; ratios measured in "
        "the same run are what to read then.",
        "",
        "## Targets",
        "",
        *table(
            ["#", "target", "measured", "status", "why missed, and what would reach it"],
            target_rows(sections),
        ),
        "",
    ]
    for section in sorted(sections, key=lambda section: section.number):
        lines += section_lines(section)
    return "\n".join(lines).rstrip() + "\n"
