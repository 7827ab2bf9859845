"""Two projects pinned to two versions of the engine package run side by side through one
worker (issue 26): each flow's shell step runs its project's ingest.py in the project's own
uv environment, which holds the version that project pins, while the worker's own Python
holds the one version the warehouse pins. Both runs, triggered at once, complete and load
their rows."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prh_ingest import naming
from support import package
from support.baking import bake_ingest_project
from support.commands import BIN, run
from support.flow_runs import run_deployment
from support.git import bare_repo
from support.services import PrefectServer, running_prefect_server
from support.site import Layout, deployed_site, project

pytestmark = [pytest.mark.e2e, pytest.mark.network]

NEWER = "0.1.1"  # what the second project pins: this checkout's code as another release
WARD_A = project("ward-a", "epic", dependency_manager="uv", source_format="csv")
WARD_B = project("ward-b", "epic", dependency_manager="uv", source_format="csv")


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    with running_prefect_server(tmp_path_factory.mktemp("two-versions-server")) as server:
        yield server


def engine_version(python: Path) -> str:
    argv = [str(python), "-c", "import prh_ingest; print(prh_ingest.__version__)"]
    found = run(argv, python.parent)
    assert found.returncode == 0, found.stderr
    return found.stdout.strip()


@pytest.mark.timeout(900)  # two cold uv environments from the package registries
def test_two_projects_on_two_engine_versions_run_side_by_side(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    pins = [(WARD_A, package.wheel()), (WARD_B, package.wheel_as_version(NEWER))]
    assert package.version() != NEWER
    layout, flows = Layout(tmp_path), {}
    (tmp_path / "git").mkdir()
    (tmp_path / "sink").mkdir()
    for ward, wheel in pins:
        bare = tmp_path / "git" / f"{ward.slug}.git"
        baked = bake_ingest_project(
            tmp_path / "projects", **ward.answers, prh_ingest=wheel.as_uri(), git_repo_url=str(bare)
        )
        assert f"prh-ingest @ {wheel.as_uri()}" in (baked / "pyproject.toml").read_text()
        bare_repo(baked, tmp_path / "git")
        layout.landing(ward).parent.mkdir(parents=True)
        shutil.copy(layout.sample(ward), layout.landing(ward))
        flows[ward.flow] = {
            "repo": str(bare),
            "entrypoint": naming.flow_entrypoint(ward.flow),
            "cron": "0 6 * * *",
            "env": layout.flow_env(ward),
        }
    site = deployed_site(tmp_path, prefect_server, flows)
    api = site.api
    try:
        site.start_worker()
        ids: dict[str, str] = {}

        def trigger(ward_flow: str) -> None:
            ids[ward_flow] = run_deployment(f"{ward_flow}/{ward_flow}", prefect_server.env)

        threads = [threading.Thread(target=trigger, args=(ward.flow,)) for ward, _ in pins]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        finished = {flow: api.wait_terminal(run_id, timeout=600) for flow, run_id in ids.items()}
        for flow, run in finished.items():  # the one worker ran both (at once or in turn)
            logs = "\n".join(api.logs(ids[flow]))
            assert run["state_type"] == "COMPLETED", f"{flow}: {logs}"
    finally:
        site.pool.stop_all()
    for ward, _ in pins:
        assert layout.rows(ward) == 20, ward.slug
    versions = {
        ward.slug: engine_version(layout.uv_environment(ward) / "bin" / "python")
        for ward, _ in pins
    }
    assert versions == {"ward-a": package.version(), "ward-b": NEWER}
    assert engine_version(BIN / "python") == package.version()  # the worker's own: one
