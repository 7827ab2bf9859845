"""The template repository's own glue for its hooks (see template.py).

Importing it puts this checkout's engine package source, prh-ingest/src, first on sys.path,
so a hook (rendered from the template at the commit being rendered, by cookiecutter or cruft)
imports that commit's `prh_ingest.naming`, never another installed version.
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE_SOURCE = str(Path(__file__).resolve().parents[1] / "prh-ingest" / "src")
if PACKAGE_SOURCE not in sys.path:
    sys.path.insert(0, PACKAGE_SOURCE)
