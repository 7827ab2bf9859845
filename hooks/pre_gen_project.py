"""Validate every answer before cookiecutter writes a file.

Answers enter Python only through `tojson`, so quotes, `$(...)`, backticks and
newlines arrive as plain data. Each check prints one line and exits 1; cookiecutter
then removes the half-made project folder. Names and shared rules are the naming
contract's, prh_ingest.naming, imported from the template repository (contract/template.py).
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

ANSWERS: dict[str, Any] = json.loads(r"""{{ cookiecutter | tojson }}""")
TEMPLATE_FOLDER: str = json.loads(r'''{{ template_folder() | tojson }}''')  # a JSON string
sys.path.insert(0, TEMPLATE_FOLDER)  # this repository's contract/ (see contract/template.py)
import contract  # noqa: E402, F401 (puts this commit's prh-ingest/src first on sys.path)

# isort: split
from prh_ingest import naming  # noqa: E402
from prh_ingest.naming import Invalid  # noqa: E402

PROJECT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._&()-]*")
PYTHON_VERSION = re.compile(r"3\.(1[0-3])")
REQUIREMENT = re.compile(r"[a-z0-9][a-z0-9._-]*==[0-9][0-9a-z.]*")  # name==version, as pinned
# Where the engine comes from (pinned to this template's version of it): `index`, a git
# repository over https (its release tag), or a built wheel (tests); it becomes a requirement
# line and TOML text.
SETTING_LINE = re.compile(r"[A-Z][A-Z0-9_]*=[A-Za-z0-9_./{}$:-]*")  # a prefect/.env line
MAX_NAME = 80
MAX_SOURCES = 20


def text(key: str) -> str:
    value = ANSWERS.get(key)
    if not isinstance(value, str):
        raise Invalid(f"{key} must be text, got {value!r}")
    return value


def check_choice(key: str, choices: tuple[str, ...]) -> None:
    if text(key) not in choices:
        raise Invalid(f"{key} must be one of {', '.join(choices)}; got {text(key)!r}")


def check_extra_sources(slug: str, first: str) -> None:
    """{"<source>": "csv" | "xlsx"}: each becomes a flow, a setting and a table."""
    sources = naming.json_mapping("extra_sources", ANSWERS.get("extra_sources"))
    if len(sources) > MAX_SOURCES:
        raise Invalid(f"extra_sources has {len(sources)} sources; at most {MAX_SOURCES}")
    for name, source_format in sources.items():
        naming.check_slug("extra_sources key", name)
        if name == first:
            raise Invalid(f"extra_sources key {name!r} is already the source_name")
        if source_format not in ("xlsx", "csv"):
            raise Invalid(f"extra_sources[{name!r}] is {source_format!r}: csv or xlsx")
        naming.flow_name(slug, name)


def validate() -> None:
    naming.check_name("project_name", text("project_name"), PROJECT_NAME,
                      "letters, digits, spaces and . _ & ( ) -", MAX_NAME)
    slug = naming.check_slug("project_slug", text("project_slug"))
    source = naming.check_slug("source_name", text("source_name"))
    check_choice("source_format", ("xlsx", "csv"))
    check_choice("dependency_manager", ("pipenv", "uv", "none"))
    check_choice("database", ("sqlite", "postgresql"))
    if not isinstance(ANSWERS.get("use_s3"), bool):
        raise Invalid(f"use_s3 must be yes or no, got {ANSWERS.get('use_s3')!r}")
    naming.check_git_url("git_repo_url", text("git_repo_url"))
    naming.check_name("python_version", text("python_version"), PYTHON_VERSION,
                      "one of 3.10, 3.11, 3.12, 3.13", 4)
    # Computed values that become code, pins or settings lines: never anything else.
    for key in ("__ingest_requirements", "__dev_requirements"):
        if not all(REQUIREMENT.fullmatch(pin) for pin in text(key).split(" ")):
            raise Invalid(f"{key} must be pins (name==version) separated by spaces")
    for key in ("__manager_settings", "__s3_settings"):
        if not all(SETTING_LINE.fullmatch(line) for line in text(key).split()):
            raise Invalid(f"{key} must be NAME=value settings separated by spaces")
    naming.check_package_source("prh_ingest", text("prh_ingest"))
    check_extra_sources(slug, source)
    legacy = text("legacy_flow_name")
    if legacy:
        naming.check_flow_name("legacy_flow_name", legacy)
    naming.first_flow_name(slug, source, legacy)  # the flow's name fits the warehouse


if __name__ == "__main__":
    sys.exit(naming.exit_status(validate))
