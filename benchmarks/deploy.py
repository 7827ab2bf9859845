"""4. Deploying N flows from local bare git repos: the generated warehouse's prw_deploy.py vs a
loop of `flow.from_source(...).deploy(...)`, against a local `prefect server start`."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from support.baking import FLOW_FILE, bake_ingest_project
from support.site import bare_repo
from support.warehouse import bake_warehouse

from benchmarks.common import (
    PYTHON,
    REPO_DIR,
    Comparison,
    Context,
    Section,
    Target,
    progress,
    quiet,
    run_timed,
    with_server,
)

POOL = "bench-deploy"
ENTRYPOINT = f"{FLOW_FILE}:clinic_cal_epic_ingest"
FLATNESS = 1.5  # the marginal cost per flow may grow this much from the 1->20 to the 20->100 step


def measure(ctx: Context) -> list[Section]:
    counts, reps = ctx.sizes.deploy_counts, ctx.sizes.repetitions
    section = Section(4, "Deploying N flows: prw_deploy.py vs a loop of `.deploy()`")
    root = ctx.folder("deploy")
    repos = bare_repos(root, max(counts))
    env = with_server(os.environ, ctx.server)
    run_timed(
        [PYTHON, "-m", "prefect", "work-pool", "create", POOL, "--type", "process"],
        cwd=root,
        env=env,
    )
    for count in counts:
        progress(f"deploy: {count} flow(s), prw_deploy.py and the loop, x{reps}")
        with quiet():
            warehouse = bake_warehouse(
                root / f"warehouse-{count}",
                flows=entries(repos[:count], f"prw-{count}"),
                work_pool=POOL,
                prefect_api_url=ctx.server.api_url,
            )
        loop_file = root / f"loop-{count}.json"
        loop_file.write_text(json.dumps(entries(repos[:count], f"loop-{count}")))
        prw = [PYTHON, "prefect/prw_deploy.py"]
        loop = [PYTHON, "-m", "benchmarks.loop_deploy", str(loop_file), POOL]
        section.add(
            f"prw-{count}",
            f"prw_deploy.py, {count} flow(s)",
            "s",
            [run_timed(prw, cwd=warehouse, env=env).seconds for _ in range(reps)],
        )
        section.add(
            f"loop-{count}",
            f"loop of `.deploy()`, {count} flow(s)",
            "s",
            [run_timed(loop, cwd=REPO_DIR, env=env).seconds for _ in range(reps)],
        )
        section.comparisons.append(
            Comparison(
                f"{count} flow(s): prw_deploy.py vs the loop", f"prw-{count}", f"loop-{count}"
            )
        )
    add_marginal_costs(section, counts)
    most = max(counts)
    section.targets.append(
        Target(
            f"{most} flows in <= 10 s", f"prw-{most}", 10, at_most=True, note_if_missed=NOTE_IF_SLOW
        )
    )
    section.notes.append(
        "Each flow is its own bare git repo on local disk (copies of one baked project's repo). "
        "Both commands run as a new process, so both pay Python's and Prefect's import; the "
        "first repetition creates the deployments, the others update them. prw_deploy.py also "
        "prints its plan (next run times) and checks every deployment id after deploying. The "
        "marginal cost per flow is the extra time per added flow between two sizes; flat means "
        f"it grows less than {FLATNESS}x from the 1->20 step to the 20->100 step."
    )
    return [section]


NOTE_IF_SLOW = (
    "prw_deploy.py loads flows one at a time: each `flow.from_source` clones the repo and "
    "imports the flow file in this process. See /tmp/bench-requests.md for the measured split "
    "and the proposed change (clone in parallel threads, then one `prefect.deploy`)."
)


def bare_repos(root: Path, count: int) -> list[Path]:
    """*count* bare git repos, each a copy of one baked ingest project's repo."""
    with quiet():
        project = bake_ingest_project(
            root / "projects", dependency_manager="none", source_format="csv"
        )
    first = bare_repo(project, root / "git")
    repos = [first]
    for index in range(1, count):
        copy = root / "git" / f"ingest-{index:03d}.git"
        shutil.copytree(first, copy)
        repos.append(copy)
    return repos


def entries(repos: list[Path], prefix: str) -> dict[str, dict]:
    """Warehouse flow entries (ARCHITECTURE.md's keys), one per repo."""
    return {
        f"{prefix}-{index:03d}": {"repo": str(repo), "entrypoint": ENTRYPOINT, "cron": "0 6 * * *"}
        for index, repo in enumerate(repos)
    }


def add_marginal_costs(section: Section, counts: tuple[int, ...]) -> None:
    """Seconds per added flow between consecutive sizes, per repetition, for both commands."""
    for tool in ("prw", "loop"):
        for low, high in zip(counts, counts[1:], strict=False):
            low_samples = section.figure(f"{tool}-{low}").samples
            high_samples = section.figure(f"{tool}-{high}").samples
            section.add(
                f"{tool}-marginal-{high}",
                f"{tool_name(tool)}: marginal cost per flow, {low}->{high}",
                "s/flow",
                [(b - a) / (high - low) for a, b in zip(low_samples, high_samples, strict=True)],
            )
    if len(counts) >= 3:
        first, last = (
            section.figure(f"prw-marginal-{counts[1]}"),
            section.figure(f"prw-marginal-{counts[-1]}"),
        )
        growth = last.median / first.median if first.median > 0 else float("inf")
        section.add(
            "prw-growth",
            f"prw_deploy.py: marginal cost growth "
            f"({counts[-2]}->{counts[-1]} over {counts[0]}->{counts[1]})",
            "x",
            [growth],
        )
        section.targets.append(
            Target("cost per flow flat as N grows", "prw-growth", FLATNESS, at_most=True)
        )


def tool_name(tool: str) -> str:
    return "prw_deploy.py" if tool == "prw" else "loop of `.deploy()`"
