"""`make demo`: the whole product on its defaults, in .scratch/.

1. Make the example ingest project as the README says (`cruft create . --skip transform.py`
   on its defaults, which also writes .cruft.json; cruft bakes the committed template):
   .scratch/clinic-cal/, then check it against the template (`scripts/regenerate.py --check`)
2. Bake a warehouse that schedules it (`--directory warehouse-template`): .scratch/prh-warehouse/
   and show its deployments with `prw_deploy.py --dry-run` (no server needed).
3. Run the flow locally on the bundled sample, as the runbook says, on Prefect's ephemeral
   default, then print where the rows landed.

Everything it writes (venvs, Prefect's home, the SQLite sink) stays under .scratch/.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import cruft
from cookiecutter.main import cookiecutter

REPO_DIR = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO_DIR), str(REPO_DIR / "tests")]
from prh_ingest import naming  # noqa: E402 (the template repo's naming contract)
from support import package  # noqa: E402 (the package as projects install it: a local build)

SCRATCH = REPO_DIR / ".scratch"
BIN = Path(sys.executable).parent


def answers(project: Path) -> dict[str, Any]:
    """The answers cruft recorded in the project's .cruft.json."""
    return json.loads((project / ".cruft.json").read_text())["context"]["cookiecutter"]


def step(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def bake_ingest_project() -> Path:
    step("Making the example ingest project (cruft create . --skip transform.py --no-input),"
         " its prh_ingest answer this checkout's package")
    engine = {"prh_ingest": package.answer()}  # this checkout's engine, not a release
    project = cruft.create(
        str(REPO_DIR), output_dir=SCRATCH, skip=["transform.py"], extra_context=engine
    )
    step("Checking it against the template (python scripts/regenerate.py --check)")
    subprocess.run([sys.executable, "scripts/regenerate.py", "--check"], cwd=project, check=True)
    return Path(project)


def bake_warehouse(project: Path) -> Path:
    step("Baking a warehouse that schedules it (cookiecutter . --directory warehouse-template)")
    given = answers(project)
    flow = naming.flow_name(given["project_slug"], given["source_name"])
    entry = naming.warehouse_entry(flow, given["git_repo_url"])
    warehouse = Path(
        cookiecutter(
            str(REPO_DIR),
            directory="warehouse-template",
            no_input=True,
            output_dir=str(SCRATCH),
            extra_context={"flows": entry},
        )
    )
    print(json.dumps(entry))
    dry_run = [sys.executable, "prefect/prw_deploy.py", "--dry-run"]
    subprocess.run(dry_run, cwd=warehouse, env=offline_env(), check=True)
    return warehouse


def offline_env() -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
        "PREFECT_HOME": str(SCRATCH / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        # the ephemeral server's first start migrates a new database: 20 s is short on a busy VM
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    }


def run_flow_locally(project: Path) -> tuple[Path, str]:
    """Run the project's flow on its sample; returns the database and the table."""
    given = answers(project)
    slug, source = given["project_slug"], given["source_name"]
    flow, setting = naming.flow_name(slug, source), naming.source_setting(slug, source)
    database = SCRATCH / "prh-data" / f"{slug}.db"
    sample = next((project / "data").glob("sample.*"))
    step(
        f"Running the flow locally: cd {project.relative_to(REPO_DIR)} && "
        f"{setting}=$PWD/data/{sample.name} python prefect/{flow}.py"
    )
    env = offline_env() | {
        setting: str(sample),
        naming.sink_setting(slug): f"sqlite:///{database}",  # instead of ~/prh-data
        "WORKON_HOME": str(SCRATCH / "virtualenvs"),  # the shared venv, instead of ~/.local
    }
    subprocess.run([sys.executable, f"prefect/{flow}.py"], cwd=project, env=env, check=True)
    return database, naming.table_name(slug, source)


def main() -> int:
    shutil.rmtree(SCRATCH, ignore_errors=True)
    SCRATCH.mkdir()
    project = bake_ingest_project()
    bake_warehouse(project)
    try:
        database, table = run_flow_locally(project)
    except subprocess.CalledProcessError as error:
        print(f"error: the flow failed (exit {error.returncode}); see above", file=sys.stderr)
        return 1
    with sqlite3.connect(database) as connection:
        rows = connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
    step(f"{rows} rows landed in table {table} of {database}")
    print(f"Inspect them with: sqlite3 {database} .dump")
    return 0


if __name__ == "__main__":
    sys.exit(main())
