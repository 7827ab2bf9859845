"""Write prefect/flows.json (the `flows` answer with every default filled in) and add the
scripts every project carries (from contract/, see contract/template.py).

The answer is a mapping in cookiecutter.json and .cruft.json, or JSON text when it was
given on cookiecutter's command line; pre_gen_project.py has checked it either way.
prw_deploy.py reads the file, so the code that deploys carries no template logic.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ANSWERS: dict[str, Any] = json.loads(r"""{{ cookiecutter | tojson }}""")
TEMPLATE_FOLDER: str = json.loads(r'''{{ template_folder() | tojson }}''')  # a JSON string
sys.path.insert(0, TEMPLATE_FOLDER)  # holds contract/, a link to the repository's
import contract  # noqa: E402, F401 (puts this commit's prh-ingest/src first on sys.path)

# isort: split
from prh_ingest import naming  # noqa: E402

from contract.template import copy_project_scripts  # noqa: E402

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
    flows = naming.json_mapping("flows", ANSWERS["flows"])  # or JSON text from the command line
    entries = flow_entries(flows, ANSWERS["timezone"])
    FLOWS_FILE.write_text(json.dumps(entries, indent=2) + "\n")
    copy_project_scripts(Path.cwd())
