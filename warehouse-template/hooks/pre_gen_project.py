"""Reject unsafe or malformed answers before anything is written.

Every answer ends up in Python code, a systemd unit or a shell script, so each one is
checked against a strict pattern. The first failure is printed as one line and the
bake stops; cookiecutter then removes the half-made directory (cruft never touches
the warehouse at all).
"""

from __future__ import annotations

import datetime
import json
import re
import sys
import zoneinfo
from collections.abc import Callable
from functools import partial
from typing import Any

from cronsim import CronSim, CronSimError

TEMPLATE_FOLDER: str = json.loads(r'''{{ template_folder() | tojson }}''')  # a JSON string
sys.path.insert(0, TEMPLATE_FOLDER)  # holds contract/, a link to the repository's
import contract  # noqa: E402, F401 (puts this commit's prh-ingest/src first on sys.path)

# isort: split
from prh_ingest import naming  # noqa: E402
from prh_ingest.naming import Invalid, shown  # noqa: E402

# Each answer arrives as JSON inside one raw string: never pasted into code.
ANSWERS: dict[str, Any] = json.loads(
    r"""{
    "warehouse_name": {{ cookiecutter.warehouse_name | tojson }},
    "warehouse_slug": {{ cookiecutter.warehouse_slug | tojson }},
    "work_pool": {{ cookiecutter.work_pool | tojson }},
    "worker_user": {{ cookiecutter.worker_user | tojson }},
    "prefect_api_url": {{ cookiecutter.prefect_api_url | tojson }},
    "server_host": {{ cookiecutter.server_host | tojson }},
    "server_port": {{ cookiecutter.server_port | tojson }},
    "retention_days": {{ cookiecutter.retention_days | tojson }},
    "timezone": {{ cookiecutter.timezone | tojson }},
    "flows": {{ cookiecutter.flows | tojson }}
}"""
)

# What each kind of answer must fully match, and what the error line calls it.
PATTERNS: dict[str, tuple[str, str]] = {
    "warehouse_name": (r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}", "letters, digits, spaces, . _ -"),
    "worker_user": (r"[a-z_][a-z0-9_-]{0,31}", "a Linux user name"),
    "prefect_api_url": (
        r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?",
        "http(s)://host[:port]/path without credentials",
    ),
    "server_host": (
        r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?",
        "an IPv4 address or host name such as 127.0.0.1 or 0.0.0.0",
    ),
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
FLOW_KEYS = {
    "repo",
    "branch",
    "entrypoint",
    "cron",
    "timezone",
    "parameters",
    "env",
    "concurrency_limit",
}
REQUIRED_FLOW_KEYS = ("repo", "entrypoint", "cron")


def require_str(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"{where}: expected a string, got {shown(value)}")
    return value


def check_pattern(where: str, value: Any, kind: str) -> None:
    pattern, expected = PATTERNS[kind]
    text = require_str(where, value)
    if not re.fullmatch(pattern, text):
        raise Invalid(f"{where}: {shown(value)} is not {expected}")


def check_no_dotdot(where: str, value: str) -> None:
    if ".." in value:
        raise Invalid(f"{where}: {shown(value)} must not contain '..'")


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


def check_whole_number(where: str, value: Any, low: int, high: int) -> None:
    """A number answer (cookiecutter passes it as text) between *low* and *high*."""
    text = str(value)
    if isinstance(value, bool) or not re.fullmatch(r"[0-9]{1,6}", text):
        raise Invalid(f"{where}: {shown(value)} is not a whole number")
    if not low <= int(text) <= high:
        raise Invalid(f"{where}: {shown(value)} is not between {low} and {high}")


def check_relative(where: str, value: Any, kind: str) -> None:
    """A branch or a path inside the repo: its pattern, and never a step up."""
    check_pattern(where, value, kind)
    check_no_dotdot(where, value)


FLOW_CHECKS: dict[str, Callable[[str, Any], None]] = {
    "repo": naming.check_git_url,
    "branch": partial(check_relative, kind="branch"),
    "entrypoint": partial(check_relative, kind="entrypoint"),
    "cron": check_cron,
    "timezone": check_timezone,
    "parameters": check_parameters,
    "env": check_env,
    "concurrency_limit": check_concurrency_limit,
}


def check_flow(name: Any, entry: Any) -> None:
    naming.check_flow_name("flows key", name)
    where = f"flows[{name!r}]"
    if not isinstance(entry, dict):
        raise Invalid(f"{where}: expected a mapping with repo, entrypoint and cron")
    unknown = sorted(set(entry) - FLOW_KEYS)
    if unknown:
        raise Invalid(f"{where}: unknown key(s) {', '.join(map(naming.shown, unknown))}")
    missing = [key for key in REQUIRED_FLOW_KEYS if key not in entry]
    if missing:
        raise Invalid(f"{where}: missing {', '.join(missing)}")
    for key, value in entry.items():
        FLOW_CHECKS[key](f"{where}.{key}", value)


def check_answers(answers: dict[str, Any]) -> None:
    # First: prefect_api_url's default is built from these two.
    check_pattern("server_host", answers["server_host"], "server_host")
    # The server runs as an unprivileged user: ports below 1024 need a capability it lacks.
    check_whole_number("server_port", answers["server_port"], 1024, 65535)
    for key in ("warehouse_name", "worker_user", "prefect_api_url"):
        check_pattern(key, answers[key], key)
    naming.check_slug("warehouse_slug", answers["warehouse_slug"])
    naming.check_slug("work_pool", answers["work_pool"])
    check_timezone("timezone", answers["timezone"])
    check_whole_number("retention_days", answers["retention_days"], 1, 3650)
    flows = naming.json_mapping("flows", answers["flows"])
    for name, entry in flows.items():
        check_flow(name, entry)


if __name__ == "__main__":
    sys.exit(naming.exit_status(partial(check_answers, ANSWERS)))
