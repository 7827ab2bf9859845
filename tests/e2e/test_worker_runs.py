"""The runbook's path on real parts: deploy from the warehouse, run through the worker started
from the generated systemd unit, and the faults a production site meets."""

from __future__ import annotations

import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from zoneinfo import ZoneInfo

import pytest
from support.baking import SAMPLE_ROWS
from support.flow_runs import run_deployment
from support.services import PostgresServer, S3Server
from support.site import (
    CLINIC_CAL,
    CRON,
    IMAGING,
    LAB_RESULTS,
    POOL,
    POSTGRES_DEPLOYMENT,
    S3_BUCKET,
    TIMEZONE,
    ZOMBIE_AUTOMATION,
    Site,
    database_busy,
)
from support.systemd import wait_for_descendant

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
    # The second run found the venv the first one built and installed nothing.
    assert "is up to date" in "\n".join(site.api.logs_with(run_id, "is up to date"))
    venvs = sorted(path.name for path in site.pipenv_home().iterdir() if path.is_dir())
    assert venvs == [f"prefect-{CLINIC_CAL.slug}"]


def test_bad_source_file_fails_the_run_with_one_clear_line_and_keeps_the_sink(site: Site) -> None:
    site.worker()
    before = site.rows(CLINIC_CAL)
    landing = site.landing(CLINIC_CAL)
    landing.write_bytes(b"this is not a workbook\n")
    try:
        run_id = site.run(CLINIC_CAL)
        run = site.api.wait_terminal(run_id, timeout=120)
    finally:
        shutil.copy(site.sample(CLINIC_CAL), landing)
    logs = site.api.logs_with(run_id, "error: ")
    assert run["state_type"] == "FAILED", logs
    errors = [line for line in "\n".join(logs).splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and str(landing) in errors[0], logs
    assert site.rows(CLINIC_CAL) == before
    # Not retried: a bad file stays bad.
    assert [task["run_count"] for task in site.api.task_runs(run_id)] == [1]


def overlaps(runs: list[dict]) -> list[tuple[str, str]]:
    """Pairs of runs whose Running intervals intersect."""
    ordered = sorted(runs, key=lambda run: run["start_time"])
    return [
        (first["name"], second["name"])
        for first, second in zip(ordered, ordered[1:], strict=False)
        if second["start_time"] < first["end_time"]
    ]


def test_two_workers_share_the_pool_and_respect_limits(site: Site) -> None:
    workers = {host: site.worker(host) for host in ("vm1", "vm2")}
    triggered = {spec.flow: [site.run(spec), site.run(spec)] for spec in (CLINIC_CAL, LAB_RESULTS)}
    finished = {
        run_id: site.api.wait_terminal(run_id, timeout=240)
        for run_ids in triggered.values()
        for run_id in run_ids
    }
    assert {run["state_type"] for run in finished.values()} == {"COMPLETED"}, finished
    # Deployment concurrency limit 1: two runs of one deployment never overlap. The clinic-cal
    # runs are first in the queue, so one is offered to the second worker while the other
    # runs: it is the deployment's limit that holds it back.
    for run_ids in triggered.values():
        assert overlaps([finished[run_id] for run_id in run_ids]) == []
    histories = [site.api.state_names(run_id) for run_id in triggered[CLINIC_CAL.flow]]
    assert any("AwaitingConcurrencySlot" in states for states in histories), histories
    # Both workers took runs, and neither ran more than its --limit (1) at once.
    # (A worker that loses the race for a run logs "Aborted submission"; the winner this.)
    taken = {
        host: [
            run_id
            for run_id, run in finished.items()
            if f"Flow run '{run['name']}' submitted to infrastructure" in worker.log_text()
        ]
        for host, worker in workers.items()
    }
    assert all(taken.values()), taken
    assert sorted(sum(taken.values(), [])) == sorted(finished)
    for run_ids in taken.values():
        assert overlaps([finished[run_id] for run_id in run_ids]) == []
    # The shared environments stayed healthy, and the rows are there once.
    pipenv_pip = site.pipenv_home() / f"prefect-{CLINIC_CAL.slug}" / "bin" / "pip"
    assert subprocess.run([pipenv_pip, "--version"], capture_output=True).returncode == 0
    uv_python = site.uv_environment(LAB_RESULTS) / "bin" / "python"
    assert subprocess.run([uv_python, "-c", "import sqlalchemy"]).returncode == 0
    assert (site.rows(CLINIC_CAL), site.rows(LAB_RESULTS)) == (SAMPLE_ROWS, SAMPLE_ROWS)
    report = site.stop_worker("vm2")
    assert not report.sigkilled, report


def test_cron_schedule_has_runs_at_the_next_local_times(site: Site) -> None:
    deployment = site.api.deployment(CLINIC_CAL.deployment)
    (schedule,) = [entry["schedule"] for entry in deployment["schedules"]]
    assert (schedule["cron"], schedule["timezone"]) == (CRON, TIMEZONE)
    deadline = time.monotonic() + 30
    while True:
        scheduled = [
            datetime.fromisoformat(run["expected_start_time"])
            for run in site.api.flow_runs(deployment["id"], ["SCHEDULED"])
            if run["state_name"] == "Scheduled" and run["auto_scheduled"]
        ]
        if len(scheduled) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert sorted(scheduled)[:3] == next_six_am(TIMEZONE, count=3)


def next_six_am(zone: str, count: int) -> list[datetime]:
    """The next *count* 06:00 wall-clock times in *zone* (what CRON means), in UTC."""
    tz = ZoneInfo(zone)
    now = datetime.now(tz)
    days = (now.date() + timedelta(days=offset) for offset in range(count + 1))
    times = [datetime.combine(day, dt_time(6), tzinfo=tz) for day in days]
    return [moment.astimezone(UTC) for moment in times if moment > now][:count]


def test_s3_source_runs_through_the_worker_with_blocks_on_the_server(
    site: Site, s3_server: S3Server
) -> None:
    site.save_s3_blocks(IMAGING, s3_server)
    s3 = s3_server.client()
    s3.create_bucket(Bucket=S3_BUCKET)
    s3.upload_file(str(site.sample(IMAGING)), S3_BUCKET, f"{IMAGING.source_name}.csv")
    site.worker()
    run_id = site.run(IMAGING)
    run = site.api.wait_terminal(run_id, timeout=120)
    assert run["state_type"] == "COMPLETED", logs_of(site, run_id)
    assert site.rows(IMAGING) == SAMPLE_ROWS
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=S3_BUCKET)["Contents"]]
    assert keys == [f"archive/{IMAGING.source_name}.csv"]


def test_worker_stopped_mid_run_crashes_the_run_and_the_next_run_loads_once(site: Site) -> None:
    """`systemctl stop` (as the unit defines it) while the run's ingest step is waiting on the
    busy sink: the run must reach a terminal state quickly, load nothing, leave no process
    behind, and a restarted worker must run the next one (the deployment's single concurrency
    slot is free again)."""
    worker = site.worker()
    before = site.rows(LAB_RESULTS)
    with database_busy(site.sink(LAB_RESULTS)):
        run_id = site.run(LAB_RESULTS)
        wait_for_descendant(worker.pid, "ingest.py", timeout=120)
        time.sleep(1)  # past its imports: ingest.py now waits for the sink's lock
        report = site.stop_worker()
    stopped = site.api.wait_terminal(run_id, timeout=30)
    assert stopped["state_type"] == "CRASHED", stopped["state"]
    assert not report.sigkilled and report.seconds < site.unit.stop_timeout(), report
    assert site.rows(LAB_RESULTS) == before
    site.worker()
    next_id = site.run(LAB_RESULTS)
    assert site.api.wait_terminal(next_id, timeout=120)["state_type"] == "COMPLETED"
    assert site.rows(LAB_RESULTS) == SAMPLE_ROWS


def test_run_of_a_hard_killed_worker_is_crashed_by_the_zombie_automation(site: Site) -> None:
    """Power loss mid-run (SIGKILL of worker and run when the site was built, so this wait
    overlaps the other tests): nothing reports the run's end, but its heartbeats stop, and the
    automation prw_deploy.py created marks it Crashed within heartbeat interval + `within`."""
    assert site.hard_kill.state_at_kill == "RUNNING"
    (automation,) = [
        automation
        for automation in site.api.post("/automations/filter", {})
        if automation["name"] == ZOMBIE_AUTOMATION
    ]
    heartbeat = float(site.unit.environment()["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"])
    bound = site.hard_kill.killed_at + heartbeat + automation["trigger"]["within"] + 20
    run = site.api.wait_terminal(site.hard_kill.run_id, timeout=max(bound - time.monotonic(), 1))
    assert run["state_type"] == "CRASHED", run["state"]
    assert "heartbeat" in run["state"]["message"].lower()


def test_postgresql_deployment_loads_through_the_worker(
    site: Site, postgres_server: PostgresServer
) -> None:
    """The uv project baked with database=postgresql: its environment gets psycopg, and
    ingest.py COPYs the sample into the server named by the deployment's env; a second run
    replaces the first load's rows."""
    site.worker()
    database, table = site.postgres_database, LAB_RESULTS.table
    for attempt in ("first", "second"):
        run_id = run_deployment(f"{LAB_RESULTS.flow}/{POSTGRES_DEPLOYMENT}", site.server.env)
        run = site.api.wait_terminal(run_id, timeout=240)
        assert run["state_type"] == "COMPLETED", f"{attempt} run: {logs_of(site, run_id)}"
        count = postgres_server.query(database, f"SELECT count(*) FROM {table}")  # noqa: S608
        assert count == [(SAMPLE_ROWS,)]
    loads = postgres_server.query(database, f"SELECT row_count FROM {table}_loads")  # noqa: S608
    assert loads == [(SAMPLE_ROWS,)]
