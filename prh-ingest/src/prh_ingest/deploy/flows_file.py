"""prefect/flows.json: the team's list of deployments, and the one set of rules an entry follows.

The warehouse template's hooks check the `flows` answer with these rules when a warehouse is
baked; the deploy tool checks the file with the same rules every time it reads it, offline
(`--dry-run` too), so a bad hand edit fails a pull request's CI with one line naming the entry
and the key. Nothing here imports Prefect: the hooks run where only cookiecutter is installed.
"""

from __future__ import annotations

import datetime
import json
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from cronsim import CronSim, CronSimError

from prh_ingest import naming
from prh_ingest.freshness import check_freshness
from prh_ingest.naming import Invalid, shown

DEFAULT_BRANCH = "main"
DEFAULT_LIMIT = 1  # runs of one project share a venv: never overlap them
# What each kind of value must fully match, and what the error line calls it.
PATTERNS: dict[str, tuple[str, str]] = {
    "branch": (r"[A-Za-z0-9][A-Za-z0-9._/-]{0,99}", "a plain git branch name"),
    "entrypoint": (
        r"[A-Za-z0-9_][A-Za-z0-9_./-]*\.py:[A-Za-z_][A-Za-z0-9_]*",
        "a relative path.py:function",
    ),
    "env_key": (r"[A-Za-z_][A-Za-z0-9_]{0,127}", "an environment variable name"),
    "env_value": (
        r"[A-Za-z0-9 _.,:/@%+=~?&-]{0,1000}",
        "plain text without quotes, $, backticks or backslashes",
    ),
    "parameter": (r"[A-Za-z_][A-Za-z0-9_]{0,127}", "a Python parameter name"),
}
# Env entries that must never be committed: secret-looking names, URLs with a password.
SECRET_SUFFIXES = ("PASSWORD", "SECRET", "TOKEN", "API_KEY")
URL_WITH_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*:[^/@\s]*@")
CRON_CHARS = re.compile(r"[0-9A-Za-z*/,#?L-]+( [0-9A-Za-z*/,#?L-]+){4}")
REQUIRED_KEYS = ("repo", "entrypoint", "cron")
OPTIONAL_KEYS = ("freshness", "source")  # written to flows.json only when set


@dataclass(frozen=True)
class FlowEntry:
    """One deployment: which flow to run (git repo, branch, entrypoint) and when."""

    deployment: str
    repo: str
    branch: str
    entrypoint: str
    cron: str
    timezone: str
    parameters: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    concurrency_limit: int = DEFAULT_LIMIT
    # Issue 27: how long the source may go without a load, and which source (slug/source).
    freshness: str = ""
    source: str = ""

    def fields(self) -> dict[str, Any]:
        """The entry as flows.json holds it (every key, its name outside; the optional
        freshness and source only when set)."""
        optional = {key for key in OPTIONAL_KEYS if not getattr(self, key)}
        return {
            key: value
            for key, value in asdict(self).items()
            if key != "deployment" and key not in optional
        }

    def slug_and_source(self) -> tuple[str, str]:
        """The project's slug and the source's name of an entry with `source`."""
        return naming.split_source_ref(self.source)


# --- the rules ----------------------------------------------------------------------------------


def require_str(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"{where}: expected a string, got {shown(value)}")
    return value


def check_matches(where: str, value: Any, pattern: str, expected: str) -> None:
    if not re.fullmatch(pattern, require_str(where, value)):
        raise Invalid(f"{where}: {shown(value)} is not {expected}")


def check_pattern(where: str, value: Any, kind: str) -> None:
    check_matches(where, value, *PATTERNS[kind])


def check_timezone(where: str, value: Any) -> None:
    text = require_str(where, value)
    if text not in zoneinfo.available_timezones():
        raise Invalid(f"{where}: {shown(value)} is not an IANA timezone such as America/New_York")


def check_cron(where: str, value: Any) -> None:
    """A 5-field cron, or "" for no schedule (the flow runs only when started)."""
    text = require_str(where, value)
    if text == "":
        return
    if not CRON_CHARS.fullmatch(text):
        raise Invalid(f"{where}: {shown(value)} is not a 5-field cron expression like '0 6 * * *'")
    try:
        CronSim(text, datetime.datetime(2000, 1, 1))
    except CronSimError as exc:
        raise Invalid(f"{where}: {shown(value)} is not a valid cron expression ({exc})") from None


def check_env(where: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise Invalid(f"{where}: expected a mapping of NAME to text, got {shown(value)}")
    for key, text in value.items():
        check_pattern(f"{where} key", key, "env_key")
        check_pattern(f"{where}[{key!r}]", text, "env_value")
        check_not_secret(f"{where}[{key!r}]", key, text)


def check_not_secret(where: str, key: str, text: str) -> None:
    """Deployment env is committed to the warehouse repo and shown in the Prefect UI."""
    if key.upper().endswith(SECRET_SUFFIXES) or URL_WITH_PASSWORD.search(text):
        raise Invalid(
            f"{where} looks like a secret: deployment env is committed and shown in the UI; "
            "put it in the worker's EnvironmentFile (/etc/prefect-worker/<pool>.env) "
            "or a Prefect Secret block"
        )


def check_parameters(where: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise Invalid(f"{where}: expected a mapping of parameter name to value, got {shown(value)}")
    for key in value:
        check_pattern(f"{where} key", key, "parameter")
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        raise Invalid(f"{where}: numbers must be finite") from None


def check_concurrency_limit(where: str, value: Any) -> None:
    # cookiecutter renders every answer inside a mapping as text, so 2 arrives as "2".
    if not re.fullmatch(r"[1-9][0-9]{0,3}", str(value)) or isinstance(value, bool):
        raise Invalid(f"{where}: {shown(value)} is not a positive whole number")


def check_relative(where: str, value: Any, kind: str) -> None:
    """A branch or a path inside the repo: its pattern, and never a step up."""
    check_pattern(where, value, kind)
    if ".." in value:
        raise Invalid(f"{where}: {shown(value)} must not contain '..'")


CHECKS: dict[str, Callable[[str, Any], None]] = {
    "repo": naming.check_git_url,
    "branch": partial(check_relative, kind="branch"),
    "entrypoint": partial(check_relative, kind="entrypoint"),
    "cron": check_cron,
    "timezone": check_timezone,
    "parameters": check_parameters,
    "env": check_env,
    "concurrency_limit": check_concurrency_limit,
    "freshness": check_freshness,
    "source": naming.check_source_ref,
}


def check_entry(name: Any, entry: Any, where: str = "flows") -> None:
    """One entry of *where* (the `flows` answer, or the file): the first problem, as Invalid."""
    naming.check_flow_name(f"{where} key", name)
    at = f"{where}[{name!r}]"
    if not isinstance(entry, dict):
        raise Invalid(f"{at}: expected a mapping with repo, entrypoint and cron")
    unknown = sorted(set(entry) - set(CHECKS))
    if unknown:
        raise Invalid(f"{at}: unknown key(s) {', '.join(map(shown, unknown))}")
    missing = [key for key in REQUIRED_KEYS if key not in entry]
    if missing:
        raise Invalid(f"{at}: missing {', '.join(missing)}")
    for key, value in entry.items():
        CHECKS[key](f"{at}.{key}", value)
    if "freshness" in entry and "source" not in entry:
        raise Invalid(
            f"{at}.freshness: needs the entry's source too, its project slug and source "
            "name as 'clinic-cal/epic'"
        )


def check_flows(value: Any, where: str = "flows") -> dict[str, Any]:
    """Every entry of a `flows` mapping (a dict, or JSON text from the command line)."""
    flows = naming.json_mapping(where, value)
    for name, entry in flows.items():
        check_entry(name, entry, where)
    return flows


# --- the file -----------------------------------------------------------------------------------


def completed(flows: dict[str, Any], timezone: str) -> dict[str, dict[str, Any]]:
    """Every field of every (checked) entry, in name order (and its env and parameters too:
    the same entries give the same file however they were given); numbers as numbers."""
    return {
        name: FlowEntry(
            deployment=name,
            repo=entry["repo"],
            branch=entry.get("branch", DEFAULT_BRANCH),
            entrypoint=entry["entrypoint"],
            cron=entry["cron"],
            timezone=entry.get("timezone", timezone),
            parameters=dict(sorted(entry.get("parameters", {}).items())),
            env=dict(sorted(entry.get("env", {}).items())),
            concurrency_limit=int(entry.get("concurrency_limit", DEFAULT_LIMIT)),
            freshness=entry.get("freshness", ""),
            source=entry.get("source", ""),
        ).fields()
        for name, entry in sorted(flows.items())
    }


def dumps(flows: dict[str, dict[str, Any]]) -> str:
    """flows.json's text, as the warehouse hook first writes it and --add/--remove keep it."""
    return json.dumps(flows, indent=2) + "\n"


def read(path: Path) -> dict[str, Any]:
    """The file's checked entries as written (Invalid names the first problem)."""
    where = shown_path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise Invalid(f"{where}: cannot read it ({exc.strerror})") from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise Invalid(f"{where} is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise Invalid(f"{where} must hold a JSON object of deployments, got {shown(value)}")
    return check_flows(value, where)


def shown_path(path: Path) -> str:
    """How messages name the file: prefect/flows.json, as the team knows it."""
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def load(path: Path, timezone: str = "UTC") -> list[FlowEntry]:
    """flows.json, checked: each deployment's entry with every field filled in, in file order."""
    flows = read(path)
    every = completed(flows, timezone)
    return [FlowEntry(deployment=name, **every[name]) for name in flows]


def add(path: Path, texts: list[str], timezone: str) -> list[str]:
    """Add (or replace) the entries of each of *texts*, a JSON object as an ingest project
    prints it; the file is written once, only when every entry passes. Returns the names."""
    entries: dict[str, Any] = {}
    for text in texts:
        if any(marker in text for marker in ("{{", "{%", "{#")):
            raise Invalid("--add must not contain template markers ({{, {%, {#)")
        entries |= check_flows(text, "--add")
    flows = read(path) | entries
    path.write_text(dumps(completed(flows, timezone)))
    return sorted(entries)


def remove(path: Path, names: list[str], timezone: str) -> None:
    """Remove the named entries; an unknown name changes nothing."""
    flows = read(path)
    for name in names:
        if name not in flows:
            have = ", ".join(flows) or "none"
            raise Invalid(f"--remove {name}: no such flow (have: {have})")
    kept = {name: entry for name, entry in flows.items() if name not in names}
    path.write_text(dumps(completed(kept, timezone)))
