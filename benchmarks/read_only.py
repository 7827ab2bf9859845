"""Read every row of SOURCE with the reader the generated ingest.py uses, and nothing else.

python -m benchmarks.read_only SOURCE   (.csv: the csv module; .xlsx: python-calamine)
"""

from __future__ import annotations

import csv
import sys

from python_calamine import CalamineWorkbook


def count_rows(source: str) -> int:
    if source.endswith(".xlsx"):
        sheet = CalamineWorkbook.from_path(source).get_sheet_by_index(0)
        return sum(1 for _ in sheet.iter_rows())
    with open(source, newline="", encoding="utf-8-sig") as file:
        return sum(1 for _ in csv.reader(file, strict=True))


if __name__ == "__main__":
    print(f"read {count_rows(sys.argv[1])} rows")
