"""Keep only the files of the chosen options, then print the next steps."""

from __future__ import annotations

import json
import os
from pathlib import Path

ANSWERS: dict[str, object] = json.loads(r"""{{ cookiecutter | tojson }}""")

# Files that belong to one option value only; every other value's files are removed.
FILES_BY_OPTION: dict[str, dict[object, list[str]]] = {
    "dependency_manager": {
        "pipenv": ["Pipfile"],
        "uv": ["pyproject.toml", ".python-version"],
        "none": ["requirements.txt", "requirements-dev.txt"],
    },
    "source_format": {
        "xlsx": ["data/sample.xlsx"],
        "csv": ["data/sample.csv"],
    },
}
SYNC_SCRIPT = Path("prefect/sync-venv.sh")  # the dependency step, pipenv and uv only
DEFAULT_CRON = "0 6 * * *"
REGENERATING = "PRH_TEMPLATE_REGENERATING"  # set by scripts/regenerate.py while cruft renders


def remove_unselected_files() -> None:
    for option, files_by_value in FILES_BY_OPTION.items():
        for value, files in files_by_value.items():
            if value != ANSWERS[option]:
                for name in files:
                    Path(name).unlink()


def remove_sync_script_without_manager() -> None:
    if ANSWERS["dependency_manager"] == "none":
        SYNC_SCRIPT.unlink()


def warehouse_entry() -> str:
    flow_name = str(ANSWERS["__flow_name"])
    entry = {
        flow_name: {
            "repo": ANSWERS["git_repo_url"],
            "entrypoint": f"prefect/{flow_name}.py:{ANSWERS['__flow_function']}",
            "cron": DEFAULT_CRON,
        }
    }
    return json.dumps(entry)


def print_next_steps() -> None:
    slug, flow_name = ANSWERS["project_slug"], ANSWERS["__flow_name"]
    sample = f"data/sample.{ANSWERS['source_format']}"
    print(
        f"""
Created {slug}/. Run the flow locally on the sample data:

    cd {slug} && {ANSWERS["__source_setting"]}=$PWD/{sample} python prefect/{flow_name}.py

Commit it with its .cruft.json (the answers and template commit `cruft create` records):

    cd {slug} && git init -b main && git add -A && git commit -m "From prh-ingest-template"

Made with plain cookiecutter? `python scripts/regenerate.py` says how to link it. From then
on `python scripts/regenerate.py` takes template updates; your own code goes in transform.py.

Push it to {ANSWERS["git_repo_url"]}, then register it in the warehouse repo
(from the warehouse folder, with a clean git tree):

    python scripts/regenerate.py --add '{warehouse_entry()}'
"""
    )


if __name__ == "__main__":
    remove_unselected_files()
    remove_sync_script_without_manager()
    if not os.environ.get(REGENERATING):  # scripts/regenerate.py prints its own report
        print_next_steps()
