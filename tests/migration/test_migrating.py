"""MIGRATING.md, run as written on a real Prefect 2.10 world (support.runbook_world)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.runbook_world import PAUSED_BY_THE_TEAM, PROJECTS, runbook_world

pytestmark = [pytest.mark.migration, pytest.mark.network, pytest.mark.timeout(3600)]


def test_migrating_md_on_sqlite(tmp_path: Path) -> None:
    with runbook_world(tmp_path) as world:
        for project in PROJECTS:
            deployment = world.api.deployment(project.deployment)
            assert deployment["id"] == world.deployment_ids[project.deployment]
            assert deployment["work_pool_name"] == "ingest"
            assert deployment["schedule"]["cron"] == project.cron
            expected = project is not PAUSED_BY_THE_TEAM
            assert deployment["is_schedule_active"] is expected
