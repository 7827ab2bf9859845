"""Keep only the files of the chosen options, then print the next steps."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

ANSWERS: dict[str, Any] = json.loads(r"""{{ cookiecutter | tojson }}""")

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


# --- naming contract (one block, the same in every hook and script of both templates) ---
SLUG = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")  # lowercase words joined by -
SLUG_HINT = "lowercase words joined by '-', e.g. clinic-cal"
FLOW = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")  # a flow = its deployment's name
FLOW_HINT = "lowercase words joined by '-' or '_', starting with a letter"
MAX_SLUG = 40  # a project, source, warehouse or work pool name
MAX_FLOW = 63  # a flow and deployment name, derived or kept from the runbook era
FLOW_SUFFIX = "-ingest"
DEFAULT_CRON = "0 6 * * *"
# https/ssh/file URLs, scp-style user@host:path or an absolute path; never a password.
GIT_URL = re.compile(
    r"(?:https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?/"
    r"|ssh://(?:[A-Za-z0-9._-]+@)?[A-Za-z0-9.-]+(?::[0-9]{1,5})?/"
    r"|file:///"
    r"|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:"
    r"|/)"
    r"[A-Za-z0-9._~+-][A-Za-z0-9._~/+-]*"
)
GIT_URL_HINT = (
    "https://host/org/repo.git, ssh://[user@]host/org/repo.git, git@host:org/repo.git "
    "or /path/to/repo.git, without credentials or '..'"
)


class Invalid(ValueError):
    """An answer breaks the contract; the message is one line naming it."""


def shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_name(where: str, value: object, pattern: re.Pattern[str], hint: str, most: int) -> str:
    if not isinstance(value, str):
        raise Invalid(f"{where} must be text, got {shown(value)}")
    if len(value) > most:
        raise Invalid(f"{where} is {len(value)} characters long; at most {most} allowed")
    if not pattern.fullmatch(value):
        raise Invalid(f"{where} {shown(value)} is not valid: {hint}")
    return value


def check_slug(where: str, value: object) -> str:
    return check_name(where, value, SLUG, SLUG_HINT, MAX_SLUG)


def check_flow_name(where: str, value: object) -> str:
    return check_name(where, value, FLOW, FLOW_HINT, MAX_FLOW)


def check_git_url(where: str, value: object) -> str:
    if not isinstance(value, str) or not GIT_URL.fullmatch(value) or ".." in value:
        raise Invalid(f"{where} {shown(value)} is not a git URL: use {GIT_URL_HINT}")
    return value


def json_mapping(where: str, value: object) -> dict[str, Any]:
    """A mapping answer: a dict from cookiecutter.json or a prompt, JSON text from the CLI."""
    if isinstance(value, str):
        try:
            value = json.loads(value or "{}")
        except ValueError as exc:
            problem = f"{shown(value)} is not JSON ({exc})"
            raise Invalid(f"{where} must be a JSON object; {problem}") from None
    if not isinstance(value, dict):
        raise Invalid(f"{where} must be a JSON object, got {shown(value)}")
    return value


def flow_name(slug: str, source: str) -> str:
    """`clinic-cal` + `epic` -> `clinic-cal-epic-ingest`, checked to fit the warehouse."""
    name = f"{slug}-{source}{FLOW_SUFFIX}"
    if len(name) > MAX_FLOW:
        raise Invalid(
            f"source {source!r} of project {slug!r} makes the flow name {name!r}, "
            f"{len(name)} characters long; at most {MAX_FLOW} allowed: shorten either"
        )
    return name


def flow_function(flow: str) -> str:
    return flow.replace("-", "_")


def flow_entrypoint(flow: str) -> str:
    return f"prefect/{flow}.py:{flow_function(flow)}"


def env_prefix(slug: str) -> str:
    return slug.upper().replace("-", "_")


def source_key(slug: str, source: str) -> str:
    return f"{env_prefix(slug)}_{source.upper().replace('-', '_')}"


def source_setting(slug: str, source: str) -> str:
    return f"{source_key(slug, source)}_SOURCE_FILE"


def sink_setting(slug: str) -> str:
    return f"{env_prefix(slug)}_DATABASE_URL"


def table_name(slug: str, source: str) -> str:
    return f"{slug}_{source}".replace("-", "_")


def venv_name(slug: str) -> str:
    return f"prefect-{slug}"


def warehouse_entry(flow: str, repo: str) -> dict[str, dict[str, str]]:
    """What an ingest project prints and the warehouse's `flows` answer takes as is."""
    return {flow: {"repo": repo, "entrypoint": flow_entrypoint(flow), "cron": DEFAULT_CRON}}


# --- end of naming contract ---


# Every source's flow file: the names only; what a flow does is prefect/ingest_flow.py's.
FLOW_FILE = '''"""Prefect flow `{flow_name}`: load the {source} export into the warehouse.

What the flow does is the template's, shared by the project's flows: prefect/ingest_flow.py.

Run it locally:
    cd {slug}
    {setting}=$PWD/{sample} python prefect/{flow_name}.py
"""

from __future__ import annotations

import sys

from ingest_flow import load_source, run_as_script
from prefect import flow

FLOW_NAME = "{flow_name}"
SOURCE = "{source}"


@flow(name=FLOW_NAME, timeout_seconds=3600)
def {function}() -> None:
    """Load the file named by {setting} into {sink}."""
    load_source(FLOW_NAME, SOURCE)


if __name__ == "__main__":
    sys.exit(run_as_script({function}))
'''


def sources() -> dict[str, str]:
    """Each source's flow name: the first's from the answers (it may be a legacy name), the
    others' by the contract's `<slug>-<source>-ingest` rule."""
    slug = ANSWERS["project_slug"]
    extra = json_mapping("extra_sources", ANSWERS["extra_sources"])
    return {
        str(ANSWERS["source_name"]): str(ANSWERS["__flow_name"]),
        **{source: flow_name(slug, source) for source in extra},
    }


def write_flow_files() -> None:
    slug = ANSWERS["project_slug"]
    for source, flow in sources().items():
        Path(f"prefect/{flow}.py").write_text(
            FLOW_FILE.format(
                flow_name=flow,
                function=flow_function(flow),
                source=source,
                slug=slug,
                setting=source_setting(slug, source),
                sink=sink_setting(slug),
                sample=f"data/sample.{ANSWERS['source_format']}",
            )
        )


def write_source_settings() -> None:
    """Each extra source's `<PREFIX>_<SOURCE>_SOURCE_FILE` line, after the first source's
    (here, not in the template: the answer may be JSON text from the command line)."""
    slug = ANSWERS["project_slug"]
    extra = json_mapping("extra_sources", ANSWERS["extra_sources"])
    lines = SETTINGS_FILE.read_text().splitlines(keepends=True)
    first = f"{ANSWERS['__source_setting']}="
    after = next(number for number, line in enumerate(lines) if line.startswith(first)) + 1
    lines[after:after] = [
        f"{source_setting(slug, source)}=/srv/prh/landing/{slug}/{source}.{source_format}\n"
        for source, source_format in sorted(extra.items())
    ]
    SETTINGS_FILE.write_text("".join(lines))


def print_next_steps() -> None:
    slug, first_flow = ANSWERS["project_slug"], ANSWERS["__flow_name"]
    sample = f"data/sample.{ANSWERS['source_format']}"
    entries = "\n".join(
        f"    python scripts/regenerate.py --add "
        f"'{json.dumps(warehouse_entry(flow, ANSWERS['git_repo_url']))}'"
        for flow in sources().values()
    )
    print(
        f"""
Created {slug}/. Run the flow locally on the sample data:

    cd {slug} && {ANSWERS["__source_setting"]}=$PWD/{sample} python prefect/{first_flow}.py

Commit it with its .cruft.json (the answers and template commit `cruft create` records):

    cd {slug} && git init -b main && git add -A && git commit -m "From prh-ingest-template"

Made with plain cookiecutter? `python scripts/regenerate.py` says how to link it. From then
on `python scripts/regenerate.py` takes template updates; your own code goes in transform.py.

Push it to {ANSWERS["git_repo_url"]}, then register it in the warehouse repo
(from the warehouse folder, with a clean git tree):

{entries}
"""
    )


if __name__ == "__main__":
    keep_chosen_files()
    write_flow_files()
    write_source_settings()
    if not os.environ.get(REGENERATING):  # scripts/regenerate.py prints its own report
        print_next_steps()
