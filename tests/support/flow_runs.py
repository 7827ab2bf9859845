"""Deployments and flow runs on a live Prefect server, through its REST API and CLI."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

PREFECT = str(Path(sys.executable).parent / "prefect")
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
# Prefect client code: create a run of deployment %r, wait up to %r s for its final state and
# print {"id", "name", "state"} as JSON (run where PREFECT_API_URL and its trust are set).
RUN_DEPLOYMENT = """
import json, time
from prefect import get_client
from prefect.deployments import run_deployment

run = run_deployment(%r, timeout=0)
deadline = time.monotonic() + %r
with get_client(sync_client=True) as client:
    while time.monotonic() < deadline:
        run = client.read_flow_run(run.id)
        if run.state and run.state.is_final():
            break
        time.sleep(1)
print(json.dumps({"id": str(run.id), "name": run.name, "state": run.state.name}))
"""


class PrefectApi:
    """The few reads the end-to-end tests need."""

    def __init__(self, api_url: str) -> None:
        self.http = httpx.Client(base_url=api_url, timeout=15)

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None):
        """One call, retried on 503: the server answers it while its SQLite database is
        briefly locked by a busy moment, and Prefect's own client retries it the same way."""
        for delay in (0.5, 1, 2, 4, 0):
            response = self.http.request(method, path, json=None if body is None else dict(body))
            if response.status_code != 503 or not delay:
                break
            time.sleep(delay)
        response.raise_for_status()
        return response

    def get(self, path: str) -> Any:
        return self.request("GET", path).json()

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        return self.request("POST", path, body).json()

    def patch(self, path: str, body: Mapping[str, Any]) -> None:
        self.request("PATCH", path, body)

    def flow_run(self, run_id: str) -> dict[str, Any]:
        return self.get(f"/flow_runs/{run_id}")

    def state_names(self, run_id: str) -> list[str]:
        """Every state the run went through, oldest first."""
        states = self.get(f"/flow_run_states/?flow_run_id={run_id}")
        return [state["name"] for state in sorted(states, key=lambda state: state["timestamp"])]

    def task_runs(self, run_id: str) -> list[dict[str, Any]]:
        return self.post("/task_runs/filter", {"flow_runs": {"id": {"any_": [run_id]}}})

    def deployment(self, name: str) -> dict[str, Any]:
        """`<flow>/<deployment>` -> the deployment."""
        return self.get(f"/deployments/name/{name}")

    def flow_runs(self, deployment_id: str, state_types: list[str] | None = None) -> list[dict]:
        flow_runs: dict[str, Any] = {"deployment_id": {"any_": [deployment_id]}}
        if state_types:
            flow_runs["state"] = {"type": {"any_": state_types}}
        return self.post("/flow_runs/filter", {"flow_runs": flow_runs, "sort": "START_TIME_ASC"})

    def artifacts(self, run_id: str) -> list[dict[str, Any]]:
        return self.post("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]}}})

    def logs(self, run_id: str) -> list[str]:
        body = {"logs": {"flow_run_id": {"any_": [run_id]}}, "sort": "TIMESTAMP_ASC", "limit": 200}
        return [entry["message"] for entry in self.post("/logs/filter", body)]

    def logs_with(self, run_id: str, text: str, timeout: float = 20) -> list[str]:
        """The run's log lines once one contains *text* (the engine ships logs in batches,
        so they can arrive after the final state); all lines if none does by *timeout*."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.logs(run_id)
            if any(text in line for line in lines) or time.monotonic() > deadline:
                return lines
            time.sleep(0.5)

    def wait_for(self, run_id: str, state_types: set[str], timeout: float) -> dict[str, Any]:
        """Poll until the run is in one of *state_types*; fail with its last state if not."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.flow_run(run_id)
            if run["state_type"] in state_types:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"flow run {run_id} still {run['state_name']} after {timeout:.0f}s "
                    f"(wanted {sorted(state_types)}): {run['state'].get('message')}"
                )
            time.sleep(0.5)

    def wait_for_event(self, name: str, resource_id: str, timeout: float) -> None:
        """Poll until the server has stored an event *name* about *resource_id*."""
        body = {"filter": {"event": {"name": [name]}, "resource": {"id": [resource_id]}}}
        deadline = time.monotonic() + timeout
        while not self.post("/events/filter", body)["events"]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {name} event for {resource_id} after {timeout:.0f}s")
            time.sleep(0.5)

    def wait_terminal(self, run_id: str, timeout: float = 180) -> dict[str, Any]:
        return self.wait_for(run_id, TERMINAL, timeout)


def run_deployment(name: str, env: Mapping[str, str]) -> str:
    """`prefect deployment run '<flow>/<deployment>'`; returns the new flow run's id."""
    result = subprocess.run(
        [PREFECT, "deployment", "run", name],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"UUID: ([0-9a-f-]{36})", result.stdout)
    if result.returncode != 0 or not match:
        raise RuntimeError(f"prefect deployment run {name} failed:\n{result.stdout}{result.stderr}")
    return match.group(1)
