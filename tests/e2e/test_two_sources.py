"""A second source added to a baked project by a template update, end to end: clinic-cal gets
cerner beside epic (`regenerate.py --add`), the warehouse takes the printed entry, and one
worker runs both flows at once. They share the project's one pipenv venv (installed once,
never corrupted) and neither load blocks the other's (PostgreSQL: a table per source)."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.flow_runs import run_deployment
from support.git import commit_all, git
from support.regeneration import cruft_project, edit, regenerate, template_repo
from support.services import PostgresServer, PrefectServer, running_prefect_server
from support.site import Site, deployed_site

pytestmark = [pytest.mark.e2e, pytest.mark.network]

FLOWS = ("clinic-cal-epic-ingest", "clinic-cal-cerner-ingest")
CERNER_CSV = "mrn,visit\n000123,2026-11-02\n000456,2026-11-03\n"


def add_cerner(project: Path) -> dict:
    """The update that adds the source; returns the warehouse entry it prints."""
    result = regenerate(project, "--add", json.dumps({"cerner": "csv"}))
    assert result.returncode == 0, result.stdout + result.stderr
    commit_all(project, "add the cerner source")
    line = next(line for line in result.stdout.splitlines() if "prw_deploy.py --add '" in line)
    return json.loads(line.split("'")[1])


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """A server of this test's own: it deploys `clinic-cal-epic-ingest`, the name the e2e
    site's deployment has too, and on the session's server would replace the site's."""
    with running_prefect_server(tmp_path_factory.mktemp("two-sources-server")) as server:
        yield server


def run_both(site: Site) -> dict[str, str]:
    """Trigger both deployments at the same moment; returns flow -> run id."""
    ids: dict[str, str] = {}

    def trigger(flow: str) -> None:
        ids[flow] = run_deployment(f"{flow}/{flow}", site.server.env)

    threads = [threading.Thread(target=trigger, args=(flow,)) for flow in FLOWS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return ids


@pytest.mark.timeout(900)  # a cold pipenv venv from PyPI, then two rounds of runs
def test_two_sources_run_at_once_through_one_worker(
    prefect_server: PrefectServer, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    bare = tmp_path / "git/clinic-cal.git"
    template = template_repo(tmp_path)
    project = cruft_project(
        template, tmp_path / "projects", dependency_manager="pipenv", git_repo_url=str(bare)
    )
    # The team's own dependency change: the PostgreSQL driver (the README says to add it).
    edit(
        project,
        "Pipfile",
        "[packages]\n",
        '[packages]\npsycopg = {extras = ["binary"], version = "==3.3.9"}\n',
        "PostgreSQL driver",
    )
    cerner_entry = add_cerner(project)
    assert list(cerner_entry) == ["clinic-cal-cerner-ingest"]
    bare.parent.mkdir()
    git(tmp_path, "clone", "-q", "--bare", str(project), str(bare))

    landing = tmp_path / "landing"
    landing.mkdir()
    shutil.copy(project / "data/sample.xlsx", landing / "epic.xlsx")
    (landing / "cerner.csv").write_text(CERNER_CSV)
    database = postgres_server.create_database()
    venvs = tmp_path / "venvs"
    shared_env = {
        "CLINIC_CAL_DATABASE_URL": postgres_server.url(database),
        "WORKON_HOME": str(venvs),
    }
    epic_entry = {
        "clinic-cal-epic-ingest": {
            "repo": str(bare),
            "entrypoint": "prefect/clinic-cal-epic-ingest.py:clinic_cal_epic_ingest",
            "cron": "0 6 * * *",
        }
    }
    flows = {**epic_entry, "clinic-cal-cerner-ingest": {**cerner_entry["clinic-cal-cerner-ingest"]}}
    flows["clinic-cal-epic-ingest"]["env"] = {
        **shared_env,
        "CLINIC_CAL_EPIC_SOURCE_FILE": str(landing / "epic.xlsx"),
    }
    flows["clinic-cal-cerner-ingest"]["env"] = {
        **shared_env,
        "CLINIC_CAL_CERNER_SOURCE_FILE": str(landing / "cerner.csv"),
    }
    assert flows["clinic-cal-cerner-ingest"]["repo"] == str(bare)
    site = deployed_site(tmp_path, prefect_server, flows)
    api = site.api
    try:
        site.start_worker()

        # Cold venv: both start at once; one installs, the other waits for it, both load.
        runs = run_both(site)
        finished = {flow: api.wait_terminal(run_id, timeout=420) for flow, run_id in runs.items()}
        logs = {flow: "\n".join(api.logs(run_id)) for flow, run_id in runs.items()}
        for flow, run in finished.items():
            assert run["state_type"] == "COMPLETED", f"{flow}: {logs[flow]}"
        assert sum("installing dependencies" in text for text in logs.values()) == 1, logs
        assert sorted(path.name for path in venvs.iterdir() if path.is_dir()) == [
            "prefect-clinic-cal"
        ]
        assert postgres_server.query(database, "SELECT count(*) FROM clinic_cal_epic") == [(20,)]
        assert postgres_server.query(
            database, "SELECT mrn FROM clinic_cal_cerner ORDER BY mrn"
        ) == [
            ("000123",),
            ("000456",),
        ]

        # Warm venv, epic's table locked by another session: cerner's load completes while
        # epic's waits; then epic's completes too.
        import psycopg

        with psycopg.connect(postgres_server.conninfo(database)) as blocker:
            blocker.execute("LOCK TABLE clinic_cal_epic IN ACCESS EXCLUSIVE MODE")
            runs = run_both(site)
            cerner = api.wait_terminal(runs["clinic-cal-cerner-ingest"], timeout=300)
            epic = api.flow_run(runs["clinic-cal-epic-ingest"])
            assert cerner["state_type"] == "COMPLETED"
            assert epic["state_type"] in ("PENDING", "RUNNING", "SCHEDULED"), epic["state_type"]
        epic = api.wait_terminal(runs["clinic-cal-epic-ingest"], timeout=300)
        assert epic["state_type"] == "COMPLETED"
        assert postgres_server.query(database, "SELECT count(*) FROM clinic_cal_epic") == [(20,)]
    finally:
        site.pool.stop_all()
