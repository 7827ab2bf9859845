"""`python -m benchmarks` (`make bench`): measure what the template makes fast, side by side
with what users would do instead, and write the figures to BENCHMARKS.md."""

import sys
from pathlib import Path

# The test helpers (baking, live services) are reused, not copied: tests/ holds the `support`
# package, so it goes on sys.path before any benchmark module imports it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
