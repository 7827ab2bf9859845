"""prefect-gate.service: the role check and the audit between the front (apache2) and the
Prefect server.

apache2 signs each person or machine in against the directory (HTTP Basic or the sign-in
page) and hands the request, with the signed-in name in X-Prh-User, to this app on a Unix
socket only the front's user can open. This app:

1. finds the user's roles: the directory groups VIEWER_GROUP … DEPLOYER_GROUP of the
   directory file (ldapsearch from ldap-utils, cached for a minute);
2. allows the request only if one of those roles lists its route in roles.toml (deny by
   default; the operator's PATCH of a deployment only with a body of exactly {"paused": …});
3. passes it on to Prefect on its Unix socket (no TCP port: nobody else can reach it);
4. writes one JSON audit line for every call that changes something: to the journal
   (SYSLOG_IDENTIFIER=prefect-audit) and to /var/log/prefect-audit/audit.log. The line holds
   names (user, role, route, deployment, flow run), never a request body.

Runs with the Prefect server's venv (starlette, httpx and uvicorn come with Prefect):
    uvicorn --app-dir /opt/prefect-server/front --uds /run/prefect-gate/gate.sock gate:app
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import syslog
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

ROLE_ORDER = ("viewer", "operator", "worker", "deployer", "admin")
GROUP_KEYS = {
    "viewer": "VIEWER_GROUP",
    "operator": "OPERATOR_GROUP",
    "worker": "WORKER_GROUP",
    "deployer": "DEPLOYER_GROUP",
    "admin": "ADMIN_GROUP",
}
DIRECTORY_KEYS = (
    "DIRECTORY_URL",
    "DIRECTORY_BASE_DN",
    "DIRECTORY_BIND_DN",
    "DIRECTORY_BIND_PASSWORD",
    *GROUP_KEYS.values(),
)
DIRECTORY_DEFAULTS = {"DIRECTORY_USER_ATTRIBUTE": "uid"}
API_PREFIX = "/api"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ROLE_CACHE_SECONDS = 60.0


# --- roles.toml -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One route of roles.toml: "METHOD /path/{param}" below /api."""

    method: str
    path: str

    @classmethod
    def parse(cls, text: str) -> Route:
        method, _, path = text.partition(" ")
        if not method.isupper() or not path.startswith("/"):
            raise ValueError(f"not 'METHOD /path': {text!r}")
        return cls(method, path)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def segments(self) -> list[str]:
        return self.path.strip("/").split("/")

    def matches(self, method: str, segments: list[str]) -> bool:
        mine = self.segments
        if method != self.method or len(mine) != len(segments):
            return False
        return all(
            (part.startswith("{") and bool(value)) or part == value
            for part, value in zip(mine, segments, strict=True)
        )

    @property
    def literal_segments(self) -> int:
        return sum(not part.startswith("{") for part in self.segments)


@dataclass
class Role:
    name: str
    routes: set[Route] = field(default_factory=set)
    only_fields: dict[Route, frozenset[str]] = field(default_factory=dict)


def load_roles(path: Path) -> dict[str, Role]:
    """The roles of *path*, each with the routes of the roles it includes."""
    data = tomllib.loads(path.read_text())
    if sorted(data) != sorted(ROLE_ORDER):
        raise ValueError(f"{path} must define exactly the roles {', '.join(ROLE_ORDER)}")
    roles: dict[str, Role] = {}
    for name in ROLE_ORDER:  # a role includes only roles defined above it
        table = data[name]
        role = Role(name, {Route.parse(text) for text in table.get("routes", [])})
        role.only_fields = {
            Route.parse(text): frozenset(keys)
            for text, keys in table.get("only_fields", {}).items()
        }
        included = [roles[other] for other in table.get("includes", [])]
        free = set().union(*(other.routes - set(other.only_fields) for other in included))
        for other in included:
            role.routes |= other.routes
            for route, keys in other.only_fields.items():
                if route not in free:  # no included role may call it with any body
                    role.only_fields.setdefault(route, keys)
        roles[name] = role
    return roles


def all_routes(roles: Mapping[str, Role]) -> set[Route]:
    return set().union(*(role.routes for role in roles.values()))


def find_route(routes: Iterable[Route], method: str, path: str) -> Route | None:
    """The route of roles.toml that *method* *path* (below /api) calls: the most literal
    of the matching ones (/deployments/filter rather than /deployments/{id})."""
    segments = path.strip("/").split("/")
    found = [route for route in routes if route.matches(method, segments)]
    return max(found, key=lambda route: route.literal_segments, default=None)


def body_has_only(body: bytes, keys: frozenset[str]) -> bool:
    try:
        value = json.loads(body or b"null")
    except ValueError:
        return False
    return isinstance(value, dict) and set(value) == keys


@dataclass(frozen=True)
class Decision:
    allowed: bool
    route: Route | None  # None: not a route of roles.toml
    role: str  # the role that allowed it, or the user's roles joined by "+"


def authorize(
    roles: Mapping[str, Role], user_roles: Iterable[str], method: str, path: str, body: bytes
) -> Decision:
    """Whether a user with *user_roles* may call *method* *path* (below /api) with *body*."""
    user_roles = [name for name in ROLE_ORDER if name in set(user_roles)]
    route = find_route(all_routes(roles), method, path)
    if route is not None:
        for name in user_roles:
            role = roles[name]
            if route not in role.routes:
                continue
            keys = role.only_fields.get(route)
            if keys is None or body_has_only(body, keys):
                return Decision(True, route, name)
    return Decision(False, route, "+".join(user_roles) or "none")


def is_change(roles: Mapping[str, Role], method: str, route: Route | None) -> bool:
    """A call that may change something: every method but reads, except the viewer's
    read-only POSTs (filters, counts, histories). Unknown routes count as changes."""
    if method in READ_METHODS:
        return False
    return route is None or route not in roles["viewer"].routes


# --- the audit line -------------------------------------------------------------------------


def audit_line(
    *,
    when: datetime.datetime,
    user: str,
    role: str,
    source_ip: str,
    method: str,
    route: Route | None,
    path: str,
    deployment: str | None,
    flow_run: str | None,
    code: int,
) -> str:
    """One JSON line: names and codes only, never a request body."""
    return json.dumps(
        {
            "time": when.astimezone(datetime.UTC).isoformat(timespec="seconds"),
            "user": user,
            "role": role,
            "source_ip": source_ip,
            "method": method,
            "route": route.path if route else path,
            "deployment": deployment,
            "flow_run": flow_run,
            "code": code,
        },
        ensure_ascii=False,
    )


# --- the directory file ---------------------------------------------------------------------


def read_env_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines (no quoting, no expansion); comments and blank lines skipped."""
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", key):
            raise ValueError(f"line {number} is not KEY=VALUE")
        values[key] = value
    return values


def directory_settings(text: str) -> dict[str, str]:
    """The directory file's settings, checked: every key present and not empty, an ldap://
    or ldaps:// URL, a plain attribute name. ValueError says what is wrong (never a value)."""
    values = {**DIRECTORY_DEFAULTS, **read_env_file(text)}
    missing = [key for key in DIRECTORY_KEYS if not values.get(key)]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    if not re.fullmatch(r"ldaps?://[^\s/]+/?", values["DIRECTORY_URL"]):
        raise ValueError("DIRECTORY_URL is not ldap://HOST[:PORT] or ldaps://HOST[:PORT]")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", values["DIRECTORY_USER_ATTRIBUTE"]):
        raise ValueError("DIRECTORY_USER_ATTRIBUTE is not an attribute name (uid, sAMAccountName)")
    return values


def ldap_escape(value: str) -> str:
    """*value* for an LDAP search filter (RFC 4515)."""
    return "".join(f"\\{ord(c):02x}" if c in '\\*()\0' else c for c in value)


class Directory:
    """Group membership through ldapsearch (ldap-utils), one answer per user for a minute."""

    def __init__(self, settings: Mapping[str, str], password_file: Path) -> None:
        self.settings = settings
        self.password_file = password_file
        self.cache: dict[str, tuple[float, list[str]]] = {}

    def _search(self, base: str, scope: str, query: str) -> list[str]:
        result = subprocess.run(
            [
                "ldapsearch", "-LLL", "-x", "-o", "ldif-wrap=no",
                "-H", self.settings["DIRECTORY_URL"],
                "-D", self.settings["DIRECTORY_BIND_DN"], "-y", str(self.password_file),
                "-b", base, "-s", scope, query, "1.1",
            ],
            capture_output=True, text=True, timeout=20, check=False,
        )  # fmt: skip
        if result.returncode not in (0, 32):  # 32: no such object
            raise OSError(f"ldapsearch exited {result.returncode}: {result.stderr.strip()}")
        return [line[4:] for line in result.stdout.splitlines() if line.startswith("dn: ")]

    def roles_of(self, user: str) -> list[str]:
        now = time.monotonic()
        cached = self.cache.get(user)
        if cached and now - cached[0] < ROLE_CACHE_SECONDS:
            return cached[1]
        attribute = self.settings["DIRECTORY_USER_ATTRIBUTE"]
        found = self._search(
            self.settings["DIRECTORY_BASE_DN"], "sub", f"({attribute}={ldap_escape(user)})"
        )
        roles = []
        if len(found) == 1:
            member = f"(member={ldap_escape(found[0])})"
            for role, key in GROUP_KEYS.items():
                if self._search(self.settings[key], "base", member):
                    roles.append(role)
        self.cache[user] = (now, roles)
        return roles


# --- the app --------------------------------------------------------------------------------

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
     "transfer-encoding", "upgrade", "host", "content-length", "authorization", "cookie"}
)  # fmt: skip
FRONT_HEADER_PREFIX = "x-prh-"


def create_app(
    roles_file: Path, directory: Directory, upstream_socket: str, audit_file: Path
) -> Any:
    import httpx
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse

    roles = load_roles(roles_file)
    transport = httpx.AsyncHTTPTransport(uds=upstream_socket)
    client = httpx.AsyncClient(transport=transport, base_url="http://prefect", timeout=None)
    syslog.openlog("prefect-audit", 0, syslog.LOG_AUTHPRIV)

    async def name_of(kind: str, ident: str) -> dict[str, Any] | None:
        answer = await client.get(f"{API_PREFIX}/{kind}/{ident}")
        return answer.json() if answer.status_code == 200 else None

    async def names(route: Route | None, segments: list[str]) -> tuple[str | None, str | None]:
        """The deployment's and flow run's names for a route on /deployments/{id} or
        /flow_runs/{id}, read before the call (a delete removes them)."""
        if route is None or len(segments) < 2 or not route.path.count("{id}"):
            return None, None
        if segments[0] == "deployments":
            found = await name_of("deployments", segments[1])
            return (found or {}).get("name"), None
        if segments[0] == "flow_runs":
            run = await name_of("flow_runs", segments[1]) or {}
            deployment = None
            if run.get("deployment_id"):
                deployment = (await name_of("deployments", run["deployment_id"]) or {}).get("name")
            return deployment, run.get("name")
        return None, None

    def audit(line: str) -> None:
        syslog.syslog(syslog.LOG_INFO, line)
        with audit_file.open("a") as out:
            out.write(line + "\n")

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await client.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return
        request = Request(scope, receive)
        user = request.headers.get("x-prh-user", "")
        if not user:
            await JSONResponse({"detail": "not signed in"}, 401)(scope, receive, send)
            return
        method = request.method
        path = request.url.path
        body = await request.body()
        below_api = path[len(API_PREFIX) :] if path.startswith(API_PREFIX + "/") else None
        if below_api is None:  # the UI's pages and files
            decision = Decision(method in READ_METHODS, None, "any")
        else:
            user_roles = directory.roles_of(user)
            decision = authorize(roles, user_roles, method, below_api, body)
        change = below_api is not None and is_change(roles, method, decision.route)
        deployment = flow_run = None
        if change and decision.allowed:
            deployment, flow_run = await names(decision.route, below_api.strip("/").split("/"))
        if not decision.allowed:
            response: Response = JSONResponse(
                {"detail": f"{user} ({decision.role}) may not {method} {path}"}, 403
            )
        else:
            headers = [
                (key, value)
                for key, value in request.headers.items()
                if key not in HOP_BY_HOP and not key.startswith(FRONT_HEADER_PREFIX)
            ]
            upstream = client.build_request(
                method, request.url.path, params=request.url.query, headers=headers, content=body
            )
            answer = await client.send(upstream, stream=True)
            if change and answer.status_code < 300 and not (deployment or flow_run):
                await answer.aread()  # a new deployment or run: its name is in the answer
                created = answer.json() if answer.content.startswith(b"{") else {}
                if decision.route and decision.route.path.startswith("/deployments/"):
                    if decision.route.path.endswith("create_flow_run"):
                        flow_run = created.get("name")
                    else:
                        deployment = created.get("name")
            kept = [
                (key, value)
                for key, value in answer.headers.items()
                if key.lower() not in HOP_BY_HOP
            ]
            response = StreamingResponse(
                answer.aiter_raw(), status_code=answer.status_code, headers=dict(kept),
                background=None,
            )  # fmt: skip
            response.background = _closing(answer)
        if change:
            audit(
                audit_line(
                    when=datetime.datetime.now(datetime.UTC),
                    user=user,
                    role=decision.role,
                    source_ip=request.headers.get("x-prh-client-ip", ""),
                    method=method,
                    route=decision.route,
                    path=below_api or path,
                    deployment=deployment,
                    flow_run=flow_run,
                    code=response.status_code,
                )
            )
        await response(scope, receive, send)

    return app


def _closing(answer: Any) -> Any:
    from starlette.background import BackgroundTask

    return BackgroundTask(answer.aclose)


def from_environment() -> Any:
    """The app as prefect-gate.service runs it (its settings from the unit's environment)."""
    credentials = Path(os.environ["CREDENTIALS_DIRECTORY"])
    settings = directory_settings((credentials / "directory.env").read_text())
    password_file = Path(os.environ["RUNTIME_DIRECTORY"]) / "bind-password"
    password_file.write_text(settings["DIRECTORY_BIND_PASSWORD"])
    password_file.chmod(0o600)
    return create_app(
        Path(os.environ.get("PRH_ROLES_FILE", Path(__file__).with_name("roles.toml"))),
        Directory(settings, password_file),
        os.environ["PRH_PREFECT_SOCKET"],
        Path(os.environ["LOGS_DIRECTORY"]) / "audit.log",
    )
