"""The baseline a careful data engineer would write with pandas: every column as text
(`dtype=str`, so MRNs keep their leading zeros: pandas' defaults turn `00012345` into 12345,
which no warehouse may do), inserted in chunks of 50,000 rows.

python -m benchmarks.pandas_load SOURCE SQLALCHEMY_URL TABLE
"""

from __future__ import annotations

import sys

import pandas as pd
import sqlalchemy as sa

CHUNK_ROWS = 50_000


def main(source: str, url: str, table: str) -> int:
    if source.endswith(".xlsx"):
        frame = pd.read_excel(source, dtype=str)
    else:
        frame = pd.read_csv(source, dtype=str)
    frame.to_sql(
        table, sa.create_engine(url), index=False, if_exists="replace", chunksize=CHUNK_ROWS
    )
    print(f"loaded {len(frame)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
