"""The alternative to prw_deploy.py: a loop of `flow.from_source(...).deploy(...)`, one per flow.

    python -m benchmarks.loop_deploy FLOWS.json WORK_POOL

FLOWS.json maps deployment names to warehouse entries (repo, entrypoint, cron, timezone, env).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from prefect import flow
from prefect.schedules import Cron


def main(flows_file: str, work_pool: str) -> int:
    flows = json.loads(Path(flows_file).read_text())
    for name, entry in flows.items():
        flow.from_source(source=entry["repo"], entrypoint=entry["entrypoint"]).deploy(
            name=name,
            work_pool_name=work_pool,
            schedule=Cron(entry["cron"], timezone=entry.get("timezone", "UTC")),
            job_variables={"env": entry.get("env", {})},
            concurrency_limit=entry.get("concurrency_limit", 1),
            print_next_steps=False,
            ignore_warnings=True,
        )
    print(f"deployed {len(flows)} flow(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
