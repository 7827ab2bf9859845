"""Write the first prefect/flows.json (the `flows` answer with every default filled in) and
add the scripts every project carries (from contract/, see contract/template.py).

The answer is a mapping in cookiecutter.json and .cruft.json, or JSON text when it was
given on cookiecutter's command line; pre_gen_project.py has checked it either way. From
then on flows.json is the team's file (template updates skip it): prw_deploy.py --add and
--remove edit it, with the same rules and layout (prh_ingest.deploy.flows_file).
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
from prh_ingest.deploy import flows_file  # noqa: E402

from contract.template import copy_project_scripts  # noqa: E402

FLOWS_FILE = Path("prefect/flows.json")


if __name__ == "__main__":
    flows = naming.json_mapping("flows", ANSWERS["flows"])  # or JSON text from the command line
    FLOWS_FILE.write_text(flows_file.dumps(flows_file.completed(flows, ANSWERS["timezone"])))
    copy_project_scripts(Path.cwd())
