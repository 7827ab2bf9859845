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
    deployer = Deployer(ctx)
    for count in counts:
        progress(f"deploy: re-deploying {count} flow(s), prw_deploy.py and the loop, x{reps}")
        for tool in TOOLS:
            deployer.run(tool, count, f"{tool}-{count}")  # untimed: creates the deployments
            section.add(
                f"{tool}-{count}",
                f"{TOOLS[tool]}, re-deploy {count} flow(s)",
                "s",
                [deployer.run(tool, count, f"{tool}-{count}") for _ in range(reps)],
            )
        section.comparisons.append(
            Comparison(
                f"re-deploy {count} flow(s): prw_deploy.py vs the loop",
                f"prw-{count}",
                f"loop-{count}",
            )
        )
    most = max(counts)
    progress(f"deploy: first deploy of {most} flows (new names each time), x{reps}")
    for tool in TOOLS:
        section.add(
            f"{tool}-first-{most}",
            f"{TOOLS[tool]}, first deploy of {most} flows",
            "s",
            [deployer.run(tool, most, f"{tool}-first{rep}-{most}") for rep in range(reps)],
        )
    section.comparisons.append(
        Comparison(
            f"first deploy of {most} flows: prw_deploy.py vs the loop",
            f"prw-first-{most}",
            f"loop-first-{most}",
        )
    )
    add_marginal_costs(section, counts)
    section.targets += [
        Target(
            f"re-deploy {most} flows in <= 10 s",
            f"prw-{most}",
            10,
            at_most=True,
            note_if_missed=NOTE_IF_SLOW,
        ),
        Target(
            f"first deploy of {most} flows in <= 10 s",
            f"prw-first-{most}",
            10,
            at_most=True,
            note_if_missed=NOTE_IF_SLOW,
        ),
    ]
    section.notes.append(
        "Each flow is its own bare git repo on local disk (copies of one baked project's repo). "
        "Both commands run as a new process, so both pay Python's and Prefect's import. "
        '"Re-deploy": every deployment exists already (the usual run, after a warehouse '
        'change), timed after one untimed run that created them; "first deploy": new '
        "deployment names each repetition, so every deployment and its schedule are created. "
        "prw_deploy.py also prints its plan (next run times) and checks the deployment ids. "
        "The marginal cost per flow is the extra time per added flow between two sizes; flat "
        f"means it grows less than {FLATNESS}x from the first step to the last."
    )
    return [section]


TOOLS = {"prw": "prw_deploy.py", "loop": "loop of `.deploy()`"}


class Deployer:
    """Runs either tool on the first N repos, under deployment names starting with a prefix."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.root = ctx.folder("deploy")
        self.repos = bare_repos(self.root, max(ctx.sizes.deploy_counts))
        self.env = with_server(os.environ, ctx.server)
        create_pool = [PYTHON, "-m", "prefect", "work-pool", "create", POOL, "--type", "process"]
        run_timed(create_pool, cwd=self.root, env=self.env)

    def run(self, tool: str, count: int, prefix: str) -> float:
        """Seconds the tool takes to deploy the first *count* repos as `<prefix>-NNN`."""
        flows = entries(self.repos[:count], prefix)
        if tool == "prw":
            cwd, argv = self.warehouse(prefix, flows), [PYTHON, "prefect/prw_deploy.py"]
        else:
            flows_file = self.root / f"{prefix}.json"
            flows_file.write_text(json.dumps(flows))
            cwd, argv = REPO_DIR, [PYTHON, "-m", "benchmarks.loop_deploy", str(flows_file), POOL]
        return run_timed(argv, cwd=cwd, env=self.env).seconds

    def warehouse(self, prefix: str, flows: dict[str, dict]) -> Path:
        """The warehouse baked with *flows* (once per prefix)."""
        folder = self.root / f"warehouse-{prefix}"
        if not folder.exists():
            with quiet():
                bake_warehouse(
                    folder, flows=flows, work_pool=POOL, prefect_api_url=self.ctx.server.api_url
                )
        return next(folder.iterdir())


NOTE_IF_SLOW = (
    "Profiled: prw_deploy.py loads flows one at a time and clones each repo twice "
    "(`flow.from_source`, then `.to_deployment`); every API call builds a new Prefect client "
    "with its TLS context (about 30 ms each, twice per deployment); each deployment infers a "
    "version from the warehouse checkout's own git history; and each is created with about 5 "
    "sequential API calls on a server sharing the 2 cores. What would reach it: "
    "`RunnerDeployment.from_storage` (one clone per flow) in a thread pool, one "
    '`SyncClientContext` around the run, `version_type="prefect:simple"`, and skipping the '
    "per-deployment read-back when every deployment got an id (measured here: 100 re-deploys "
    "about 1.3x faster, first deploys about 1.6x); creating the deployments concurrently "
    "would be the next step."
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
    for tool in TOOLS:
        for low, high in zip(counts, counts[1:], strict=False):
            low_samples = section.figure(f"{tool}-{low}").samples
            high_samples = section.figure(f"{tool}-{high}").samples
            section.add(
                f"{tool}-marginal-{high}",
                f"{TOOLS[tool]}: marginal cost per flow, {low}->{high}",
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
