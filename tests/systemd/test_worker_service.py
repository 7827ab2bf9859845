"""The generated worker unit under a real systemd: install, runs in the three dependency modes,
stop, SIGKILL, reboot, the sandbox's score and a re-install, against the live Prefect
server. The tests share one booted system and run in file order (each leaves the worker
active for the next)."""

from __future__ import annotations

import fnmatch
import time
from pathlib import Path

import pytest
from support.baking import SAMPLE_ROWS, readme_worker_install, sudo_stand_in
from support.booted import CLEAN_ENV, BootedSystem
from support.booted_worker import (
    CHECKOUT,
    HARD_KILL,
    HARD_KILL_SINK,
    HOME,
    NONE,
    PIPENV,
    POOL,
    PROJECTS,
    TEAM_PACKAGE,
    UNIT,
    UV,
    VENVS,
    WORKER_USER,
    WORKER_VENV,
    WorkerSite,
    build_warehouse,
    landing,
    logs_of,
    release,
    sink,
)
from support.services import PrefectServer
from support.site import ZOMBIE_AUTOMATION
from support.systemd import exposure_level

pytestmark = [pytest.mark.systemd, pytest.mark.e2e, pytest.mark.network, pytest.mark.timeout(900)]


# --- bad input: nothing installed -----------------------------------------------------------

BAD_INPUT = {
    # case: (worker user, how the machine is prepared, what the error line names)
    "no-user": ("prh-nobody", [], "worker user prh-nobody does not exist"),
    "no-home": (
        "prh-homeless",
        [["useradd", "--no-create-home", "prh-homeless"]],
        "home /home/prh-homeless of worker user prh-homeless does not exist",
    ),
    "no-api-url": (
        "prh-noapi",
        [
            ["useradd", "--create-home", "prh-noapi"],
            ["install", "-d", "/etc/prefect-worker"],
            ["sh", "-c", "printf 'PREFECT_API_KEY=\\n' >/etc/prefect-worker/bad-no-api-url.env"],
        ],
        "/etc/prefect-worker/bad-no-api-url.env has no PREFECT_API_URL",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_install_refuses_bad_input_with_one_line_and_installs_nothing(
    case: str, booted_system: BootedSystem, site_root: Path, prefect_server: PrefectServer
) -> None:
    user, preparation, message = BAD_INPUT[case]
    pool = f"bad-{case}"
    repo = build_warehouse(
        site_root, pool, work_pool=pool, worker_user=user, prefect_api_url=prefect_server.api_url
    )
    booted_system.copy_in(repo)
    checkout = f"/root/{pool}"
    booted_system.run(["git", "clone", "-q", str(repo), checkout], check=True)
    for argv in preparation:
        booted_system.run(argv, check=True)
    result = booted_system.run(["scripts/install-worker.sh"], cwd=checkout)
    assert result.returncode != 0
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {message}"), result.stderr
    unit = f"prefect-worker-{pool}.service"
    assert not booted_system.path(f"/etc/systemd/system/{unit}").exists()
    assert booted_system.systemctl("is-enabled", unit).stdout.strip() in ("not-found", "")
    assert not booted_system.path(f"/opt/prefect-worker-{pool}").exists()


# --- 1. install as the README says ----------------------------------------------------------


def test_install_enables_and_starts_the_worker_online_under_its_host_name(
    worker_site: WorkerSite,
) -> None:
    assert worker_site.is_active()
    assert worker_site.system.systemctl("is-enabled", UNIT).stdout.strip() == "enabled"
    name = worker_site.wait_worker_online()
    assert name == f"{POOL}-{worker_site.hostname()}"
    assert "Wrote /etc/prefect-worker/booted.env" in worker_site.install.stdout
    # The service runs as the worker user with uv trusting the machine's CA store.
    shown = worker_site.system.systemctl("show", "-p", "User", "-p", "Environment", UNIT).stdout
    assert f"User={WORKER_USER}" in shown and "UV_SYSTEM_CERTS=1" in shown


# --- 2-4. runs in both modes; stop during the first venv install ----------------------------


def stop_and_wait(site: WorkerSite, run_id: str) -> tuple[dict, float]:
    """`systemctl stop`, then the run's terminal state (within 30 s) and the stop's seconds;
    the unit's journal in the failure message if the run is not terminal by then."""
    started = time.monotonic()
    site.system.systemctl("stop", UNIT, check=True)
    seconds = time.monotonic() - started
    try:
        return site.api.wait_terminal(run_id, timeout=30), seconds
    except TimeoutError as error:
        journal = "\n".join(site.journal().splitlines()[-80:])
        raise AssertionError(f"{error}\nstop took {seconds:.1f}s; journal:\n{journal}") from None


def venvs(site: WorkerSite) -> list[str]:
    """The venvs anywhere under the worker's home (a pyvenv.cfg marks one)."""
    found = site.system.run(["find", HOME, "-name", "pyvenv.cfg"], check=True).stdout.split()
    return sorted(path.removesuffix("/pyvenv.cfg") for path in found)


def test_stop_during_the_first_pipenv_install_crashes_the_run_and_the_next_recovers(
    worker_site: WorkerSite,
) -> None:
    site, venv = worker_site, f"{VENVS}/prefect-{PIPENV.slug}"
    run_id = site.run(PIPENV.deployment)
    # Stop once pipenv has begun the venv (its python exists) but not finished the install.
    deadline = time.monotonic() + 180
    while not site.system.path(f"{venv}/bin/python").exists():
        assert time.monotonic() < deadline, logs_of(site, run_id)
        time.sleep(0.2)
    assert not site.system.path(f"{venv}/.prefect-installed").exists()
    stopped, stop_seconds = stop_and_wait(site, run_id)
    assert stopped["state_type"] == "CRASHED", stopped["state"]
    assert stop_seconds < 60
    assert site.rows(sink(PIPENV), PIPENV.table) == 0
    # Started again, the next run rebuilds the half-built venv and loads the file once.
    site.system.systemctl("start", UNIT, check=True)
    next_id = site.run(PIPENV.deployment)
    run = site.api.wait_terminal(next_id, timeout=400)
    assert run["state_type"] == "COMPLETED", logs_of(site, next_id)
    assert f"installing dependencies into {venv}" in "\n".join(
        site.api.logs_with(next_id, "installing dependencies")
    )
    assert site.system.path(f"{venv}/.prefect-installed").exists()
    assert site.rows(sink(PIPENV), PIPENV.table) == SAMPLE_ROWS
    assert f"loaded {SAMPLE_ROWS} rows from /srv/prh/landing/{PIPENV.slug}/" in site.journal()


def test_uv_run_completes_through_the_service_trusting_the_system_ca_store(
    worker_site: WorkerSite,
) -> None:
    site = worker_site
    run_id = site.run(UV.deployment)
    run = site.api.wait_terminal(run_id, timeout=300)
    assert run["state_type"] == "COMPLETED", logs_of(site, run_id)
    assert site.rows(sink(UV), UV.table) == SAMPLE_ROWS
    journal = site.journal()
    assert f"loaded {SAMPLE_ROWS} rows from /srv/prh/landing/{UV.slug}/" in journal


def error_lines(site: WorkerSite, run_id: str) -> list[str]:
    logs = "\n".join(site.api.logs_with(run_id, "error: "))
    return [line for line in logs.splitlines() if line.startswith("error: ")]


def test_a_none_project_loads_on_the_worker_python_once_its_readme_install_ran(
    worker_site: WorkerSite,
) -> None:
    """dependency_manager=none: ingest.py runs on the worker venv's Python, which has the
    engine but lacks the package the team's transform.py imports until the project README's
    worker install (its pinned requirements.txt through install-worker.sh) ran, as root from
    the warehouse checkout."""
    site = worker_site
    run_id = site.run(NONE.deployment)
    run = site.api.wait_terminal(run_id, timeout=180)
    assert run["state_type"] == "FAILED", logs_of(site, run_id)
    (error,) = error_lines(site, run_id)
    assert error.startswith("error: ingest.py cannot start: ") and TEAM_PACKAGE[0] in error
    assert WORKER_VENV in error, error  # the Python to install into
    assert [task["run_count"] for task in site.api.task_runs(run_id)] == [1]  # not retried
    # The README's lines as written; no sudo inside, where they run as root already.
    sudo = f"{site.root}/sudo-bin"
    sudo_stand_in(site.system.path(sudo))
    commands = readme_worker_install(site.root / "projects" / NONE.slug)
    assert "--requirements" in commands
    env = {"PATH": f"{sudo}:{CLEAN_ENV['PATH']}"}
    installed = site.system.run(["bash", "-euc", commands], cwd=CHECKOUT, env=env, timeout=600)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "No restart needed" in installed.stdout  # packages added: each run starts a Python
    next_id = site.run(NONE.deployment)
    run = site.api.wait_terminal(next_id, timeout=180)
    assert run["state_type"] == "COMPLETED", logs_of(site, next_id)
    assert site.rows(sink(NONE), NONE.table) == SAMPLE_ROWS
    assert f"loaded {SAMPLE_ROWS} rows from {landing(NONE)}" in site.journal()
    assert set(venvs(site)) <= {f"{VENVS}/prefect-{spec.slug}" for spec in PROJECTS}


def test_second_runs_reuse_the_one_shared_venv_of_each_project(worker_site: WorkerSite) -> None:
    site = worker_site
    for spec in PROJECTS:
        run_id = site.run(spec.deployment)
        run = site.api.wait_terminal(run_id, timeout=180)
        assert run["state_type"] == "COMPLETED", logs_of(site, run_id)
        assert "is up to date" in "\n".join(site.api.logs_with(run_id, "is up to date"))
        assert site.rows(sink(spec), spec.table) == SAMPLE_ROWS
    assert venvs(site) == sorted(f"{VENVS}/prefect-{spec.slug}" for spec in PROJECTS)


def test_bad_source_file_fails_the_run_with_one_line_and_keeps_the_sink(
    worker_site: WorkerSite,
) -> None:
    site = worker_site
    source = site.system.path(landing(PIPENV))
    good = source.read_bytes()
    source.write_bytes(b"this is not a workbook\n")
    try:
        run_id = site.run(PIPENV.deployment)
        run = site.api.wait_terminal(run_id, timeout=180)
    finally:
        source.write_bytes(good)
    logs = site.api.logs_with(run_id, "error: ")
    assert run["state_type"] == "FAILED", logs
    errors = [line for line in "\n".join(logs).splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and landing(PIPENV) in errors[0], logs
    assert site.rows(sink(PIPENV), PIPENV.table) == SAMPLE_ROWS
    assert [task["run_count"] for task in site.api.task_runs(run_id)] == [1]


def test_two_runs_of_one_deployment_never_overlap(worker_site: WorkerSite) -> None:
    """The first run is held in its ingest (busy sink) while the second is offered to the
    worker (limit: CPU count): the deployment's limit 1 makes the second wait for the slot."""
    site = worker_site
    locker = site.lock_sink(sink(UV))
    try:
        first_id = site.run(UV.deployment)
        site.wait_for_process("ingest.py")
        second_id = site.run(UV.deployment)
        deadline = time.monotonic() + 60
        while "AwaitingConcurrencySlot" not in site.api.state_names(second_id):
            assert time.monotonic() < deadline, site.api.state_names(second_id)
            time.sleep(0.5)
    finally:
        release(locker)
    runs = [site.api.wait_terminal(run_id, timeout=180) for run_id in (first_id, second_id)]
    assert [run["state_type"] for run in runs] == ["COMPLETED", "COMPLETED"], runs
    first, second = runs
    assert second["start_time"] >= first["end_time"]
    assert site.rows(sink(UV), UV.table) == SAMPLE_ROWS


def test_stop_mid_run_crashes_it_and_the_next_run_loads_once(worker_site: WorkerSite) -> None:
    """The ingest waits on the busy sink when `systemctl stop` comes; the run's clone is in
    the service's private /tmp meanwhile."""
    site = worker_site
    locker = site.lock_sink(sink(UV))
    try:
        run_id = site.run(UV.deployment)
        site.wait_for_process("ingest.py")
        clones = site.system.run(
            ["sh", "-c", "find /tmp -path '*/prefect/sync-venv.sh' 2>/dev/null"]
        ).stdout.split()
        private = f"/tmp/systemd-private-*-{UNIT}-*/tmp/*"  # noqa: S108 (the service's /tmp)
        assert clones and all(fnmatch.fnmatch(path, private) for path in clones), clones
        stopped, _ = stop_and_wait(site, run_id)
        assert stopped["state_type"] == "CRASHED", stopped["state"]
    finally:
        release(locker)
    assert site.rows(sink(UV), UV.table) == SAMPLE_ROWS
    site.system.systemctl("start", UNIT, check=True)
    next_id = site.run(UV.deployment)
    run = site.api.wait_terminal(next_id, timeout=180)
    assert run["state_type"] == "COMPLETED", logs_of(site, next_id)
    assert site.rows(sink(UV), UV.table) == SAMPLE_ROWS


# --- 5. SIGKILL of the whole unit (checked last: the automation needs its window) ------------

KILLED: dict[str, float | str] = {}


def test_sigkill_of_the_unit_mid_run_then_the_service_restarts(worker_site: WorkerSite) -> None:
    site = worker_site
    locker = site.lock_sink(HARD_KILL_SINK)
    try:
        run_id = site.run(f"{UV.flow}/{HARD_KILL}")
        site.api.wait_for(run_id, {"RUNNING"}, timeout=120)
        site.api.wait_for_event(
            "prefect.flow-run.heartbeat", f"prefect.flow-run.{run_id}", timeout=90
        )
        site.system.systemctl("kill", "--signal=SIGKILL", UNIT, check=True)
        KILLED.update(run_id=run_id, at=time.monotonic())
        assert site.api.flow_run(run_id)["state_type"] == "RUNNING"
    finally:
        release(locker)
    # Restart=always brings the worker back; the killed run stays Running for now.
    time.sleep(1)
    site.wait_active(timeout=60)


# --- 6. reboot ------------------------------------------------------------------------------


def test_after_a_reboot_the_service_is_back_and_takes_the_next_run(
    worker_site: WorkerSite,
) -> None:
    site = worker_site
    site.system.reboot()
    site.wait_active(timeout=60)
    site.wait_worker_online()
    run_id = site.run(PIPENV.deployment)
    run = site.api.wait_terminal(run_id, timeout=180)
    assert run["state_type"] == "COMPLETED", logs_of(site, run_id)
    assert site.rows(sink(PIPENV), PIPENV.table) == SAMPLE_ROWS


# --- 7. the sandbox's score inside ----------------------------------------------------------


def test_systemd_analyze_security_scores_the_unit_at_most_2_5(worker_site: WorkerSite) -> None:
    result = worker_site.system.run(["systemd-analyze", "security", "--no-pager", UNIT])
    assert exposure_level(result.stdout) <= 2.5, result.stdout


# --- 8. re-install ----------------------------------------------------------------------------


def test_install_again_is_idempotent_and_says_whether_to_restart(worker_site: WorkerSite) -> None:
    site = worker_site
    unit_file = f"/etc/systemd/system/{UNIT}"
    before = (site.file_digest(unit_file), site.main_pid(), venv_id(site))
    again = site.install_worker()
    assert again.returncode == 0, again.stdout + again.stderr
    assert "No restart needed" in again.stdout and "Kept /etc/prefect-worker" in again.stdout
    assert (site.file_digest(unit_file), site.main_pid(), venv_id(site)) == before
    # A changed limit is applied to the drop-in, and the installer says to restart.
    changed = site.install_worker(WORKER_LIMIT="1")
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert f"sudo systemctl restart {UNIT}" in changed.stdout
    assert "No restart needed" not in changed.stdout
    assert site.main_pid() == before[1]  # told, not done: runs in progress are not cut
    site.system.systemctl("restart", UNIT, check=True)
    site.wait_active()
    assert site.system.run(["ls", CHECKOUT]).returncode == 0


def venv_id(site: WorkerSite) -> str:
    """Inode of the worker venv's python and its package set: equal means reused as is."""
    inode = site.system.run(["stat", "-c", "%i", f"{WORKER_VENV}/bin/python"], check=True).stdout
    freeze = site.system.run([f"{WORKER_VENV}/bin/python", "-m", "pip", "freeze", "--all"]).stdout
    return inode.strip() + "\n" + freeze


# --- 5 (end). the killed run is crashed by the zombie automation, its slot free -------------


def test_the_sigkilled_run_is_crashed_by_the_zombie_automation_and_frees_its_slot(
    worker_site: WorkerSite,
) -> None:
    site = worker_site
    assert KILLED, "the SIGKILL test did not run"
    (automation,) = [
        automation
        for automation in site.api.post("/automations/filter", {})
        if automation["name"] == ZOMBIE_AUTOMATION
    ]
    heartbeat = 30.0  # PREFECT_FLOWS_HEARTBEAT_FREQUENCY in the unit
    bound = float(KILLED["at"]) + heartbeat + automation["trigger"]["within"] + 20
    run = site.api.wait_terminal(str(KILLED["run_id"]), timeout=max(bound - time.monotonic(), 1))
    assert run["state_type"] == "CRASHED", run["state"]
    deployment = site.api.deployment(f"{UV.flow}/{HARD_KILL}")
    assert deployment["global_concurrency_limit"]["active_slots"] == 0
    next_id = site.run(f"{UV.flow}/{HARD_KILL}")
    assert site.api.wait_terminal(next_id, timeout=180)["state_type"] == "COMPLETED"
    assert site.rows(HARD_KILL_SINK, UV.table) == SAMPLE_ROWS
