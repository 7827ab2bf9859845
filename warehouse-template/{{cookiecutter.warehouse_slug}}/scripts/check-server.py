"""Can this worker use the Prefect API? `/api/ready`, then a GET with its credentials.

    check-server.py --once UNIT ENV_FILE
                             install-worker.sh, before it enables the unit, with the unit's
                             Environment= and its env file on top (as systemd reads them):
                             one `error:` line naming what failed and exit 1, or exit 0
    check-server.py          the unit's ExecStartPre=: until both pass, one line in the journal
                             for each new problem, retried with backoff (5 s doubling to 5 min)

It reads what the worker reads: PREFECT_API_URL, PREFECT_API_AUTH_STRING or PREFECT_API_KEY,
and PREFECT_API_SSL_CERT_FILE (the CA bundle Prefect's client verifies the server with). A
GET, not a POST: the server answers a POST without its CSRF token 403 whatever the auth.
Behind the sign-in front (install-server.sh --directory) the credentials are the worker's
own directory account, and /api/ready needs them too.
"""

from __future__ import annotations

import base64
import os
import shlex
import ssl
import sys
import time
from pathlib import Path

import certifi
import httpx

FIRST_WAIT = 5.0
LONGEST_WAIT = 300.0


def unit_environment(unit: Path, env_file: Path) -> dict[str, str]:
    """The unit's Environment= assignments, then the env file's KEY=VALUE lines over them."""
    env: dict[str, str] = {}
    for line in unit.read_text().splitlines():
        if line.startswith("Environment="):
            env.update(
                word.partition("=")[::2] for word in shlex.split(line[len("Environment=") :])
            )
    for raw in env_file.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";")):
            name, _, value = line.partition("=")
            env[name.strip()] = value.strip().strip("\"'")
    return env


def verify_failure(error: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate check failure below *error* (httpx wraps httpcore wraps ssl)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def problem() -> str | None:
    """What stops the worker now, in one line, or None."""
    from prefect.settings import get_current_settings  # after the environment is complete

    api = get_current_settings().api
    if not api.url:
        return "PREFECT_API_URL is not set"
    url = api.url.rstrip("/")
    cafile = api.ssl_cert_file or certifi.where()
    headers = {}
    if api.key:
        headers["Authorization"] = f"Bearer {api.key.get_secret_value()}"
    elif api.auth_string:
        token = base64.b64encode(api.auth_string.get_secret_value().encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    try:
        with httpx.Client(verify=ssl.create_default_context(cafile=cafile), timeout=15) as client:
            # With credentials: behind the sign-in front even /ready needs them.
            ready = client.get(f"{url}/ready", headers=headers)
            if ready.status_code in (401, 403):
                version = ready  # refused by the sign-in front
            elif ready.status_code != 200:
                return f"the Prefect API at {url}/ready is not ready (HTTP {ready.status_code})"
            else:
                version = client.get(f"{url}/admin/version", headers=headers)
    except httpx.ConnectError as error:
        failure = verify_failure(error)
        if failure is not None:
            reason = failure.verify_message
            return (
                f"the certificate of {url} is not trusted ({reason}): add the hospital CA to "
                f"{cafile} (update-ca-certificates) or point PREFECT_API_SSL_CERT_FILE at it"
            )
        return f"cannot connect to {url}: {error}"
    except httpx.HTTPError as error:
        return f"no answer from {url}: {error}"
    if version.status_code in (401, 403):
        which = "PREFECT_API_KEY" if api.key else "PREFECT_API_AUTH_STRING"
        return (
            f"the server at {url} refused the credentials (HTTP {version.status_code}): "
            f"set {which} to this worker's own directory account (<user>:<password>), or to "
            "the server's PREFECT_SERVER_API_AUTH_STRING where there is no sign-in front"
        )
    if version.status_code != 200:
        return f"GET {url}/admin/version answered HTTP {version.status_code}"
    return None


def main(argv: list[str]) -> int:
    if argv[:1] == ["--once"]:
        unit, env_file = map(Path, argv[1:3])
        os.environ.update(unit_environment(unit, env_file))
        found = problem()
        if found:
            print(f"error: {found}", file=sys.stderr)
            return 1
        return 0
    wait, said = FIRST_WAIT, None
    while (found := problem()) is not None:
        if found != said:
            print(f"error: {found}; retrying with backoff", file=sys.stderr, flush=True)
            said = found
        time.sleep(wait)
        wait = min(wait * 2, LONGEST_WAIT)
    if said:
        print("the Prefect API answers again: starting the worker", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
