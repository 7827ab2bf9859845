"""The warehouse's role allowlists (front/roles.toml) and the gate's decisions (front/gate.py),
in-process: every route of Prefect's server placed in a role, each role's allowed and refused
calls, the operator's pause-only PATCH, the audit line and the directory file's checks. The
same files run on a booted server in tests/systemd/test_sign_in.py."""

from __future__ import annotations

import datetime
import gzip
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from support.warehouse import bake_warehouse


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bake_warehouse(tmp_path_factory.mktemp("front")) / "front"


@pytest.fixture(scope="module")
def gate(front: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("prh_front_gate", front / "gate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def roles(gate: ModuleType, front: Path) -> dict:
    return gate.load_roles(front / "roles.toml")


def server_routes() -> set[str]:
    """Every route of Prefect's API app: its OpenAPI operations (what /api/openapi.json
    lists) and its websockets (which OpenAPI leaves out)."""
    from prefect.server.api.server import API_ROUTERS, create_app
    from starlette.routing import Mount, WebSocketRoute

    app = create_app(ephemeral=True)
    (api,) = [
        route.app for route in app.routes if isinstance(route, Mount) and route.path == "/api"
    ]
    found = {
        f"{method.upper()} {path}"
        for path, operations in api.openapi()["paths"].items()
        for method in operations
    }
    found |= {
        f"WEBSOCKET {route.path}"
        for router in API_ROUTERS
        for route in router.routes
        if isinstance(route, WebSocketRoute)
    }
    return found


def test_every_route_of_the_server_is_in_the_allowlists_and_no_other(gate, roles) -> None:
    listed = {str(route) for route in gate.all_routes(roles)}
    served = server_routes()
    assert sorted(served - listed) == [], "routes of this Prefect no role lists: place them"
    assert sorted(listed - served) == [], "routes this Prefect no longer has"
    assert {str(route) for route in roles["admin"].routes} == served
    assert roles["admin"].only_fields == {}


# fmt: off
PAUSE = json.dumps({"paused": True}).encode()
SCHEDULE = json.dumps({"paused": True, "schedules": []}).encode()
ID = "2b7e3f6c-0d7c-4a57-9a39-1f3b3b1f0e11"
DEPLOYMENT = f"/deployments/{ID}"
SCHEDULE_PATH = f"{DEPLOYMENT}/schedules/{ID}"
ACTIVE = json.dumps({"active": False}).encode()
CRON = json.dumps({"active": False, "schedule": {"cron": "0 5 * * *"}}).encode()
CALLS = {
    # id: (roles, method, path below /api, body, allowed)
    "viewer-reads-a-deployment": ("viewer", "GET", DEPLOYMENT, b"", True),
    "viewer-filters-runs": ("viewer", "POST", "/flow_runs/filter", b"{}", True),
    "viewer-may-not-pause": ("viewer", "PATCH", DEPLOYMENT, PAUSE, False),
    "viewer-may-not-run": ("viewer", "POST", f"{DEPLOYMENT}/create_flow_run", b"{}", False),
    "operator-pauses": ("operator", "PATCH", DEPLOYMENT, PAUSE, True),
    "operator-may-not-change-a-schedule": ("operator", "PATCH", DEPLOYMENT, SCHEDULE, False),
    "operator-may-not-send-a-non-object": ("operator", "PATCH", DEPLOYMENT, b"[]", False),
    "operator-pauses-a-schedule": ("operator", "PATCH", SCHEDULE_PATH, ACTIVE, True),
    "operator-may-not-time-a-schedule": ("operator", "PATCH", SCHEDULE_PATH, CRON, False),
    "deployer-times-a-schedule": ("deployer", "PATCH", SCHEDULE_PATH, CRON, True),
    "operator-runs": ("operator", "POST", f"{DEPLOYMENT}/create_flow_run", b"{}", True),
    "operator-cancels": ("operator", "POST", f"/flow_runs/{ID}/set_state", b"{}", True),
    "operator-may-not-delete": ("operator", "DELETE", DEPLOYMENT, b"", False),
    "worker-heartbeat": ("worker", "POST", "/work_pools/ingest/workers/heartbeat", b"{}", True),
    "worker-may-not-delete": ("worker", "DELETE", DEPLOYMENT, b"", False),
    "worker-may-not-pause": ("worker", "PATCH", DEPLOYMENT, PAUSE, False),
    "deployer-updates": ("deployer", "PATCH", DEPLOYMENT, SCHEDULE, True),
    "deployer-creates": ("deployer", "POST", "/deployments/", b"{}", True),
    "deployer-may-not-run": ("deployer", "POST", f"{DEPLOYMENT}/create_flow_run", b"{}", False),
    "admin-deletes-a-run": ("admin", "DELETE", f"/flow_runs/{ID}", b"", True),
    "admin-changes-a-schedule": ("admin", "PATCH", DEPLOYMENT, SCHEDULE, True),
    "operator-and-deployer-updates": ("operator deployer", "PATCH", DEPLOYMENT, SCHEDULE, True),
    "no-role": ("", "GET", DEPLOYMENT, b"", False),
    "unknown-route": ("admin", "POST", "/not/a/route", b"", False),
    "too-many-segments": ("admin", "GET", f"/deployments/{ID}/x/y", b"", False),
    "empty-id": ("viewer", "GET", "/deployments/", b"", False),
}
# fmt: on


@pytest.mark.parametrize("case", list(CALLS))
def test_a_role_may_call_exactly_its_routes(gate, roles, case: str) -> None:
    user_roles, method, path, body, allowed = CALLS[case]
    decision = gate.authorize(roles, user_roles.split(), method, path, body)
    assert decision.allowed is allowed, decision
    if allowed:
        assert decision.role in user_roles.split()


def test_the_most_literal_route_wins(gate, roles) -> None:
    decision = gate.authorize(roles, ["viewer"], "POST", "/deployments/filter", b"{}")
    assert str(decision.route) == "POST /deployments/filter"
    decision = gate.authorize(roles, ["viewer"], "GET", "/variables/name/x", b"")
    assert str(decision.route) == "GET /variables/name/{name}"


def test_reads_and_filters_are_not_changes_and_the_rest_are(gate, roles) -> None:
    def change(method: str, path: str) -> bool:
        return gate.is_change(roles, method, gate.find_route(gate.all_routes(roles), method, path))

    assert not change("GET", f"/deployments/{ID}")
    assert not change("POST", "/flow_runs/filter")
    assert change("PATCH", f"/deployments/{ID}")
    assert change("POST", f"{DEPLOYMENT}/create_flow_run")
    assert change("POST", "/no/such/route")


def test_the_audit_line_holds_names_and_the_code(gate, roles) -> None:
    route = gate.Route.parse("PATCH /deployments/{id}")
    line = gate.audit_line(
        when=datetime.datetime(2026, 12, 6, 4, 30, tzinfo=datetime.UTC),
        user="alice",
        role="operator",
        source_ip="10.1.2.3",
        method="PATCH",
        route=route,
        path=f"/deployments/{ID}",
        deployment="clinic-cal-epic-ingest",
        flow_run=None,
        code=204,
    )
    assert "\n" not in line
    assert json.loads(line) == {
        "time": "2026-12-06T04:30:00+00:00",
        "user": "alice",
        "role": "operator",
        "source_ip": "10.1.2.3",
        "method": "PATCH",
        "route": "/deployments/{id}",
        "deployment": "clinic-cal-epic-ingest",
        "flow_run": None,
        "code": 204,
    }


GOOD_DIRECTORY = """\
# the hospital directory
DIRECTORY_URL=ldaps://ldap.prh.test:636
DIRECTORY_BASE_DN=dc=prh,dc=test
DIRECTORY_BIND_DN=cn=prefect-front,ou=services,dc=prh,dc=test
DIRECTORY_BIND_PASSWORD=s3cret=with=equals
VIEWER_GROUP=cn=prefect-viewers,ou=groups,dc=prh,dc=test
OPERATOR_GROUP=cn=prefect-operators,ou=groups,dc=prh,dc=test
ADMIN_GROUP=cn=prefect-admins,ou=groups,dc=prh,dc=test
WORKER_GROUP=cn=prefect-workers,ou=groups,dc=prh,dc=test
DEPLOYER_GROUP=cn=prefect-deployers,ou=groups,dc=prh,dc=test
"""


def test_a_complete_directory_file_is_read_with_uid_by_default(gate) -> None:
    settings = gate.directory_settings(GOOD_DIRECTORY)
    assert settings["DIRECTORY_USER_ATTRIBUTE"] == "uid"
    assert settings["DIRECTORY_BIND_PASSWORD"] == "s3cret=with=equals"  # noqa: S105


BAD_DIRECTORIES = {
    "missing-group": (
        GOOD_DIRECTORY.replace("ADMIN_GROUP=", "#"),
        "missing ADMIN_GROUP",
    ),
    "empty-password": (
        GOOD_DIRECTORY.replace("s3cret=with=equals", ""),
        "missing DIRECTORY_BIND_PASSWORD",
    ),
    "http-url": (
        GOOD_DIRECTORY.replace("ldaps://", "https://"),
        "DIRECTORY_URL is not ldap://",
    ),
    "attribute-filter": (
        GOOD_DIRECTORY + "DIRECTORY_USER_ATTRIBUTE=uid)(x=*\n",
        "DIRECTORY_USER_ATTRIBUTE is not an attribute name",
    ),
    "not-key-value": (GOOD_DIRECTORY + "just words\n", "line 11 is not KEY=VALUE"),
}


@pytest.mark.parametrize("case", list(BAD_DIRECTORIES))
def test_a_bad_directory_file_is_one_message_without_values(gate, case: str) -> None:
    text, message = BAD_DIRECTORIES[case]
    with pytest.raises(ValueError, match=r"^") as raised:
        gate.directory_settings(text)
    assert message in str(raised.value)
    assert "s3cret" not in str(raised.value)


def test_a_user_name_cannot_widen_the_directory_search(gate) -> None:
    assert gate.ldap_escape("al*ce)(uid=*") == "al\\2ace\\29\\28uid=\\2a"


def test_the_example_directory_file_has_every_key(gate, front: Path) -> None:
    settings = gate.directory_settings((front / "directory.env.example").read_text())
    assert settings["SESSION_IDLE_SECONDS"] == "900"  # 15 minutes
    assert settings["SESSION_MAX_SECONDS"] == str(8 * 3600)


def test_apache_reads_the_url_and_bind_account_but_never_the_password(gate) -> None:
    text = gate.apache_defines(gate.directory_settings(GOOD_DIRECTORY))
    assert 'Define PRH_DIRECTORY_URL "ldaps://ldap.prh.test:636/dc=prh,dc=test?uid?sub"' in text
    assert 'Define PRH_DIRECTORY_BIND_DN "cn=prefect-front,ou=services,dc=prh,dc=test"' in text
    assert "Define PRH_SESSION_MAX_SECONDS 28800" in text
    assert "s3cret" not in text


KEY = b"k" * 32
CLOCK_CASES = {
    # id: (seconds since the start, since the last activity, state)
    "fresh": (0, 0, "open"),
    "active-for-hours": (7 * 3600, 60, "open"),
    "idle": (1000, 900, "idle"),
    "past-eight-hours": (8 * 3600, 0, "expired"),
}


@pytest.mark.parametrize("case", list(CLOCK_CASES))
def test_a_session_ends_when_idle_or_too_old(gate, case: str) -> None:
    since_start, since_active, state = CLOCK_CASES[case]
    now = 2_000_000_000
    clock = gate.Clock("alice", now - since_start, now - since_active)
    assert clock.state(now, 900, 8 * 3600) == state


def test_the_clock_cookie_is_signed_and_bound_to_its_user(gate) -> None:
    clock = gate.Clock("alice", 100, 200)
    value = gate.write_clock(KEY, clock)
    assert gate.read_clock(KEY, value, "alice") == clock
    assert gate.read_clock(KEY, value, "bob") is None  # another user's cookie
    assert gate.read_clock(b"x" * 32, value, "alice") is None  # another key
    younger = value.replace("100.200", "100.9999999999")
    assert gate.read_clock(KEY, younger, "alice") is None  # a forged activity time
    assert gate.read_clock(KEY, "", "alice") is None


def test_every_ui_page_gets_the_idle_script_with_the_user_escaped(gate) -> None:
    page = b"<html><head><title>Prefect</title></head><body></body></html>"
    shown = gate.with_idle_script(page, 'o"brien<x>', 900)
    assert shown.startswith(b'<html><head><title>Prefect</title><script src="/sign-in/idle.js"')
    assert b'data-idle="900" data-user="o&quot;brien&lt;x&gt;"></script></head>' in shown
    assert gate.with_idle_script(b"{}", "alice", 900) == b"{}"


def audit_entry(gate, when: datetime.datetime, user: str, deployment: str, code: int) -> str:
    return gate.audit_line(
        when=when,
        user=user,
        role="operator",
        source_ip="10.1.2.3",
        method="PATCH",
        route=gate.Route.parse("PATCH /deployments/{id}"),
        path=DEPLOYMENT,
        deployment=deployment,
        flow_run=None,
        code=code,
    )


def test_audit_py_shows_the_changes_of_a_user_and_deployment_in_a_window(
    gate, front: Path, tmp_path: Path
) -> None:
    """Its table from the current and the rotated (gzipped) files, filtered."""
    now = datetime.datetime.now(datetime.UTC)
    lines = {
        "audit.log.2.gz": [audit_entry(gate, now - datetime.timedelta(days=9), "alice", "a", 204)],
        "audit.log.1": [audit_entry(gate, now - datetime.timedelta(days=2), "alice", "a", 204)],
        "audit.log": [
            audit_entry(gate, now - datetime.timedelta(hours=1), "bob", "a", 403),
            audit_entry(gate, now - datetime.timedelta(hours=1), "alice", "b", 204),
            '{"cut short',
        ],
    }
    for name, entries in lines.items():
        text = "".join(line + "\n" for line in entries)
        if name.endswith(".gz"):
            (tmp_path / name).write_bytes(gzip.compress(text.encode()))
        else:
            (tmp_path / name).write_text(text)
    script = front.parent / "scripts" / "audit.py"

    def table(*args: str) -> list[list[str]]:
        argv = [sys.executable, str(script), "--directory", str(tmp_path), *args]
        result = subprocess.run(argv, capture_output=True, text=True, check=True)
        return [row.split()[1:] for row in result.stdout.splitlines()]

    header = ["USER", "ROLE", "SOURCE_IP", "METHOD", "ROUTE", "DEPLOYMENT", "FLOW_RUN", "CODE"]
    alice_a = ["alice", "operator", "10.1.2.3", "PATCH", "/deployments/{id}", "a", "204"]
    assert table("--user", "alice", "--deployment", "a") == [header, alice_a]
    assert len(table("--since", "30d", "--user", "alice", "--deployment", "a")) == 3
    assert [row[0] for row in table("--since", "12h")] == ["USER", "bob", "alice"]
    empty = subprocess.run(
        [sys.executable, str(script), "--directory", str(tmp_path), "--user", "nobody"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert empty.stdout == "No changes match.\n"
    bad = subprocess.run(
        [sys.executable, str(script), "--since", "week"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "'week' is not a duration like 30m, 12h or 7d" in bad.stderr
