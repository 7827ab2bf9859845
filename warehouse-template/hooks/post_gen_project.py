"""Write prefect/flows.json: the `flows` answer with every default filled in.

The answer is a mapping in cookiecutter.json and .cruft.json, or JSON text when it was
given on cookiecutter's command line; pre_gen_project.py has checked it either way.
prw_deploy.py reads the file, so the code that deploys carries no template logic.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ANSWERS: dict[str, Any] = json.loads(r"""{{ cookiecutter | tojson }}""")
FLOWS_FILE = Path("prefect/flows.json")


def flow_entries(flows: dict[str, Any], timezone: str) -> dict[str, dict[str, Any]]:
    """Every field of every deployment, in name order; numbers as numbers."""
    return {
        name: {
            "repo": entry["repo"],
            "branch": entry.get("branch", "main"),
            "entrypoint": entry["entrypoint"],
            "cron": entry["cron"],
            "timezone": entry.get("timezone", timezone),
            "parameters": entry.get("parameters", {}),
            "env": entry.get("env", {}),
            "concurrency_limit": int(entry.get("concurrency_limit", 1)),
        }
        for name, entry in sorted(flows.items())
    }


if __name__ == "__main__":
    flows = ANSWERS["flows"]
    if isinstance(flows, str):  # JSON text from the command line
        flows = json.loads(flows or "{}")
    entries = flow_entries(flows, ANSWERS["timezone"])
    FLOWS_FILE.write_text(json.dumps(entries, indent=2) + "\n")
