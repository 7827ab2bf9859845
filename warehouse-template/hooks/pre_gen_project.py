"""Reject unsafe or malformed answers before anything is written.

Every answer ends up in Python code, a systemd unit or a shell script, so each one is
checked against a strict pattern. The first failure is printed as one line and the
bake stops; cookiecutter then removes the half-made directory (cruft never touches
the warehouse at all).
"""

from __future__ import annotations

import json
import re
import sys
from functools import partial
from typing import Any

TEMPLATE_FOLDER: str = json.loads(r'''{{ template_folder() | tojson }}''')  # a JSON string
sys.path.insert(0, TEMPLATE_FOLDER)  # holds contract/, a link to the repository's
import contract  # noqa: E402, F401 (puts this commit's prh-ingest/src first on sys.path)

# isort: split
from prh_ingest import naming  # noqa: E402
from prh_ingest.deploy import flows_file  # noqa: E402
from prh_ingest.deploy.flows_file import check_matches, check_timezone  # noqa: E402
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
    "flows": {{ cookiecutter.flows | tojson }},
    "prh_ingest": {{ cookiecutter.prh_ingest | tojson }}
}"""
)

# What each kind of answer must fully match, and what the error line calls it (the flows'
# rules are the deploy tool's: prh_ingest.deploy.flows_file).
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
}


def check_pattern(where: str, value: Any, kind: str) -> None:
    check_matches(where, value, *PATTERNS[kind])


def check_whole_number(where: str, value: Any, low: int, high: int) -> None:
    """A number answer (cookiecutter passes it as text) between *low* and *high*."""
    text = str(value)
    if isinstance(value, bool) or not re.fullmatch(r"[0-9]{1,6}", text):
        raise Invalid(f"{where}: {shown(value)} is not a whole number")
    if not low <= int(text) <= high:
        raise Invalid(f"{where}: {shown(value)} is not between {low} and {high}")


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
    flows_file.check_flows(answers["flows"], "flows")
    naming.check_package_source("prh_ingest", answers["prh_ingest"])


if __name__ == "__main__":
    sys.exit(naming.exit_status(partial(check_answers, ANSWERS)))
