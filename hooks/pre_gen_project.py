"""Validate every answer before cookiecutter writes a file.

Answers enter Python only through `tojson`, so quotes, `$(...)`, backticks and
newlines arrive as plain data. Each check prints one line and exits 1; cookiecutter
then removes the half-made project folder.
"""

from __future__ import annotations

import json
import re
import sys

ANSWERS: dict[str, object] = json.loads(r"""{{ cookiecutter | tojson }}""")

WORDS = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")  # lowercase words joined by -
PROJECT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._&()-]*")
PYTHON_VERSION = re.compile(r"3\.(1[0-3])")
REQUIREMENT = re.compile(r"[a-z0-9][a-z0-9._-]*==[0-9][0-9a-z.]*")  # name==version, as pinned
GIT_URL = re.compile(r"(?:https://|ssh://|file:///|git@[A-Za-z0-9.-]+:|/)[A-Za-z0-9._~/@:+-]+\.git")
MAX_SLUG = 40
MAX_NAME = 80
MAX_SOURCES = 20
MAX_FLOW_NAME = 63  # a Prefect deployment name in the warehouse


class InvalidAnswer(ValueError):
    """An answer that would make an unsafe or broken project."""


def text(key: str) -> str:
    value = ANSWERS.get(key)
    if not isinstance(value, str):
        raise InvalidAnswer(f"{key} must be text, got {value!r}")
    return value


def check_pattern(key: str, pattern: re.Pattern[str], hint: str, max_len: int) -> None:
    value = text(key)
    if len(value) > max_len:
        raise InvalidAnswer(f"{key} is {len(value)} characters long; at most {max_len} allowed")
    if not pattern.fullmatch(value):
        raise InvalidAnswer(f"{key} {value!r} is not valid: {hint}")


def check_choice(key: str, choices: tuple[str, ...]) -> None:
    if text(key) not in choices:
        raise InvalidAnswer(f"{key} must be one of {', '.join(choices)}; got {text(key)!r}")


def check_git_url(key: str) -> None:
    value = text(key)
    if not GIT_URL.fullmatch(value) or "/../" in value or "/./" in value:
        raise InvalidAnswer(
            f"{key} {value!r} is not a git URL: use https://host/org/repo.git, "
            "ssh://..., git@host:org/repo.git or an absolute path ending in .git"
        )


def check_extra_sources(sources: object, first: str) -> None:
    """{"<source>": "csv" | "xlsx"}: each becomes a flow, a setting and a table."""
    if not isinstance(sources, dict):
        raise InvalidAnswer(f"extra_sources must be a JSON object source: format; got {sources!r}")
    if len(sources) > MAX_SOURCES:
        raise InvalidAnswer(f"extra_sources has {len(sources)} sources; at most {MAX_SOURCES}")
    for name, source_format in sources.items():
        if len(name) > MAX_SLUG or not WORDS.fullmatch(name):
            raise InvalidAnswer(f"extra_sources key {name!r}: lowercase words joined by '-'")
        if name == first:
            raise InvalidAnswer(f"extra_sources key {name!r} is already the source_name")
        if source_format not in ("xlsx", "csv"):
            raise InvalidAnswer(f"extra_sources[{name!r}] is {source_format!r}: csv or xlsx")


def validate() -> None:
    check_pattern("project_name", PROJECT_NAME, "letters, digits, spaces and . _ & ( ) -", MAX_NAME)
    check_pattern("project_slug", WORDS, "lowercase words joined by '-', e.g. clinic-cal", MAX_SLUG)
    check_pattern("source_name", WORDS, "lowercase words joined by '-', e.g. epic", MAX_SLUG)
    check_choice("source_format", ("xlsx", "csv"))
    check_choice("dependency_manager", ("pipenv", "uv", "none"))
    check_choice("database", ("sqlite", "postgresql"))
    if not isinstance(ANSWERS.get("use_s3"), bool):
        raise InvalidAnswer(f"use_s3 must be yes or no, got {ANSWERS.get('use_s3')!r}")
    check_git_url("git_repo_url")
    check_pattern("python_version", PYTHON_VERSION, "one of 3.10, 3.11, 3.12, 3.13", 4)
    requirements = text("__ingest_requirements").split(" ")
    if not all(REQUIREMENT.fullmatch(requirement) for requirement in requirements):
        raise InvalidAnswer(
            "__ingest_requirements must be pins (name==version) separated by spaces"
        )
    check_extra_sources(ANSWERS.get("extra_sources"), text("source_name"))
    if text("legacy_flow_name"):
        check_pattern("legacy_flow_name", WORDS, "lowercase words joined by '-'", MAX_FLOW_NAME)
    # Derived names are answers too (they can be overridden); they must follow the contract.
    names = derived_names(text("project_slug"), text("source_name"), text("legacy_flow_name"))
    for key, value in names.items():
        if text(key) != value:
            raise InvalidAnswer(f"{key} is derived and must be {value!r}; got {text(key)!r}")


def derived_names(slug: str, source: str, legacy_flow_name: str = "") -> dict[str, str]:
    """The names ARCHITECTURE.md derives from the slug and the source. A runbook-era
    project may keep its flow's old name, so its deployment and run history stay."""
    prefix = slug.upper().replace("-", "_")
    source_key = f"{prefix}_{source.upper().replace('-', '_')}"
    flow_name = legacy_flow_name or f"{slug}-{source}-ingest"
    return {
        "__env_prefix": prefix,
        "__flow_name": flow_name,
        "__flow_function": flow_name.replace("-", "_"),
        "__source_key": source_key,
        "__source_setting": f"{source_key}_SOURCE_FILE",
        "__sink_setting": f"{prefix}_DATABASE_URL",
        "__table_name": f"{slug}_{source}".replace("-", "_"),
    }


def main() -> int:
    try:
        validate()
    except InvalidAnswer as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
