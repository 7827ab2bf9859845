"""5. Latency from `prefect deployment run` to COMPLETED for a warm trivial flow: a worker started
as the generated systemd unit starts it vs `prefect worker start` on Prefect's defaults."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path

from support.flow_runs import TERMINAL, PrefectApi, run_deployment
from support.git import bare_repo
from support.processes import managed_process
from support.systemd import Unit, command_line
from support.warehouse import bake_warehouse

from benchmarks.common import (
    BIN,
    PYTHON,
    REPO_DIR,
    BenchError,
    Context,
    Section,
    Target,
    progress,
    quiet,
    run_timed,
    with_server,
)

POOL = "bench-latency"
FLOW = "bench-trivial"
DEPLOYMENT = f"{FLOW}/{FLOW}"
WORKER_VENV = f"/opt/prefect-worker-{POOL}/venv"  # the unit's path; here: the bench venv
NEVER = "0 0 1 1 *"  # a schedule that cannot fire during the bench
TRIVIAL_FLOW = f'''from prefect import flow


@flow(name="{FLOW}")
def trivial() -> str:
    return "ok"
'''
TARGET_SECONDS = 3.0
# How often a worker asks the server for runs (Prefect's default: every 10 s).
FAST_POLL = "PREFECT_WORKER_QUERY_SECONDS"


def measure(ctx: Context) -> list[Section]:
    reps = ctx.sizes.repetitions
    section = Section(5, "Latency: `prefect deployment run` to COMPLETED, warm trivial flow")
    root = ctx.folder("latency")
    server = ctx.server
    env = with_server(os.environ, server)
    deploy_trivial_flow(root, env)
    api = PrefectApi(server.api_url)
    unit_argv, unit_env = unit_worker(root, env)
    default_argv = [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process"]
    for config, label, argv, worker_env in (
        ("unit", "generated unit", unit_argv, unit_env),
        ("defaults", "Prefect's defaults", default_argv, env),
    ):
        progress(f"latency: worker with {label}, 1 warm-up + {reps} runs")
        log = root / f"worker-{config}.log"
        with managed_process(argv, env=worker_env, log_path=log, cwd=root) as worker:
            worker.wait_for_log("started!", timeout=90)
            runs = [timed_run(api, env) for _ in range(reps + 1)][1:]
        section.add(f"{config}-total", f"{label}: run -> COMPLETED", "s", [r[0] for r in runs])
        section.add(
            f"{config}-cli", f"{label}: `prefect deployment run` returns", "s", [r[1] for r in runs]
        )
        section.add(
            f"{config}-pickup",
            f"{label}: created -> Running (worker poll, clone, process start)",
            "s",
            [r[2] for r in runs],
        )
        section.add(f"{config}-body", f"{label}: Running -> COMPLETED", "s", [r[3] for r in runs])
    section.targets.append(
        Target(
            "run -> COMPLETED <= 3 s (generated unit)",
            "unit-total",
            TARGET_SECONDS,
            at_most=True,
            note_if_missed=why_slow(section),
        )
    )
    section.notes.append(
        "The flow returns a constant; its bare git repo is on local disk and the worker has run "
        "it once before (warm). The clock starts before `prefect deployment run` is launched (the "
        "CLI's own start is part of what a person waits for) and stops when the API first shows "
        "COMPLETED (polled every 50 ms). The worker runs as the generated systemd unit's "
        "ExecStart= and Environment= say (--limit, PATH), against a local `prefect server "
        "start`; the defaults worker is a plain `prefect worker start --pool ... --type process`."
    )
    return [section]


def why_slow(section: Section) -> str:
    """Where the unit's wait goes, from the measured breakdown, and what is left to gain."""
    median = {f.key: f.median for f in section.figures}
    return (
        f"Of the {median['unit-total']:.1f} s, `prefect deployment run` itself takes "
        f"{median['unit-cli']:.1f} s (a new Python importing Prefect; a run started from a "
        "schedule, the UI or the API skips it), the worker "
        f"{median['unit-pickup']:.1f} s from the run's creation to Running: its next poll (the "
        f"unit sets {FAST_POLL}=1 against Prefect's 10 s), a clone of the repo and a new Python "
        "process for the run, which imports Prefect again; the flow itself "
        f"{median['unit-body']:.2f} s. The process per run is how the process worker isolates "
        "runs; only a long-lived runner (`flow.serve`) would avoid it, without that isolation."
    )


def deploy_trivial_flow(root: Path, env: dict[str, str]) -> None:
    """A one-file flow in its own bare git repo, deployed to POOL with a schedule that never
    fires during the bench."""
    source = root / FLOW
    (source / "flows").mkdir(parents=True)
    (source / "flows" / "trivial.py").write_text(TRIVIAL_FLOW)
    bare = bare_repo(source, root / "git")
    entry = {FLOW: {"repo": str(bare), "entrypoint": "flows/trivial.py:trivial", "cron": NEVER}}
    flows_file = root / "flows.json"
    flows_file.write_text(json.dumps(entry))
    run_timed(
        [PYTHON, "-m", "prefect", "work-pool", "create", POOL, "--type", "process"],
        cwd=root,
        env=env,
    )
    run_timed(
        [PYTHON, "-m", "benchmarks.loop_deploy", str(flows_file), POOL], cwd=REPO_DIR, env=env
    )


def unit_worker(root: Path, env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The generated unit's ExecStart= and Environment=, with its venv path mapped to ours."""
    with quiet():
        warehouse = bake_warehouse(root / "warehouse", work_pool=POOL, flows={})
    unit = Unit.read(warehouse / "systemd" / f"prefect-worker-{POOL}.service")
    worker_env = dict(env)
    for name, value in unit.environment().items():
        worker_env[name] = value.replace(WORKER_VENV, sys.prefix)
    exec_start = unit.one("ExecStart").replace(WORKER_VENV, sys.prefix)
    return command_line(exec_start, worker_env, {"H": "bench"}), worker_env


def timed_run(api: PrefectApi, env: dict[str, str]) -> tuple[float, float, float, float]:
    """(total, CLI, created -> Running, Running -> COMPLETED) seconds of one deployment run."""
    started = time.monotonic()
    run_id = run_deployment(DEPLOYMENT, env)
    cli = time.monotonic() - started
    deadline = started + 120
    while (run := api.flow_run(run_id))["state_type"] not in TERMINAL:
        if time.monotonic() > deadline:
            raise BenchError(f"flow run {run_id} still {run['state_name']} after 120 s")
        time.sleep(0.05)
    total = time.monotonic() - started
    if run["state_type"] != "COMPLETED":
        raise BenchError(f"flow run {run_id} ended {run['state_name']}: {run['state']}")
    created, begun, ended = (stamp(run[key]) for key in ("created", "start_time", "end_time"))
    return total, cli, begun - created, ended - begun


def stamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()
