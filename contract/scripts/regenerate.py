"""Keep this project current with the template that made it (`--help` says how).

The code is the prh-ingest package's (prh_ingest.regenerate), which this project's
development environment installs; this file only says where the project is.
"""

import sys
from pathlib import Path

try:
    from prh_ingest.regenerate import main
except ImportError as missing:
    print(f"error: {missing}: install this project's development dependencies", file=sys.stderr)
    sys.exit(2 if "--check" in sys.argv else 1)  # --check: 1 means "template update available"

if __name__ == "__main__":
    sys.exit(main(Path(__file__).resolve().parents[1], sys.argv[1:]))
