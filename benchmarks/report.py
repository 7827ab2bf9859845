"""BENCHMARKS.md: machine, versions, targets, then each measurement's figures and ratios."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import time
from dataclasses import dataclass
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


SECTION_HEADING = re.compile(r"^## ([0-9]+)\. ")
STAMP = re.compile(r" on ([0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2} UTC)")


@dataclass
class Carried:
    """What an earlier BENCHMARKS.md measured that this run (`--only`) did not."""

    stamp: str
    target_lines: list[tuple[int, str]]  # (section number, the table row as written)
    blocks: dict[int, list[str]]  # section number -> its lines, heading first


def carried_over(previous: str, measured: set[int]) -> Carried:
    """The earlier report's targets and sections other than *measured*, unchanged."""
    stamp = STAMP.search(previous)
    target_lines: list[tuple[int, str]] = []
    blocks: dict[int, list[str]] = {}
    heading, current = "", None
    for line in previous.splitlines():
        if line.startswith("## "):
            heading = line
            match = SECTION_HEADING.match(line)
            current = int(match.group(1)) if match and int(match.group(1)) not in measured else None
            if current is not None:
                blocks[current] = []
        if current is not None:
            blocks[current].append(line)
        elif heading == "## Targets" and re.match(r"^\| [0-9]+ \|", line):
            number = int(line.split("|")[1])
            if number not in measured:
                target_lines.append((number, line))
    return Carried(stamp.group(1) if stamp else "an earlier run", target_lines, blocks)


def _trimmed(lines: list[str]) -> list[str]:
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def render(
    sections: list[Section],
    quick: bool,
    seconds: float,
    loads: list[float],
    previous: str | None = None,
) -> str:
    """The report; with *previous* (a partial run), the sections it did not measure are
    carried over unchanged from that earlier report, and the header says so."""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    measured = {section.number for section in sections}
    carried = carried_over(previous, measured) if previous else Carried("", [], {})
    carried_note = (
        [
            f"{'Section' if len(carried.blocks) == 1 else 'Sections'} "
            f"{', '.join(map(str, sorted(carried.blocks)))} not measured in this run (`--only`): "
            f"carried over unchanged from the run of {carried.stamp}.",
            "",
        ]
        if carried.blocks
        else []
    )
    new_targets = [(int(row[0]), row_line(row)) for row in target_rows(sections)]
    target_lines = [
        line for _, line in sorted(new_targets + carried.target_lines, key=lambda x: x[0])
    ]
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (`python -m benchmarks{' --quick' if quick else ''}`) on "
        f"{stamp}, in {seconds / 60:.1f} min. Every figure is the median of its n repetitions "
        "with the lowest and highest sample; every ratio compares medians measured in the same "
        'run. Ratios read "how many times better ours is" (time, bytes: instead / ours; '
        "rates: ours / instead).",
        "",
        *carried_note,
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
        "means other work shared the machine and the times are pessimistic.",
        "",
        "## Targets",
        "",
        *table(["#", "target", "measured", "status", "why missed, and what would reach it"], []),
        *target_lines,
        "",
    ]
    blocks = {section.number: section_lines(section) for section in sections}
    # A carried block ends with its blank lines; trimmed, so carrying it again adds none.
    blocks.update({number: [*_trimmed(block), ""] for number, block in carried.blocks.items()})
    for number in sorted(blocks):
        lines += blocks[number]
    return "\n".join(lines).rstrip() + "\n"
