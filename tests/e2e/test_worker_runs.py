"""The runbook's path on real parts: deploy from the warehouse, run through the worker started
from the generated systemd unit, and the faults a production site meets."""

from __future__ import annotations

import pytest
from support.baking import SAMPLE_ROWS
from support.site import CLINIC_CAL, POOL, Site

pytestmark = [pytest.mark.e2e, pytest.mark.network]


def logs_of(site: Site, run_id: str) -> str:
    return "\n".join(site.api.logs(run_id))


def test_deploy_created_the_pool_and_one_deployment_per_flow(site: Site) -> None:
    assert site.api.get(f"/work_pools/{POOL}")["type"] == "process"
    deployment = site.api.deployment(CLINIC_CAL.deployment)
    assert deployment["work_pool_name"] == POOL
    assert deployment["global_concurrency_limit"]["limit"] == 1


def test_pipenv_flow_runs_twice_in_one_venv_without_duplicates(site: Site) -> None:
    site.worker()
    for attempt in ("first", "second"):
        run_id = site.run(CLINIC_CAL)
        run = site.api.wait_terminal(run_id, timeout=240)
        assert run["state_type"] == "COMPLETED", f"{attempt} run: {logs_of(site, run_id)}"
        assert site.rows(CLINIC_CAL) == SAMPLE_ROWS
    venvs = sorted(path.name for path in site.pipenv_home().iterdir() if path.is_dir())
    assert venvs == [f"prefect-{CLINIC_CAL.slug}"]
