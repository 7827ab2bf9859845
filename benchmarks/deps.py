"""1-3. The dependency step: warm, cold (pipenv vs uv), and the disk its venvs take.

Each mode runs the generated `prefect/sync-venv.sh` exactly as the flow's shell step does: from
the project folder, with prefect/.env's settings under the variables the run sets. WORKON_HOME,
UV_PROJECT_ENVIRONMENT and every download cache live in the bench's scratch folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values
from support.baking import FLOW_FILE, bake_ingest_project, local_run_env
from support.git import bare_repo

from benchmarks.common import (
    PYTHON,
    Comparison,
    Context,
    Section,
    Target,
    dir_bytes,
    progress,
    quiet,
    repeat,
    run_timed,
    with_server,
)

MB = 1_000_000
SYNC = ["prefect/sync-venv.sh"]
PIPENV_INSTALL = ["pipenv", "install"]  # the runbook's dependency step


def project_env(project: Path, folder: Path, caches: Path) -> dict:
    """What the flow's shell step sees: prefect/.env under the run's variables, with the venvs
    and the sink in *folder*, pip/pipenv/uv download caches in *caches*."""
    env = local_run_env(os.environ, project, folder / "venvs", folder / "sink.db")
    caches = {
        "PIP_CACHE_DIR": caches / "pip",
        "PIPENV_CACHE_DIR": caches / "pipenv",
        "XDG_CACHE_HOME": caches,
        "UV_CACHE_DIR": caches / "uv",
    }
    env.update({name: str(path) for name, path in caches.items()})
    settings = dotenv_values(project / "prefect" / ".env")
    return {**{k: v for k, v in settings.items() if v is not None}, **env}


class Mode:
    """One baked project of a dependency manager, and how to make its venv cold."""

    def __init__(self, ctx: Context, manager: str, folder: str = "deps") -> None:
        self.manager = manager
        self.root = ctx.folder(f"{folder}-{manager}")
        with quiet():
            self.project = bake_ingest_project(self.root / "projects", dependency_manager=manager)
        self.env = project_env(self.project, self.root, ctx.scratch / "cache")
        self.venv = (
            Path(self.env["WORKON_HOME"]) / self.env["PIPENV_CUSTOM_VENV_NAME"]
            if manager == "pipenv"
            else Path(self.env["UV_PROJECT_ENVIRONMENT"])
        )

    def as_generated(self) -> None:
        """The project as a fresh clone has it: no lock file (the template commits none)."""
        for lock in ("Pipfile.lock", "uv.lock"):
            (self.project / lock).unlink(missing_ok=True)

    def make_cold(self) -> None:
        """No venv (the first run on a machine); download caches stay warm."""
        self.as_generated()
        shutil.rmtree(self.venv, ignore_errors=True)

    def time(self, argv: list[str]) -> float:
        return run_timed(argv, cwd=self.project, env=self.env).seconds


def measure(ctx: Context) -> list[Section]:
    reps, warm_reps = ctx.sizes.repetitions, ctx.sizes.warm_repetitions
    warm = Section(1, "Dependency step on a warm run (venv exists, dependencies unchanged)")
    cold = Section(2, "Cold first run (no venv): pipenv vs uv, same dependencies")
    modes = {manager: Mode(ctx, manager) for manager in ("pipenv", "uv")}
    for manager, mode in modes.items():
        progress(f"deps: {manager} cold x{reps} (after one untimed run to fill the caches)")
        mode.make_cold()
        mode.time(SYNC)
        cold.add(
            f"{manager}-cold",
            f"{manager} mode: prefect/sync-venv.sh, no venv",
            "s",
            repeat(reps, lambda m=mode: m.time(SYNC), before=mode.make_cold),
        )
        progress(f"deps: {manager} warm x{warm_reps}")
        mode.as_generated()
        warm.add(
            f"{manager}-warm",
            f"{manager} mode: prefect/sync-venv.sh, warm",
            "s",
            repeat(warm_reps, lambda m=mode: m.time(SYNC), before=mode.as_generated),
        )
    pipenv, uv = modes["pipenv"], modes["uv"]
    progress(f"deps: plain pipenv install x{reps}, as generated and with a lock")
    warm.add(
        "pipenv-plain-fresh",
        "plain `pipenv install`, fresh clone (no lock, as generated)",
        "s",
        repeat(reps, lambda: pipenv.time(PIPENV_INSTALL), before=pipenv.as_generated),
    )
    pipenv.time(PIPENV_INSTALL)  # leaves Pipfile.lock
    warm.add(
        "pipenv-plain-locked",
        "plain `pipenv install`, Pipfile.lock committed",
        "s",
        repeat(reps, lambda: pipenv.time(PIPENV_INSTALL)),
    )
    uv.time(["uv", "sync", "--no-dev"])  # leaves uv.lock
    warm.add(
        "uv-plain-locked",
        "plain `uv sync --no-dev`, uv.lock committed",
        "s",
        repeat(reps, lambda: uv.time(["uv", "sync", "--no-dev"])),
    )
    warm.comparisons += [
        Comparison(
            "pipenv mode vs plain `pipenv install` (fresh clone)",
            "pipenv-warm",
            "pipenv-plain-fresh",
        ),
        Comparison(
            "pipenv mode vs plain `pipenv install` (lock committed)",
            "pipenv-warm",
            "pipenv-plain-locked",
        ),
        Comparison("uv mode vs plain `uv sync`", "uv-warm", "uv-plain-locked"),
    ]
    warm.targets += [
        Target("warm step (pipenv mode) <= 0.1 s", "pipenv-warm", 0.1, at_most=True),
        Target("warm step (uv mode) <= 0.1 s", "uv-warm", 0.1, at_most=True),
        Target(
            ">= 5x faster than plain `pipenv install` (fresh clone)",
            "pipenv-warm",
            5,
            at_most=False,
            ratio_of="pipenv mode vs plain `pipenv install` (fresh clone)",
        ),
        Target(
            ">= 5x faster than plain `pipenv install` (lock committed)",
            "pipenv-warm",
            5,
            at_most=False,
            ratio_of="pipenv mode vs plain `pipenv install` (lock committed)",
        ),
    ]
    warm.notes.append(
        "The project is the default bake (xlsx source): ingest.py needs SQLAlchemy and "
        'python-calamine, the generated Pipfile / pyproject.toml. "Warm": the shared venv exists '
        "and the dependency files match the ones it was built from; the step is the whole "
        "`prefect/sync-venv.sh` process (bash, and python3 for the hash and the locks). The "
        "runbook's plain `pipenv install` runs in the same project with the same shared venv "
        "(PIPENV_CUSTOM_VENV_NAME from prefect/.env): in a fresh clone of the generated project "
        "there is no Pipfile.lock, so it re-locks on every run; with a committed lock it still "
        "checks every package."
    )
    cold.comparisons.append(Comparison("uv mode vs pipenv mode, cold", "uv-cold", "pipenv-cold"))
    cold.targets.append(
        Target(
            "uv several (>= 3) times faster cold",
            "uv-cold",
            3,
            at_most=False,
            ratio_of="uv mode vs pipenv mode, cold",
        )
    )
    cold.notes.append(
        "Cold: the venv and any lock file are deleted before each repetition (the first run on a "
        "new worker); pip/pipenv/uv download caches are kept warm by one untimed run first, so "
        "the figure does not depend on the network. Each run locks (no lock is committed) and "
        "installs."
    )
    return [warm, cold, disk(ctx, pipenv)]


def disk(ctx: Context, mode: Mode) -> Section:
    """3. Bytes of venvs after N flow runs from fresh clones: ours vs the runbook's problem."""
    runs = ctx.sizes.disk_runs
    section = Section(3, f"Disk: venv bytes after {runs} runs of a flow")
    root = ctx.folder("disk")
    mode.as_generated()
    bare = bare_repo(mode.project, root)
    shared = root / "venvs"
    env = {**with_server(mode.env, ctx.server), "WORKON_HOME": str(shared)}
    progress(f"deps: {runs} flow runs from fresh clones (pipenv mode, local server)")
    for _ in range(runs):
        run_in_fresh_clone(bare, [PYTHON, FLOW_FILE], env)
    venvs = [path for path in shared.iterdir() if path.is_dir()]
    ours = dir_bytes(shared)
    section.add("ours-venvs", f"venvs after {runs} flow runs (pipenv mode)", "venvs", [len(venvs)])
    section.add("ours-bytes", f"venv bytes after {runs} flow runs (pipenv mode)", "MB", [ours / MB])

    naive_runs = min(runs, 2)
    progress(f"deps: {naive_runs} runs of the runbook's commands without PIPENV_CUSTOM_VENV_NAME")
    naive_home = root / "naive-venvs"
    naive_env = {k: v for k, v in env.items() if k != "PIPENV_CUSTOM_VENV_NAME"}
    naive_env["WORKON_HOME"] = str(naive_home)
    for _ in range(naive_runs):
        run_in_fresh_clone(
            bare, ["bash", "-c", "pipenv install && pipenv run python ingest.py"], naive_env
        )
    naive_venvs = [path for path in naive_home.iterdir() if path.is_dir()]
    per_run = dir_bytes(naive_home) / max(len(naive_venvs), 1)
    section.add(
        "naive-venvs",
        f"venvs after {naive_runs} runs without a shared venv",
        "venvs",
        [len(naive_venvs)],
    )
    section.add(
        "naive-bytes",
        f"venv bytes after {runs} runs without a shared venv "
        f"(computed: {runs} x the {per_run / MB:.1f} MB each run made)",
        "MB",
        [runs * per_run / MB],
    )
    section.comparisons.append(
        Comparison(
            f"disk after {runs} runs, shared venv vs one per run", "ours-bytes", "naive-bytes"
        )
    )
    section.targets.append(
        Target(f"exactly one venv after {runs} runs", "ours-venvs", 1, at_most=True)
    )
    section.notes.append(
        f"Each run clones the project's bare git repo into a new temporary folder, as the "
        f"process worker does, runs `python {FLOW_FILE}` (against a local Prefect server) and "
        "deletes the clone. The naive runs are the runbook's `pipenv install` + `pipenv run` "
        "with PIPENV_CUSTOM_VENV_NAME unset: pipenv names the venv after the clone's path, so "
        f"every run builds a new one; {naive_runs} were run for real and the {runs}-run figure "
        "is that per-run size times the run count. Sizes are deterministic (n = 1). The "
        "runbook's >800 MB per venv came from heavier dependencies; the ratio holds for any "
        "size: N runs, N venvs."
    )
    return section


def run_in_fresh_clone(bare: Path, argv: list[str], env: Mapping[str, str]) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-run-") as folder:
        clone = Path(folder) / "project"
        run_timed(["git", "clone", "-q", str(bare), str(clone)], cwd=Path(folder), env=env)
        run_timed(argv, cwd=clone, env=env)
