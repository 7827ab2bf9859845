"""Validate every answer before cookiecutter writes a file.

Answers enter Python only through `tojson`, so quotes, `$(...)`, backticks and
newlines arrive as plain data. Each check prints one line and exits 1; cookiecutter
then removes the half-made project folder. Names and shared rules come from the naming
contract block (contract/naming.py in the template repository).
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

ANSWERS: dict[str, Any] = json.loads(r"""{{ cookiecutter | tojson }}""")

PROJECT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._&()-]*")
PYTHON_VERSION = re.compile(r"3\.(1[0-3])")
REQUIREMENT = re.compile(r"[a-z0-9][a-z0-9._-]*==[0-9][0-9a-z.]*")  # name==version, as pinned
SETTING_LINE = re.compile(r"[A-Z][A-Z0-9_]*=[A-Za-z0-9_./{}$:-]*")  # a prefect/.env line
MAX_NAME = 80
MAX_SOURCES = 20

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
    sources = json_mapping("extra_sources", ANSWERS.get("extra_sources"))
    if len(sources) > MAX_SOURCES:
        raise Invalid(f"extra_sources has {len(sources)} sources; at most {MAX_SOURCES}")
    for name, source_format in sources.items():
        check_slug("extra_sources key", name)
        if name == first:
            raise Invalid(f"extra_sources key {name!r} is already the source_name")
        if source_format not in ("xlsx", "csv"):
            raise Invalid(f"extra_sources[{name!r}] is {source_format!r}: csv or xlsx")
        flow_name(slug, name)


def validate() -> None:
    check_name("project_name", text("project_name"), PROJECT_NAME,
               "letters, digits, spaces and . _ & ( ) -", MAX_NAME)
    slug = check_slug("project_slug", text("project_slug"))
    source = check_slug("source_name", text("source_name"))
    check_choice("source_format", ("xlsx", "csv"))
    check_choice("dependency_manager", ("pipenv", "uv", "none"))
    check_choice("database", ("sqlite", "postgresql"))
    if not isinstance(ANSWERS.get("use_s3"), bool):
        raise Invalid(f"use_s3 must be yes or no, got {ANSWERS.get('use_s3')!r}")
    check_git_url("git_repo_url", text("git_repo_url"))
    check_name("python_version", text("python_version"), PYTHON_VERSION,
               "one of 3.10, 3.11, 3.12, 3.13", 4)
    # Computed values that become code, pins or settings lines: never anything else.
    for key in ("__ingest_requirements", "__dev_requirements"):
        if not all(REQUIREMENT.fullmatch(pin) for pin in text(key).split(" ")):
            raise Invalid(f"{key} must be pins (name==version) separated by spaces")
    for key in ("__manager_settings", "__s3_settings"):
        if not all(SETTING_LINE.fullmatch(line) for line in text(key).split()):
            raise Invalid(f"{key} must be NAME=value settings separated by spaces")
    check_extra_sources(slug, source)
    legacy = text("legacy_flow_name")
    if legacy:
        check_flow_name("legacy_flow_name", legacy)
    # Derived names are answers too (they can be overridden); they must follow the contract.
    for key, value in derived_names(slug, source, legacy).items():
        if text(key) != value:
            raise Invalid(f"{key} is derived and must be {value!r}; got {text(key)!r}")


def derived_names(slug: str, source: str, legacy_flow_name: str) -> dict[str, str]:
    """cookiecutter.json's private names, as the contract derives them. A runbook-era
    project may keep its flow's old name, so its deployment and run history stay."""
    flow = legacy_flow_name or flow_name(slug, source)
    return {
        "__env_prefix": env_prefix(slug),
        "__flow_name": flow,
        "__flow_function": flow_function(flow),
        "__source_key": source_key(slug, source),
        "__source_setting": source_setting(slug, source),
        "__sink_setting": sink_setting(slug),
        "__table_name": table_name(slug, source),
    }


def main() -> int:
    try:
        validate()
    except Invalid as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
