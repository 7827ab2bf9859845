"""The Prefect side of tests/e2e/test_freshness.py, run as a subprocess with the live server's
environment: `python freshness_world.py CONFIG_JSON`. It does what the deploy tool and the
flows will do with prh_ingest.freshness, then prints one JSON line of what it saw.

1. Saves the webhook block the way prw_deploy.py does for PRH_NOTIFY_URL, and one freshness
   automation per source (a missed, b on time, c stale, d canary).
2. Starts a's window from this process, outside any flow (as the deploy tool will).
3. In a flow: starts b, c and d's windows, loads b, c and d once (d's summary has the canary
   in every field that is not a count), then keeps loading b and re-sending c's bytes
   every `every` seconds for `seconds`.
4. Meanwhile a worker starts on the warehouse's pool, is seen by the server and is stopped,
   as when its VM goes down. Two runs go Late: one of a deployment of that pool with the
   warehouse's tag (reported), one of a deployment without the tag (not reported).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from prefect import flow, get_client
from prefect.automations import Automation
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import SyncPrefectClient
from prefect.events.filters import EventFilter, EventResourceFilter
from prefect.states import Scheduled
from prh_ingest import freshness, naming
from prh_ingest.deploy import automations

STARTED = time.time()
PROJECT = "fresh"
WAREHOUSE = "freshwh"


def summary(source: str, canary: str, **changes: Any) -> dict[str, Any]:
    """ingest.py's JSON summary line, with the canary in each field that is not a count."""
    return {
        "summary": "prh-ingest-load",
        "source": source,
        "table": naming.table_name(PROJECT, source),
        "ok": True,
        "file": f"{canary}.csv",
        "path": f"/exports/{canary}.csv",
        "size_bytes": 4096,
        "sha256": "0123456789abcdef" * 4,
        "rows": 42,
        "mode": "append",
        "same_as_load": None,
        "replaced_loads": 0,
        "columns_added": [canary],
        "seconds": 0.1,
        "error": canary,
        **changes,
    }


POOL = "fresh-pool"


def stopped_worker(client: SyncPrefectClient) -> dict[str, Any]:
    """A process worker on POOL, started, seen by the server, then stopped (SIGTERM): the
    pool's runs have no one to take them, as when the worker's VM is down."""
    automations.ensure_work_pool(POOL)  # as prw_deploy.py makes the warehouse's
    argv = [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL]
    worker = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (seen := client.read_workers_for_work_pool(POOL)):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError(f"the worker on {POOL} never reached the server")
            time.sleep(0.5)
        running = worker.poll() is None  # up until it is stopped
    finally:
        stop(worker)
    return {"seen": [w.name for w in seen], "running_until_stopped": running}


def stop(worker: subprocess.Popen) -> None:
    """SIGTERM; a worker still there 30 s later (one fresh-clone CI run saw it, the machine
    busy) is killed, as a VM that goes down would leave it."""
    worker.terminate()
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait(timeout=30)


def late_runs(client: SyncPrefectClient) -> dict[str, str]:
    """A run of each deployment (both on the stopped worker's pool), due a minute ago: the
    server marks both Late."""
    flow_id = client.create_flow_from_name("fresh-late")
    due = Scheduled(scheduled_time=datetime.now(UTC) - timedelta(minutes=1))
    runs = {}
    for deployment, tags in (("late-ours", [naming.warehouse_tag(WAREHOUSE)]), ("late-other", [])):
        deployment_id = client.create_deployment(
            flow_id=flow_id, name=deployment, tags=tags, work_pool_name=POOL
        )
        runs[deployment] = str(client.create_flow_run_from_deployment(deployment_id, state=due).id)
    return runs


@flow(name="fresh-loads")
def loads(canary: str, seconds: float, every: float) -> dict[str, float]:
    for source in ("b", "c", "d"):
        freshness.emit_watch(PROJECT, source, None)
    for source in ("b", "c", "d"):
        freshness.emit_load_events(PROJECT, source, summary(source, canary))
    first = time.time()
    last_b = first
    while time.time() - first < seconds:
        time.sleep(every)
        freshness.emit_load_events(PROJECT, "b", summary("b", canary))
        last_b = time.time()
        freshness.emit_load_events(PROJECT, "c", summary("c", canary, same_as_load=1))
    return {"first_load": first, "last_b_load": last_b}


def main() -> None:
    config = json.loads(sys.argv[1])
    within = timedelta(seconds=config["within"])
    block = CustomWebhookNotificationBlock(
        name="fresh-failed-flow-runs",
        url="{{url}}",
        method="POST",
        json_data={"subject": "{{subject}}", "body": "{{body}}"},
        secrets={"url": config["webhook"]},
    )
    block_id = block.save("fresh-failed-flow-runs", overwrite=True)
    built = {}
    for source in ("a", "b", "c", "d"):
        deployment = naming.flow_name(PROJECT, source)
        built[source] = freshness.freshness_automation(
            WAREHOUSE, deployment, PROJECT, source, within, block_id
        )
        built[source].create()
    freshness.late_run_automation(WAREHOUSE, block_id).create()
    with get_client(sync_client=True) as client:
        worker = stopped_worker(client)
        freshness.emit_watch(PROJECT, "a", freshness.last_load(client, PROJECT, "a"))
        watched_a = time.time()  # a's window started no later than this
        late = late_runs(client)
    print(f"set up in {watched_a - STARTED:.1f} s", file=sys.stderr)
    times = loads(config["canary"], config["seconds"], config["every"])
    time.sleep(2)  # the server has stored the flow's last events
    with get_client(sync_client=True) as client:
        stored = client.read_events(
            EventFilter(
                resource=EventResourceFilter(
                    id=[naming.source_resource(PROJECT, s) for s in ("b", "c", "d")]
                )
            ),
            limit=50,
        ).events
        last_c = freshness.last_load(client, PROJECT, "c")
        last_a = freshness.last_load(client, PROJECT, "a")
        late_states = {d: client.read_flow_run(UUID(i)).state_name for d, i in late.items()}
    # What plan compares: the automation read back from the server against the one built.
    stored_a = Automation.read(name=built["a"].name)
    longer = freshness.freshness_automation(
        WAREHOUSE, stored_a.name, PROJECT, "a", within * 2, block_id
    )
    print(
        json.dumps(
            {
                **times,
                "watched_a": watched_a,
                "events": [event.model_dump(mode="json") for event in stored],
                "last_load_c": last_c.isoformat() if last_c else None,
                "last_load_a": last_a.isoformat() if last_a else None,
                "late_states": late_states,
                "worker": worker,
                "read_back": freshness.comparable(stored_a),
                "built": freshness.comparable(built["a"]),
                "longer": freshness.comparable(longer),
            }
        )
    )


if __name__ == "__main__":
    main()
