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

import asyncio
import datetime
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import syslog
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from html import escape as htmlescape
from pathlib import Path
from typing import Any
from urllib.parse import quote

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
DIRECTORY_DEFAULTS = {
    "DIRECTORY_USER_ATTRIBUTE": "uid",
    "SESSION_IDLE_SECONDS": "900",  # 15 minutes without activity
    "SESSION_MAX_SECONDS": "28800",  # 8 hours in all
}
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
    for key in ("DIRECTORY_BIND_DN", *GROUP_KEYS.values()):
        if '"' in values[key] or "=" not in values[key]:
            raise ValueError(f"{key} is not a distinguished name without quotes")
    for key in ("SESSION_IDLE_SECONDS", "SESSION_MAX_SECONDS"):
        if not values[key].isdigit() or int(values[key]) < 1:
            raise ValueError(f"{key} is not a positive whole number of seconds")
    return values


def ldap_escape(value: str) -> str:
    """*value* for an LDAP search filter (RFC 4515)."""
    return "".join(f"\\{ord(c):02x}" if c in "\\*()\0" else c for c in value)


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


# --- the browser's session clock -------------------------------------------------------------


@dataclass(frozen=True)
class Clock:
    """When a browser session began and when its person last did something (seconds)."""

    user: str
    start: int
    active: int

    def state(self, now: float, idle_seconds: int, max_seconds: int) -> str:
        if now - self.start >= max_seconds:
            return "expired"
        if now - self.active >= idle_seconds:
            return "idle"
        return "open"


def write_clock(key: bytes, clock: Clock) -> str:
    """The cookie value: the times and the user, signed (HMAC-SHA256) with the gate's key."""
    payload = f"{clock.start}.{clock.active}.{clock.user.encode().hex()}"
    mac = hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()
    return f"{payload}.{mac}"


def read_clock(key: bytes, value: str, user: str) -> Clock | None:
    """The clock in a cookie value, if the gate signed it for *user*; None otherwise."""
    payload, _, mac = value.rpartition(".")
    good = hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(mac, good):
        return None
    start, active, owner = payload.split(".")
    if owner != user.encode().hex():
        return None
    return Clock(user, int(start), int(active))


def with_idle_script(html: bytes, user: str, idle_seconds: int) -> bytes:
    """A UI page with the idle sign-out script (and its sign-out link) in its head."""
    tag = (
        f'<script src="/sign-in/idle.js" data-idle="{idle_seconds}" '
        f'data-user="{htmlescape(user, quote=True)}"></script>'
    ).encode()
    head_end = html.find(b"</head>")
    return html if head_end < 0 else html[:head_end] + tag + html[head_end:]


# --- the app --------------------------------------------------------------------------------

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
     "transfer-encoding", "upgrade", "host", "content-length", "authorization", "cookie",
     "x-forwarded-for", "x-forwarded-host", "x-forwarded-server"}
)  # fmt: skip
# Headers only the front sets, and Prefect's automation headers (its events would take them
# as the actor): never passed on.
DROPPED_PREFIXES = ("x-prh-", "prefect-automation")
CLOCK_COOKIE = "prh_clock"


@dataclass
class Gate:
    roles: dict[str, Role]
    directory: Directory
    upstream_socket: str
    audit_file: Path
    clock_key: bytes
    idle_seconds: int
    max_seconds: int


def create_app(gate: Gate) -> Any:
    import httpx
    from starlette.requests import Request
    from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
    from starlette.websockets import WebSocket

    transport = httpx.AsyncHTTPTransport(uds=gate.upstream_socket)
    client = httpx.AsyncClient(transport=transport, base_url="http://prefect", timeout=None)
    syslog.openlog("prefect-audit", 0, syslog.LOG_AUTHPRIV)

    async def read(kind: str, ident: str) -> dict[str, Any]:
        answer = await client.get(f"{API_PREFIX}/{kind}/{ident}")
        return answer.json() if answer.status_code == 200 else {}

    async def names(route: Route | None, segments: list[str]) -> tuple[str | None, str | None]:
        """The deployment's and flow run's names for a route on /deployments/{id} or
        /flow_runs/{id}, read before the call (a delete removes them)."""
        if route is None or len(segments) < 2 or "{id}" not in route.segments[1:2]:
            return None, None
        if segments[0] == "deployments":
            return (await read("deployments", segments[1])).get("name"), None
        if segments[0] == "flow_runs":
            run = await read("flow_runs", segments[1])
            deployment = None
            if run.get("deployment_id"):
                deployment = (await read("deployments", run["deployment_id"])).get("name")
            return deployment, run.get("name")
        return None, None

    def audit(line: str) -> None:
        syslog.syslog(syslog.LOG_INFO, line)
        with gate.audit_file.open("a") as out:
            out.write(line + "\n")

    def passed_on(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        return [
            (key, value)
            for key, value in headers
            if key.lower() not in HOP_BY_HOP and not key.lower().startswith(DROPPED_PREFIXES)
        ]

    def clock_of(request: Request | WebSocket, user: str) -> tuple[Clock | None, str]:
        """A browser's clock and its state; (None, "open") for API clients (HTTP Basic)."""
        if request.headers.get("x-prh-auth", "").lower() == "basic":
            return None, "open"
        now = int(time.time())
        clock = read_clock(gate.clock_key, request.cookies.get(CLOCK_COOKIE, ""), user)
        if clock is None:  # the first request after signing in
            return Clock(user, now, now), "open"
        return clock, clock.state(now, gate.idle_seconds, gate.max_seconds)

    async def websocket(scope: dict[str, Any], receive: Any, send: Any, user: str) -> None:
        from websockets.asyncio.client import unix_connect

        socket = WebSocket(scope, receive, send)
        path = socket.url.path
        below_api = path.removeprefix(API_PREFIX) if path.startswith(API_PREFIX + "/") else ""
        decision = authorize(gate.roles, gate.directory.roles_of(user), "WEBSOCKET", below_api, b"")
        _, state = clock_of(socket, user)
        if not decision.allowed or state != "open":
            await socket.close(code=1008)
            return
        target = f"ws://prefect{path}" + (f"?{socket.url.query}" if socket.url.query else "")
        offered = [p.strip() for p in socket.headers.get("sec-websocket-protocol", "").split(",")]
        async with unix_connect(
            gate.upstream_socket, target, subprotocols=[p for p in offered if p] or None
        ) as upstream:
            await socket.accept(subprotocol=upstream.subprotocol)

            async def down() -> None:
                async for message in upstream:
                    if isinstance(message, str):
                        await socket.send_text(message)
                    else:
                        await socket.send_bytes(message)

            async def up() -> None:
                while (message := await socket.receive())["type"] != "websocket.disconnect":
                    await upstream.send(message.get("text") or message.get("bytes") or "")

            tasks = [asyncio.ensure_future(down()), asyncio.ensure_future(up())]
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
            code, reason = upstream.close_code or 1000, upstream.close_reason or ""
        try:  # the server's own code and reason (e.g. 1002 "Expected 'filter' message")
            await socket.close(code=code, reason=reason)
        except RuntimeError:
            pass  # already closed by the client

    async def http(request: Request, user: str) -> Response:
        method, path = request.method, request.url.path
        clock, state = clock_of(request, user)
        navigation = request.headers.get("sec-fetch-mode") == "navigate"
        if state != "open":
            if navigation or method in READ_METHODS and not path.startswith(API_PREFIX + "/"):
                return RedirectResponse("/sign-out/idle", 303)
            return JSONResponse({"detail": f"signed out: session {state}"}, 401)
        user_roles = gate.directory.roles_of(user)
        body = await request.body()
        below_api = path[len(API_PREFIX) :] if path.startswith(API_PREFIX + "/") else None
        if path == "/prh/alive" and method == "POST":
            decision = Decision(bool(user_roles), None, "any")
        elif below_api is None:  # the UI's pages and files: any role may read them
            decision = Decision(method in READ_METHODS and bool(user_roles), None, "any")
        else:
            decision = authorize(gate.roles, user_roles, method, below_api, body)
        change = below_api is not None and is_change(gate.roles, method, decision.route)
        if clock is not None and (navigation or change or path == "/prh/alive"):
            clock = Clock(user, clock.start, int(time.time()))
        deployment = flow_run = None
        if change:  # refused ones too: who tried to delete what
            deployment, flow_run = await names(decision.route, below_api.strip("/").split("/"))
        if not decision.allowed:
            what = f"{method} {path}" if below_api is not None else "use Prefect"
            response: Response = JSONResponse(
                {"detail": f"{user} ({decision.role}) may not {what}"}, 403
            )
        elif path == "/prh/alive":
            response = Response(status_code=204)
        else:
            response = await forward(request, body, user, below_api is None)
            created = getattr(response, "created", {})
            if change and decision.route and decision.route.path.startswith("/deployments"):
                if decision.route.path.endswith("/create_flow_run"):
                    flow_run = flow_run or created.get("name")
                deployment = deployment or (created.get("name") if not flow_run else None)
        if clock is not None:
            response.set_cookie(
                CLOCK_COOKIE, write_clock(gate.clock_key, clock), path="/", secure=True,
                httponly=True, samesite="strict",
            )  # fmt: skip
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
        return response

    async def forward(request: Request, body: bytes, user: str, page: bool) -> Response:
        headers = [
            (key, value)
            for key, value in passed_on(request.headers.items())
            if key != "accept-encoding"
        ]
        # The client's own encodings, never httpx's default; a page gets the idle script, so
        # it is read whole, uncompressed.
        encoding = "identity" if page else request.headers.get("accept-encoding", "identity")
        headers.append(("accept-encoding", encoding))
        upstream = client.build_request(
            request.method, request.url.path, params=request.url.query, headers=headers,
            content=body,
        )  # fmt: skip
        answer = await client.send(upstream, stream=True)
        kept = dict(passed_on(answer.headers.items()))
        html = answer.headers.get("content-type", "").startswith("text/html")
        if (page and html) or (request.method == "POST" and answer.status_code == 201):
            content = await answer.aread()  # decoded: sent on without its content-encoding
            await answer.aclose()
            kept.pop("content-encoding", None)
            if page and html:
                content = with_idle_script(content, user, gate.idle_seconds)
            response = Response(content, answer.status_code, headers=kept)
            try:
                response.created = json.loads(content) if not html else {}  # type: ignore[attr-defined]
            except ValueError:
                response.created = {}  # type: ignore[attr-defined]
            return response
        from starlette.background import BackgroundTask

        return StreamingResponse(
            answer.aiter_raw(), answer.status_code, headers=kept,
            background=BackgroundTask(answer.aclose),
        )  # fmt: skip

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await client.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return
        headers = dict(scope.get("headers", []))
        user = headers.get(b"x-prh-user", b"").decode()
        if scope["type"] == "websocket":
            if not user:
                await send({"type": "websocket.close", "code": 1008})
                return
            await websocket(scope, receive, send, user)
            return
        request = Request(scope, receive)
        if not user:
            response: Response = JSONResponse({"detail": "not signed in"}, 401)
        else:
            response = await http(request, user)
        await response(scope, receive, send)

    return app


def from_environment() -> Any:
    """The app as prefect-gate.service runs it: the directory file and the session key are
    the unit's credentials."""
    credentials = Path(os.environ["CREDENTIALS_DIRECTORY"])
    settings = directory_settings((credentials / "directory.env").read_text())
    password_file = Path(os.environ["RUNTIME_DIRECTORY"]) / "bind-password"
    password_file.touch(mode=0o600)
    password_file.write_text(settings["DIRECTORY_BIND_PASSWORD"])
    return create_app(
        Gate(
            roles=load_roles(Path(__file__).with_name("roles.toml")),
            directory=Directory(settings, password_file),
            upstream_socket=os.environ["PRH_PREFECT_SOCKET"],
            audit_file=Path(os.environ["LOGS_DIRECTORY"]) / "audit.log",
            clock_key=(credentials / "session.key").read_bytes(),
            idle_seconds=int(settings["SESSION_IDLE_SECONDS"]),
            max_seconds=int(settings["SESSION_MAX_SECONDS"]),
        )
    )


# --- the installer's check of the directory file -------------------------------------------


def apache_defines(settings: Mapping[str, str]) -> str:
    """The directory's settings as apache2 reads them (apache-directory.conf)."""
    url = (
        f"{settings['DIRECTORY_URL'].rstrip('/')}/{quote(settings['DIRECTORY_BASE_DN'], safe='=,')}"
        f"?{settings['DIRECTORY_USER_ATTRIBUTE']}?sub"
    )
    return (
        "# Written by scripts/install-server.sh from the directory file: do not edit.\n"
        f'Define PRH_DIRECTORY_URL "{url}"\n'
        f'Define PRH_DIRECTORY_BIND_DN "{settings["DIRECTORY_BIND_DN"]}"\n'
        f"Define PRH_SESSION_MAX_SECONDS {settings['SESSION_MAX_SECONDS']}\n"
    )


def check_bind(settings: Mapping[str, str], password_file: Path) -> str | None:
    """None when the bind account can bind; otherwise what went wrong (no secret in it)."""
    result = subprocess.run(
        ["ldapwhoami", "-x", "-H", settings["DIRECTORY_URL"], "-D",
         settings["DIRECTORY_BIND_DN"], "-y", str(password_file), "-o", "nettimeout=10"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    if result.returncode == 0:
        return None
    reason = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[0]
    return f"cannot bind to {settings['DIRECTORY_URL']} as DIRECTORY_BIND_DN ({reason})"


def main(argv: list[str]) -> int:
    """`python3 gate.py check-directory FILE OUT`: checks the directory file and the bind,
    then writes apache2's settings to OUT; one `error:` line otherwise."""
    import tempfile

    if len(argv) != 3 or argv[0] != "check-directory":
        print("usage: gate.py check-directory FILE OUT", file=sys.stderr)
        return 2
    source, out = Path(argv[1]), Path(argv[2])
    try:
        settings = directory_settings(source.read_text())
    except OSError as error:
        print(f"error: cannot read the directory file {source} ({error.strerror})", file=sys.stderr)
        return 1
    except ValueError as error:
        print(f"error: the directory file {source}: {error}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as private:
        password = Path(private) / "password"
        password.touch(mode=0o600)
        password.write_text(settings["DIRECTORY_BIND_PASSWORD"])
        problem = check_bind(settings, password)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    out.write_text(apache_defines(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
