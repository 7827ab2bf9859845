"""The baseline a data engineer would write: pandas read_csv/read_excel + to_sql, defaults.

python -m benchmarks.pandas_load SOURCE SQLALCHEMY_URL TABLE
"""

from __future__ import annotations

import sys

import pandas as pd
import sqlalchemy as sa


def main(source: str, url: str, table: str) -> int:
    frame = pd.read_excel(source) if source.endswith(".xlsx") else pd.read_csv(source)
    frame.to_sql(table, sa.create_engine(url), index=False, if_exists="replace")
    print(f"loaded {len(frame)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
