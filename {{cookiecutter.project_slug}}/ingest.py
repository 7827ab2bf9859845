"""Load a source's export into the warehouse: `python ingest.py [SOURCE]` (default: {{ cookiecutter.source_name }}).

The loader is the prh-ingest package (pinned in this project's dependencies; what it reads,
its settings and exit codes: `python -m pydoc prh_ingest.load`). Your changes to the rows
(renames, type fixes, filters) go in transform.py, which template updates never touch.
"""

from __future__ import annotations

import sys

try:  # a module missing here is a broken install: one line, and the flow does not retry it
    from prh_ingest.load import main

    import transform
except ImportError as missing:
    print(f"error: ingest.py cannot start: {missing} (install requirements.txt into {sys.executable})", file=sys.stderr)
    sys.exit(69)  # EX_UNAVAILABLE: the flow does not retry it

PROJECT = "{{ cookiecutter.project_slug }}"
DEFAULT_SOURCE = "{{ cookiecutter.source_name }}"

if __name__ == "__main__":
    sys.exit(main(PROJECT, DEFAULT_SOURCE, transform.transform, sys.argv[1:]))
