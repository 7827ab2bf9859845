"""Source files for the ingest benchmark: an 8-column clinic export, like the template's sample,
with what held-out exports hold (issue 26): zero-padded ids, non-ASCII names, and densely
quoted values: every row's provider holds a comma ("Patel, Dr. Anil"), half the rows a visit
type with a doubled quote and a comma, a quarter of them a status with a line break (LF or
CRLF), so about 2.75 quoted fields per row; and the same rows in the shapes hospital systems
send (SHAPES: `|` with `"`, `^` with no qualifier, tab, plain comma), whose text has no line
ends nor qualified values."""

from __future__ import annotations

import csv
import datetime as dt
import random
from collections.abc import Iterator
from dataclasses import dataclass
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
# The quoted csv's text: a comma in every provider, `""` and a comma in half the visit types, a
# line break in a quarter of the statuses.
QUOTED_PROVIDERS = [f"{name.removeprefix('Dr. ')}, Dr." for name in PROVIDERS]
VISIT_TYPES = [
    "New Patient",
    "Follow Up",
    "Telehealth",
    "Procedure",
    'Follow Up, "urgent"',
    'Procedure, "left knee"',
    'Telehealth, "no video"',
    'New Patient, "interpreter: Français"',
]
STATUSES = [
    "Scheduled",
    "Completed",
    "No Show",
    "Cancelled",
    "Completed",
    "Scheduled",
    "Cancelled\r\nby patient",
    "No Show\nsee referral letter",
]
FIRST_DAY = dt.date(2026, 1, 5)


# The shapes' text: no line ends, no delimiter; a `"` only where it is data (no qualifier).
PLAIN_VISIT_TYPES = ["New Patient", "Follow Up", "Telehealth", "Procedure"] * 3 + [
    "Follow Up urgent"
]
UNQUOTED_VISIT_TYPES = [*PLAIN_VISIT_TYPES, 'Procedure 5" laceration']
PLAIN_STATUSES = ["Scheduled", "Completed", "No Show", "Cancelled"]


def rows(
    count: int,
    seed: int = 5,
    visit_types: list[str] = VISIT_TYPES,
    statuses: list[str] = STATUSES,
    encoding: str = "utf-8",
    providers: list[str] = QUOTED_PROVIDERS,
) -> Iterator[list]:
    """*count* deterministic appointment rows: ints, dates, times and text (the names those
    of CLINICS and *providers* that *encoding* has)."""
    pick = random.Random(seed)  # noqa: S311 (test data, not secrets)
    clinics, providers = (encodable(names, encoding) for names in (CLINICS, providers))
    for index in range(count):
        minutes = pick.randrange(8 * 60, 17 * 60, 15)
        yield [
            f"{100_000 + index:08d}",
            pick.choice(clinics),
            pick.choice(providers),
            FIRST_DAY + dt.timedelta(days=index % 300),
            dt.time(minutes // 60, minutes % 60),
            pick.choice((15, 30, 45, 60)),
            pick.choice(visit_types),
            pick.choice(statuses),
        ]


def encodable(names: list[str], encoding: str) -> list[str]:
    return [
        name for name in names if name.encode(encoding, errors="ignore").decode(encoding) == name
    ]


def csv_file(folder: Path, count: int, bad_every: int | None = None) -> Path:
    """`appointments-<count>-quoted.csv` in *folder*, written once and reused. *bad_every*:
    every such row (from the 50th) gets one value too many, what BAD_ROWS=quarantine sets
    aside (the file is named for it)."""
    bad = f"-1-in-{bad_every}-bad" if bad_every else ""
    path = folder / f"appointments-{count}-quoted{bad}.csv"
    if not path.exists():
        partial = path.with_suffix(".partial")
        with partial.open("w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(HEADER)
            for number, row in enumerate(rows(count)):
                row[4] = row[4].strftime("%H:%M")
                too_many = bad_every and number % bad_every == 50 % bad_every
                writer.writerow([*row, "extra"] if too_many else row)
        partial.rename(path)
    return path


BAD_EVERY = 100  # the quarantine file: one row in a hundred has a value too many (1%)


@dataclass(frozen=True)
class Shape:
    """A delimited export as a source system writes it, and the ingest.py settings for it."""

    name: str
    what: str  # for the report
    suffix: str
    delimiter: str
    quoted: bool  # `"` qualifies values; False: QUOTE=none (every character is data)
    encoding: str = "utf-8"
    line_end: str = "\n"
    footer: bool = False  # a trailing CONTROL TOTALS row (FOOTER_ROWS=1)

    def settings(self, source_key: str) -> dict[str, str]:
        """What ingest.py is told (the delimiter is detected from the header)."""
        settings = {} if self.quoted else {f"{source_key}_QUOTE": "none"}
        if self.encoding != "utf-8":
            settings[f"{source_key}_ENCODING"] = self.encoding
        if self.footer:
            settings[f"{source_key}_FOOTER_ROWS"] = "1"
        return settings

    @property
    def copy_options(self) -> str:
        """psql \\copy's options for the same file without its footer (psql cannot drop it)."""
        options = ["FORMAT csv", "HEADER", f"DELIMITER E'\\x{ord(self.delimiter):02x}'"]
        if self.quoted:
            options.append(FORCE_NULL)
        else:
            options.append("QUOTE E'\\x01'")  # a byte the data never holds: no qualifier
        if self.encoding != "utf-8":
            options.append(f"ENCODING '{POSTGRES_ENCODINGS[self.encoding]}'")
        return ", ".join(options)


# The loader's own COPY option for a file with a qualifier (copy_feed.copy_text): a quoted
# empty value ("") is NULL, as an unquoted one is. psql is given the same options.
FORCE_NULL = f"FORCE_NULL ({', '.join(HEADER)})"
POSTGRES_ENCODINGS = {"iso8859-15": "LATIN9"}
SHAPES = {
    shape.name: shape
    for shape in (
        Shape(
            "plain", "plain comma csv (nothing quoted, no line ends in values)", ".csv", ",", True
        ),
        Shape("pipe", '`|`-delimited, `"` qualifier (Cerner, payers)', ".txt", "|", True),
        Shape(
            "caret",
            "`^`-delimited, no qualifier, ISO-8859-15, CRLF, CONTROL TOTALS footer (EpicCare)",
            ".dat",
            "^",
            False,
            "iso8859-15",
            "\r\n",
            footer=True,
        ),
        Shape("tab", "tab-separated, no qualifier (Epic EHI)", ".tsv", "\t", False),
    )
}


def shape_file(folder: Path, shape: Shape, count: int) -> tuple[Path, Path]:
    """The export of *count* rows in *shape* (written once and reused), and the same file
    without its footer for psql."""
    path = folder / f"appointments-{count}-{shape.name}{shape.suffix}"
    bare = path.with_name(f"{path.stem}-no-footer{shape.suffix}") if shape.footer else path
    if not path.exists():
        visit_types = PLAIN_VISIT_TYPES if shape.quoted else UNQUOTED_VISIT_TYPES
        table = rows(
            count,
            visit_types=visit_types,
            statuses=PLAIN_STATUSES,
            encoding=shape.encoding,
            providers=PROVIDERS,
        )
        partial = path.with_suffix(".partial")
        with partial.open("w", newline="", encoding=shape.encoding) as file:
            if shape.quoted:  # quotes only a value that needs it: none here
                writer = csv.writer(file, delimiter=shape.delimiter, lineterminator=shape.line_end)
                write = writer.writerow
            else:

                def write(row: list) -> None:
                    file.write(shape.delimiter.join(map(str, row)) + shape.line_end)

            write(HEADER)
            for row in table:
                row[4] = row[4].strftime("%H:%M")
                write(row)
        if shape.footer:
            partial.rename(bare)
            with bare.open("rb") as source, partial.open("wb") as file:
                while block := source.read(1 << 20):
                    file.write(block)
                footer = ["CONTROL TOTALS", str(count), *[""] * (len(HEADER) - 2)]
                file.write((shape.delimiter.join(footer) + shape.line_end).encode(shape.encoding))
        partial.rename(path)
    return path, bare


def xlsx_file(folder: Path, count: int) -> Path:
    """`appointments-<count>.xlsx` in *folder* (typed cells, first sheet), written once."""
    from openpyxl import Workbook

    path = folder / f"appointments-{count}.xlsx"
    if not path.exists():
        workbook = Workbook(write_only=True)
        sheet = workbook.create_sheet("appointments")
        sheet.append(HEADER)
        for row in rows(count, providers=PROVIDERS):
            sheet.append(row)
        partial = path.with_suffix(".partial.xlsx")
        workbook.save(partial)
        partial.rename(path)
    return path
