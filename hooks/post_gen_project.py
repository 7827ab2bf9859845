"""Keep only the files of the chosen options, add the scripts every project carries (from
contract/, see contract/template.py), then print the next steps."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

ANSWERS: dict[str, Any] = json.loads(r"""{{ cookiecutter | tojson }}""")
TEMPLATE_FOLDER: str = json.loads(r'''{{ template_folder() | tojson }}''')  # a JSON string
sys.path.insert(0, TEMPLATE_FOLDER)  # this repository's contract/ (see contract/template.py)
import contract  # noqa: E402, F401 (puts this commit's prh-ingest/src first on sys.path)

# isort: split
from prh_ingest import naming  # noqa: E402

from contract.template import copy_project_scripts  # noqa: E402

# Files that belong to one option value only: the chosen value's stay, every other value's
# are removed. A pair is one plain file per value in the template, kept under one name.
FILES_BY_OPTION: dict[str, dict[object, list[str | tuple[str, str]]]] = {
    "dependency_manager": {
        "pipenv": [
            "Pipfile",
            ("prefect/sync-venv-pipenv.sh", "prefect/sync-venv.sh"),
            "prefect/shared-venv.sh",
        ],
        "uv": [
            "pyproject.toml",
            ".python-version",
            ("prefect/sync-venv-uv.sh", "prefect/sync-venv.sh"),
            "prefect/shared-venv.sh",
        ],
        "none": ["requirements.txt", "requirements-dev.txt"],
    },
    "source_format": {
        "xlsx": ["data/sample.xlsx"],
        "csv": ["data/sample.csv"],
    },
    "use_s3": {
        True: [("prefect/source_file-s3.py", "prefect/source_file.py")],
        False: [("prefect/source_file-local.py", "prefect/source_file.py")],
    },
}
SETTINGS_FILE = Path("prefect/.env")
REGENERATING = "PRH_TEMPLATE_REGENERATING"  # set by scripts/regenerate.py while cruft renders


def template_name(entry: str | tuple[str, str]) -> str:
    return entry if isinstance(entry, str) else entry[0]


def keep_chosen_files() -> None:
    """Remove the files of the values not chosen; give a chosen pair's file its kept name."""
    for option, files_by_value in FILES_BY_OPTION.items():
        chosen = files_by_value[ANSWERS[option]]
        every = {template_name(entry) for entries in files_by_value.values() for entry in entries}
        for name in every - {template_name(entry) for entry in chosen}:
            Path(name).unlink()
        for entry in chosen:
            if isinstance(entry, tuple):
                Path(entry[0]).rename(entry[1])

# Every source's flow file: the names only; what a flow does is the package's (prh_ingest.flow).
FLOW_FILE = '''"""Prefect flow `{flow_name}`: load the {source} export into the warehouse.

What the flow does is prh-ingest's, shared by every project's flows: prh_ingest.flow.

Run it locally:
    cd {slug}
    {setting}=$PWD/{sample} python prefect/{flow_name}.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from prefect import flow
from prh_ingest.flow import Project, load_source, run_as_script
from source_file import local_source_file

PROJECT = Project(
    slug="{slug}",
    folder=Path(__file__).resolve().parent.parent,
    # how this project's dependency manager runs ingest.py (prefect/sync-venv.sh: pipenv, uv)
    ingest_command={ingest_command},
)
FLOW_NAME = "{flow_name}"
SOURCE = "{source}"


@flow(name=FLOW_NAME, timeout_seconds=3600)
def {function}(accept_short_load: bool = False) -> None:
    """Load the file named by {setting} into {sink}.

    accept_short_load: let one short load that the row check refuses land (on this run)."""
    load_source(PROJECT, FLOW_NAME, SOURCE, local_source_file, accept_short_load)


if __name__ == "__main__":
    sys.exit(run_as_script({function}))
'''


def sources() -> dict[str, str]:
    """Each source's flow name: the first's from the answers (it may be a legacy name), the
    others' by the contract's `<slug>-<source>-ingest` rule."""
    slug, first = ANSWERS["project_slug"], ANSWERS["source_name"]
    extra = naming.json_mapping("extra_sources", ANSWERS["extra_sources"])
    return {
        first: naming.first_flow_name(slug, first, ANSWERS["legacy_flow_name"]),
        **{source: naming.flow_name(slug, source) for source in extra},
    }


def write_flow_files() -> None:
    slug = ANSWERS["project_slug"]
    for source, flow in sources().items():
        Path(f"prefect/{flow}.py").write_text(
            FLOW_FILE.format(
                flow_name=flow,
                function=naming.flow_function(flow),
                source=source,
                slug=slug,
                setting=naming.source_setting(slug, source),
                sink=naming.sink_setting(slug),
                sample=f"data/sample.{ANSWERS['source_format']}",
                ingest_command=json.dumps(ANSWERS["__ingest_command"]),
            )
        )


def write_source_settings() -> None:
    """Each extra source's `<PREFIX>_<SOURCE>_SOURCE_FILE` line, after the first source's
    (here, not in the template: the answer may be JSON text from the command line)."""
    slug = ANSWERS["project_slug"]
    extra = naming.json_mapping("extra_sources", ANSWERS["extra_sources"])
    lines = SETTINGS_FILE.read_text().splitlines(keepends=True)
    first = f"{naming.source_setting(slug, ANSWERS['source_name'])}="
    after = next(number for number, line in enumerate(lines) if line.startswith(first)) + 1
    lines[after:after] = [
        f"{naming.source_setting(slug, source)}=/srv/prh/landing/{slug}/{source}.{source_format}\n"
        for source, source_format in sorted(extra.items())
    ]
    SETTINGS_FILE.write_text("".join(lines))


def print_next_steps() -> None:
    slug, source = ANSWERS["project_slug"], ANSWERS["source_name"]
    first_flow, setting = sources()[source], naming.source_setting(slug, source)
    sample = f"data/sample.{ANSWERS['source_format']}"
    entries = "\n".join(
        f"    python prefect/prw_deploy.py --add "
        f"'{json.dumps(naming.warehouse_entry(flow, ANSWERS['git_repo_url']))}'"
        for flow in sources().values()
    )
    install = "\n".join(f"    {line}" for line in ANSWERS["__worker_install"].splitlines())
    print(
        f"""
Created {slug}/. Run the flow locally on the sample data:

    cd {slug} && {setting}=$PWD/{sample} python prefect/{first_flow}.py

Commit it with its .cruft.json (the answers and template commit `cruft create` records):

    cd {slug} && git init -b main && git add -A && git commit -m "From prh-ingest-template"

Made with plain cookiecutter? `python scripts/regenerate.py` says how to link it. From then
on `python scripts/regenerate.py` takes template updates; your own code goes in transform.py.

Push it to {ANSWERS["git_repo_url"]}, then register it in the warehouse repo
(from the warehouse folder, with a clean git tree):

{entries}

Each worker VM needs the flow's imports plus {ANSWERS["__worker_needs"]};
the warehouse's installer puts them there (on the VM, from the warehouse checkout):

{install}
"""
    )


if __name__ == "__main__":
    keep_chosen_files()
    copy_project_scripts(Path.cwd())
    write_flow_files()
    write_source_settings()
    if not os.environ.get(REGENERATING):  # scripts/regenerate.py prints its own report
        print_next_steps()
