"""Source files for the ingest benchmark: an 8-column clinic export, like the template's sample,
with what real exports hold: zero-padded ids, unicode names, quoted fields with commas and
quotes, and cells with embedded newlines (about 1 row in 12 of each)."""

from __future__ import annotations

import csv
import datetime as dt
import random
from collections.abc import Iterator
from pathlib import Path

HEADER = [
    "appointment_id",
    "clinic",
    "provider",
    "appointment_date",
    "start_time",
    "duration_minutes",
    "visit_type",
    "status",
]
CLINICS = [
    "Cardiology",
    "Dermatology",
    "Pediatrics",
    "Oncology",
    "Family Medicine",
    "Médecine générale",
]
PROVIDERS = [
    "Dr. Alvarez",
    "Dr. Patel",
    "Dr. Nguyen",
    "Dr. Okafor",
    "Dr. Rivera",
    "Dr. Chen",
    "Dr. Øyelaran",
    "Dr. 王秀英",
    "Dr. Ní Bhriain",
    "Dr. Müller-Lüdenscheidt",
    "Dr. Şahin",
]
VISIT_TYPES = ["New Patient", "Follow Up", "Telehealth", "Procedure", 'Follow Up, "urgent"'] * 2 + [
    "Procedure\nsee referral letter"
]
STATUSES = ["Scheduled", "Completed", "No Show", "Cancelled"] * 3 + ["Cancelled\r\nby patient"]
FIRST_DAY = dt.date(2026, 1, 5)


def rows(count: int, seed: int = 5) -> Iterator[list]:
    """*count* deterministic appointment rows: ints, dates, times and text."""
    pick = random.Random(seed)  # noqa: S311 (test data, not secrets)
    for index in range(count):
        minutes = pick.randrange(8 * 60, 17 * 60, 15)
        yield [
            f"{100_000 + index:08d}",
            pick.choice(CLINICS),
            pick.choice(PROVIDERS),
            FIRST_DAY + dt.timedelta(days=index % 300),
            dt.time(minutes // 60, minutes % 60),
            pick.choice((15, 30, 45, 60)),
            pick.choice(VISIT_TYPES),
            pick.choice(STATUSES),
        ]


def csv_file(folder: Path, count: int) -> Path:
    """`appointments-<count>.csv` in *folder*, written once and reused."""
    path = folder / f"appointments-{count}.csv"
    if not path.exists():
        partial = path.with_suffix(".partial")
        with partial.open("w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(HEADER)
            for row in rows(count):
                row[4] = row[4].strftime("%H:%M")
                writer.writerow(row)
        partial.rename(path)
    return path


def xlsx_file(folder: Path, count: int) -> Path:
    """`appointments-<count>.xlsx` in *folder* (typed cells, first sheet), written once."""
    from openpyxl import Workbook

    path = folder / f"appointments-{count}.xlsx"
    if not path.exists():
        workbook = Workbook(write_only=True)
        sheet = workbook.create_sheet("appointments")
        sheet.append(HEADER)
        for row in rows(count):
            sheet.append(row)
        partial = path.with_suffix(".partial.xlsx")
        workbook.save(partial)
        partial.rename(path)
    return path
