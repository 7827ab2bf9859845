"""Freshness on a live Prefect 3.9.1 server: its automations fire when a source's loads stop,
and stay silent while they come. Upstream bugs around proactive triggers (#21932 missed
events and false alarms, #14692 false positives, #17685, #16545 never fired) are why both
sides are shown, on the e2e tests' live server (proactive evaluation every second), with a
local webhook receiver standing in for the warehouse's PRH_NOTIFY_URL.

The four sources run at once (tests/support/freshness_world.py): a is never loaded, b is
loaded every 2 s, c is loaded once and then only re-sent, d is loaded once with a canary in
every field of its summary that is not a count. Meanwhile a worker starts on a pool and is
stopped, and two runs of that pool go Late: one of the warehouse's deployments, one of a
deployment that is not its own.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest
from support.commands import BIN
from support.processes import LOOPBACK
from support.services import PrefectServer

pytestmark = pytest.mark.e2e

WITHIN = 10  # seconds: each source's freshness, the least a proactive trigger takes
EVERY = 2  # seconds between b's loads (and c's re-sends)
LOADING = WITHIN + 2 * EVERY  # b keeps loading for more than a window
CANARY = "MRN-CANARY-4471-ZZ"
WORLD = Path(__file__).parents[1] / "support" / "freshness_world.py"


@dataclass
class Receiver:
    """A webhook on 127.0.0.1 that keeps what it receives and when."""

    url: str
    received: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    def about(self, source: str) -> list[tuple[float, dict[str, Any]]]:
        return [(t, m) for t, m in self.received if f"Source: fresh-{source}\n" in m["body"]]

    def late(self, deployment: str) -> list[dict[str, Any]]:
        return [m for _, m in self.received if f"Deployment: {deployment}\n" in m["body"]]

    def wait_for(self, sources: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (
            all(self.about(s) for s in sources) and self.late("late-ours")
        ):
            time.sleep(0.2)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    messages: list[tuple[float, dict[str, Any]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            messages.append((time.time(), json.loads(body)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Receiver(f"http://{LOOPBACK}:{server.server_address[1]}/hook", messages)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def world(prefect_server: PrefectServer, receiver: Receiver) -> dict[str, Any]:
    """What freshness_world.py saw, once every notification due has had time to arrive. It
    runs on the e2e tests' shared server (its proactive evaluation runs every second: see
    FAST_SERVER_SETTINGS); its names (project `fresh`) are its own."""
    config = {
        "webhook": receiver.url,
        "within": WITHIN,
        "seconds": LOADING,
        "every": EVERY,
        "canary": CANARY,
    }
    done = subprocess.run(
        [str(BIN / "python"), str(WORLD), json.dumps(config)],
        env=prefect_server.env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    receiver.wait_for(["a", "c", "d"], timeout=15)
    time.sleep(2)  # a notification that should not come has had as long as one that should
    return seen


def test_a_missed_load_is_reported_once_naming_the_source(
    world: dict[str, Any], receiver: Receiver
) -> None:
    [(when, message)] = receiver.about("a")
    assert message["subject"] == "Prefect: fresh-a is late"
    assert message["body"] == (
        "Source: fresh-a\nDeployment: fresh-a-ingest\nNo load within 10s\nLast load: never"
    )
    assert when >= world["watched_a"] + WITHIN - 1  # not before its window ended
    assert world["last_load_a"] is None


def test_on_time_loads_are_not_reported(world: dict[str, Any], receiver: Receiver) -> None:
    # b's loads came every 2 s for more than a window: silent all along (a notification
    # after its last load's window is due, and allowed).
    early = [m for t, m in receiver.about("b") if t < world["last_b_load"] + WITHIN - 1]
    assert early == []
    assert world["last_b_load"] - world["first_load"] >= WITHIN


def test_a_stale_resend_is_reported_once_the_window_passes(
    world: dict[str, Any], receiver: Receiver
) -> None:
    unchanged = [e for e in world["events"] if e["event"] == "prh.ingest.unchanged"]
    assert len(unchanged) >= LOADING // EVERY - 1  # the re-sends reached the server
    [(when, message)] = receiver.about("c")
    assert when >= world["first_load"] + WITHIN - 1
    assert world["last_load_c"] is not None
    last_load = message["body"].rsplit("Last load: ", 1)[1]
    assert last_load != "never" and last_load.startswith(
        world["last_load_c"][:19].replace("T", " ")
    )


def test_no_canary_in_events_or_notifications(world: dict[str, Any], receiver: Receiver) -> None:
    [loaded_d] = [
        e
        for e in world["events"]
        if e["event"] == "prh.ingest.loaded" and e["resource"]["prefect.resource.id"].endswith("-d")
    ]
    assert loaded_d["payload"] == {
        "rows": 42,
        "bytes": 4096,
        "sha256": "0123456789abcdef" * 4,
        "mode": "append",
        "table": "fresh_d",
    }
    assert receiver.about("d")  # d's notification came, and carries no canary either
    assert CANARY not in json.dumps(world["events"])
    assert CANARY not in json.dumps([m for _, m in receiver.received])


def test_a_run_of_a_stopped_workers_pool_goes_late_and_is_reported(
    world: dict[str, Any], receiver: Receiver
) -> None:
    assert world["worker"] == {"seen": [ANY], "running_until_stopped": True}  # up, then down
    # Both runs went Late; only the one whose deployment carries the warehouse's tag counts.
    assert world["late_states"] == {"late-ours": "Late", "late-other": "Late"}
    [message] = receiver.late("late-ours")
    assert message["subject"] == "Prefect: late-ours is late"
    assert "No worker picked it up" in message["body"]
    assert receiver.late("late-other") == []


def test_plan_sees_a_stored_automation_as_unchanged_until_its_freshness_changes(
    world: dict[str, Any],
) -> None:
    assert world["read_back"] == world["built"]
    assert world["read_back"] != world["longer"]
    assert world["read_back"]["tags"] == ["warehouse:freshwh"]
