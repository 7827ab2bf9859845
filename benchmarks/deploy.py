"""4. Deploying N flows from local bare git repos: the generated warehouse's prw_deploy.py vs a
loop of `flow.from_source(...).deploy(...)`, against a local `prefect server start`."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from prh_ingest import naming
from support.baking import FLOW_NAME, bake_ingest_project
from support.git import bare_repo
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
ENTRYPOINT = naming.flow_entrypoint(FLOW_NAME)


def measure(ctx: Context) -> list[Section]:
    count, reps = ctx.sizes.deploy_flows, ctx.sizes.repetitions
    section = Section(4, f"Deploying {count} flows: prw_deploy.py vs a loop of `.deploy()`")
    deployer = Deployer(ctx)
    progress(f"deploy: {count} flows, prw_deploy.py and the loop, x{reps}")
    for tool in TOOLS:
        # The loop takes a minute a run, 4 to 15 times ours: once is enough to compare, and
        # keeps `make bench` short.
        runs = 1 if tool == "loop" else reps
        # New names each time: every deployment is created.
        first = [deployer.run(tool, count, f"{tool}-{count}-{rep}") for rep in range(runs)]
        section.add(f"{tool}-first", f"{TOOLS[tool]}, first deploy of {count} flows", "s", first)
        again = [deployer.run(tool, count, f"{tool}-{count}-0") for _ in range(runs)]
        section.add(tool, f"{TOOLS[tool]}, re-deploy {count} flows", "s", again)
    # The plan of the deployments just re-deployed: all unchanged.
    plans = [deployer.run("prw", count, f"prw-{count}-0", "--plan") for _ in range(reps)]
    section.add("plan", f"prw_deploy.py --plan, {count} unchanged", "s", plans)
    section.comparisons += [
        Comparison(
            f"first deploy of {count} flows: prw_deploy.py vs the loop", "prw-first", "loop-first"
        ),
        Comparison(f"re-deploy {count} flows: prw_deploy.py vs the loop", "prw", "loop"),
        Comparison(
            f"--plan of {count} flows vs the loop's re-deploy (Prefect has no plan)", "plan", "loop"
        ),
    ]
    for key, what, seconds, note in (
        ("prw", "re-deploy (unchanged)", 3, NOTE_IF_SLOW_UNCHANGED),
        ("prw-first", "first deploy", 10, NOTE_IF_SLOW_FIRST),
        ("plan", "--plan", 3, NOTE_IF_SLOW_UNCHANGED),
    ):
        section.targets.append(
            Target(
                f"{what} of {count} flows in <= {seconds} s",
                key,
                seconds,
                at_most=True,
                note_if_missed=note,
            )
        )
    section.notes.append(
        "Each flow is its own bare git repo on local disk (copies of one baked project's repo). "
        "Both commands run as a new process, so both pay Python's and Prefect's import. "
        '"First deploy": new deployment names each repetition, so every deployment and its '
        'schedule are created; "re-deploy": the same names again, every deployment exists (the '
        "usual run after a warehouse change: prw_deploy.py reads the server, finds nothing "
        "changed and writes nothing; the loop upserts every deployment). prw_deploy.py asks git "
        "for each repo's branch head (`git ls-remote`, 16 at a time) and clones (shallow, 8 at a "
        "time) only the repos whose head is not the commit recorded on their deployment (its "
        "version): all of them on a first deploy, none on a re-deploy; it reads each cloned "
        "flow's name and parameter schema from its source, and creates its work pool and "
        "automations if missing; `--plan` does the same reads without writing. A deploy writes "
        "each deployment as soon as its repo is read, while the others still clone; one write at "
        "first, one more after each answer up to 8, and one at a time once the server answers "
        "503 (SQLite refusing a colliding writer: this benchmark's server), which it retries "
        "after 0.05 s, not Prefect's 2 s; a flow shared by many deployments is created once. "
        "The entries set no env: their deployments carry no job variables for the server to "
        "validate (an entry with env would add that validation). Both tools share one server, "
        "so the loop runs against a database already holding ours' deployments and their "
        "scheduled runs. The loop runs once (n = 1): a minute a run, and 4 to 15 times ours."
    )
    return [section]


TOOLS = {"prw": "prw_deploy.py", "loop": "loop of `.deploy()`"}


class Deployer:
    """Runs either tool on the first N repos, under deployment names starting with a prefix."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.root = ctx.folder("deploy")
        self.repos = bare_repos(self.root, ctx.sizes.deploy_flows)
        self.env = with_server(os.environ, ctx.server)
        create_pool = [PYTHON, "-m", "prefect", "work-pool", "create", POOL, "--type", "process"]
        run_timed(create_pool, cwd=self.root, env=self.env)

    def run(self, tool: str, count: int, prefix: str, *options: str) -> float:
        """Seconds the tool takes to deploy the first *count* repos as `<prefix>-NNN`
        (prw_deploy.py with *options*, e.g. --plan)."""
        flows = entries(self.repos[:count], prefix)
        if tool == "prw":
            cwd = self.warehouse(prefix, flows)
            argv = [PYTHON, "prefect/prw_deploy.py", *options]
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


NOTE_IF_SLOW_UNCHANGED = (
    "Where the time goes, timed by phase at 100 unchanged flows, each its own repo (load "
    "average 5 to 6 from other work; whole run 3.2 to 3.5 s): importing prw_deploy.py 1.8 to "
    "2.5 s (1.1 s at load 1), about three quarters of it `import prefect` itself (its package "
    "start-up loads its settings, API client and context); 100 `git ls-remote`s 0.65 s, at "
    "the same time as reading the warehouse's deployments 0.7 s; reading the listed flows' "
    "deployments and comparing 0.1 to 0.2 s. Nothing is cloned. A `--plan` is that alone "
    "(1.8 s in this benchmark at load 4 to 7). A re-deploy of the same 100 measured about 3 s "
    "more here, and 3.2 s at load 5 in the phase timing: not profiled in this "
    "benchmark, where it runs right after the first deploys of 100 flows while the server "
    "still writes their scheduled runs. A re-deploy writes nothing (an unchanged deployment "
    "or automation is not rewritten, tests/test_warehouse_deploy.py); what is left is the "
    "import of Prefect, which a process that deploys pays once."
)
NOTE_IF_SLOW_FIRST = (
    "Where the time goes, timed by phase on first deploys of 100 flows (2026-12-05, before the "
    "run above): importing 1.0 s (`import prefect` alone 0.98 s); 100 shallow clones and "
    "reads 2 to 3 s, now beside the writes; the 100 creates about 55 ms each on the server, "
    "one at a time on SQLite, 5 to 6 s of its CPU (its scheduler writing the new runs "
    "meanwhile). What might go lower: a server whose database takes concurrent writes "
    "(PostgreSQL, section 9), or a server on cores of its own."
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
