"""The naming contract between the two templates: one owner for every derived name and
every rule a shared answer follows.

An ingest project prints the warehouse entry of each of its flows; the warehouse accepts
it as is. Both sides check names and git URLs with the same rules, from this one module:
the hooks of both templates import it from the template repository (contract/template.py
says how a hook reaches it), the templates' files render their names through it (the
filters of prh_ingest.jinja), and a project's scripts/regenerate.py runs on it through
prh_ingest.regenerate. Tests, scripts/ and benchmarks/ import it as `from prh_ingest import naming`.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from typing import Any

# --- naming contract ---
SLUG = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")  # lowercase words joined by -
SLUG_HINT = "lowercase words joined by '-', e.g. clinic-cal"
FLOW = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")  # a flow = its deployment's name
FLOW_HINT = "lowercase words joined by '-' or '_', starting with a letter"
MAX_SLUG = 40  # a project, source, warehouse or work pool name
MAX_FLOW = 63  # a flow and deployment name, derived or kept from the runbook era
POSTGRESQL_NAME_LENGTH = 63  # what PostgreSQL keeps of a table or index name
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


def exit_status(check: Callable[[], object]) -> int:
    """A hook's exit status: 0 once *check* passes, 1 after printing its Invalid as one
    `error: ...` line (cookiecutter then removes the half-made folder)."""
    try:
        check()
    except Invalid as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


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


def first_flow_name(slug: str, source: str, legacy_flow_name: str = "") -> str:
    """A project's first flow: a runbook-era project may keep its flow's old name, so its
    deployment and run history stay; otherwise `<slug>-<source>-ingest`."""
    return legacy_flow_name or flow_name(slug, source)


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


def part_table_name(slug: str, source: str, part: str) -> str:
    """A message format's table for one part of its messages: `<table>_<part lowercase>`
    (an HL7 segment id such as PID, a FHIR resource type such as Observation)."""
    return f"{table_name(slug, source)}_{part.lower()}"


def venv_name(slug: str) -> str:
    return f"prefect-{slug}"


def warehouse_entry(flow: str, repo: str) -> dict[str, dict[str, str]]:
    """What an ingest project prints and the warehouse's `flows` answer takes as is."""
    return {flow: {"repo": repo, "entrypoint": flow_entrypoint(flow), "cron": DEFAULT_CRON}}


# --- end of naming contract ---


def loads_artifact_key(slug: str, source: str) -> str:
    """The Prefect table artifact key of a source's loads (`clinic-cal-epic-loads`): its
    history on the Artifacts page. Keys take lowercase letters, digits and dashes only."""
    return f"{slug}-{source}-loads"


def load_failures_artifact_key(slug: str, source: str) -> str:
    """The markdown artifact key of a source's failed loads (`clinic-cal-epic-load-failures`)."""
    return f"{slug}-{source}-load-failures"


def warehouse_tag(warehouse_slug: str) -> str:
    """The tag on every deployment a warehouse creates: its --prune deletes only these."""
    return f"warehouse:{warehouse_slug}"


def source_resource(slug: str, source: str) -> str:
    """The Prefect event resource of one source (`prh.source.clinic-cal-epic`): its
    prh.ingest.* events and its freshness automation match on it."""
    return f"prh.source.{slug}-{source}"


def row_check_setting(slug: str, source: str) -> str:
    """`<PREFIX>_<SOURCE>_ROW_CHECK`: refuse, warn or off (issue 27)."""
    return f"{source_key(slug, source)}_ROW_CHECK"


def min_rows_ratio_setting(slug: str, source: str) -> str:
    """`<PREFIX>_<SOURCE>_MIN_ROWS_RATIO`: the share of the usual rows a load must reach."""
    return f"{source_key(slug, source)}_MIN_ROWS_RATIO"


def accept_short_load_setting(slug: str, source: str) -> str:
    """`<PREFIX>_<SOURCE>_ACCEPT_SHORT_LOAD`: `1` lets one refused short load land (the flow
    sets it from its `accept_short_load` parameter, for that run only)."""
    return f"{source_key(slug, source)}_ACCEPT_SHORT_LOAD"


SOURCE_REF_HINT = "the project slug and source name as 'clinic-cal/epic'"


def check_source_ref(where: str, value: object) -> str:
    """A warehouse entry's `source`, `<project slug>/<source>`: a flow name such as
    `clinic-cal-epic-ingest` cannot say where the slug ends, and a runbook-era flow keeps an
    old name, so the entry names both (its freshness automation and --status need them)."""
    if not isinstance(value, str) or value.count("/") != 1:
        raise Invalid(f"{where}: {shown(value)} is not {SOURCE_REF_HINT}")
    slug, source = value.split("/")
    check_slug(f"{where} (project slug)", slug)
    check_slug(f"{where} (source name)", source)
    return value


def split_source_ref(value: str) -> tuple[str, str]:
    slug, source = value.split("/")
    return slug, source


def freshness_automation_name(deployment: str) -> str:
    """The automation that reports a deployment's source as late (`freshness-<deployment>`)."""
    return f"freshness-{deployment}"


def late_runs_automation_name(warehouse_slug: str) -> str:
    """The automation that reports a warehouse's flow runs that went Late."""
    return f"late-runs-{warehouse_slug}"


# --- merge by key and bad rows (issue 28) ---
def key_setting(slug: str, source: str) -> str:
    """LOAD_MODE=merge: the key's header names, comma-separated, as the file spells them."""
    return f"{source_key(slug, source)}_KEY"


def duplicate_keys_setting(slug: str, source: str) -> str:
    """A key repeated within one file: `refuse` (the default) or `last` (the later row wins)."""
    return f"{source_key(slug, source)}_DUPLICATE_KEYS"


def bad_rows_setting(slug: str, source: str) -> str:
    """Rows that cannot be read: `refuse` (the default) or `quarantine` (into <table>_rejects)."""
    return f"{source_key(slug, source)}_BAD_ROWS"


def max_bad_rows_setting(slug: str, source: str) -> str:
    """BAD_ROWS=quarantine: how many bad rows a file may have, a count or a percent (`1%`)."""
    return f"{source_key(slug, source)}_MAX_BAD_ROWS"


def history_table(table: str) -> str:
    """LOAD_MODE=merge: where the rows a merge replaced are kept."""
    return f"{table}_history"


def rejects_table(table: str) -> str:
    """BAD_ROWS=quarantine: the rows set aside, raw line and all."""
    return f"{table}_rejects"


def load_id_index(table: str) -> str:
    """LOAD_MODE file and merge: the index on `_load_id`, cut to the 63 characters PostgreSQL
    keeps of a name (it would cut it so itself), so the loader finds it by this name."""
    return f"ix_{table}__load_id"[:POSTGRESQL_NAME_LENGTH]


# --- where a project or a warehouse gets this package (their `prh_ingest` answer) ---
PACKAGE = "prh-ingest"
PACKAGE_SOURCE = re.compile(r"index|git\+https://[^\s\"'@#\\]+|(?:file|https)://[^\s\"'#\\]+\.whl")
PACKAGE_SOURCE_HINT = (
    "index (your package index), a git+https:// repository URL without credentials (this "
    "repository: its release tag is added), or a wheel's file:// or https:// URL"
)


def check_package_source(where: str, value: object) -> str:
    """The `prh_ingest` answer: where the package comes from (PACKAGE_SOURCE)."""
    if not isinstance(value, str) or not PACKAGE_SOURCE.fullmatch(value) or ".." in value:
        raise Invalid(f"{where} {shown(value)} is not a package source: use {PACKAGE_SOURCE_HINT}")
    return value


def package_requirement(source: str, version: str, extra: str = "") -> str:
    """The pip requirement line a `prh_ingest` answer gives, pinned to *version*: from the
    index by version, from the repository at its tag `v<version>`, or the wheel itself."""
    name = f"{PACKAGE}[{extra}]" if extra else PACKAGE
    if source == "index":
        return f"{name}=={version}"
    if source.startswith("git+"):
        return f"{name} @ {source}@v{version}#subdirectory={PACKAGE}"
    return f"{name} @ {source}"


def pipfile_entry(source: str, version: str, extra: str = "") -> str:
    """The same as package_requirement(), as a Pipfile's inline table."""
    extras = f', extras = ["{extra}"]' if extra else ""
    if source == "index":
        return f'{{version = "=={version}"{extras}}}'
    if source.startswith("git+"):
        repository = source.removeprefix("git+")
        return (
            f'{{git = "{repository}", ref = "v{version}", subdirectory = "{PACKAGE}"{extras}}}'
        )
    return f'{{file = "{source}"{extras}}}'
