"""The warehouse's CI (.github/workflows/deploy.yml): valid, running the commands its README
lists, and those commands work offline where they can (the e2e tests run --plan and the
deploy against a live server)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from prh_ingest import naming
from prh_ingest.deploy import Warehouse
from support.commands import BIN, REPO_DIR, run, run_python
from support.services import offline_env
from support.warehouse import CLINIC_CAL

WORKFLOW = ".github/workflows/deploy.yml"


@pytest.fixture(scope="module")
def warehouse(cookies_session) -> Path:
    result = cookies_session.bake(
        extra_context={"flows": CLINIC_CAL}, template=str(REPO_DIR / "warehouse-template")
    )
    assert result.exit_code == 0, result.exception
    return Path(result.project_path)


def workflow_commands(workflow: dict) -> list[str]:
    """Each job's commands in order, once each; of a multi-line script, its prw_deploy.py call."""
    commands: list[str] = []
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            command = step.get("run", "").strip()
            if "\n" in command:
                command = re.search(r"python prefect/prw_deploy\.py [^>]*", command)[0].strip()
            if command and command not in commands:
                commands.append(command)
    return commands


def readme_ci_commands(readme: str) -> list[str]:
    """The code block of the README's "Deploy from CI" section, comments dropped."""
    section = readme.split("## Deploy from CI", 1)[1].split("\n## ", 1)[0]
    block = section.split("```\n", 2)[1]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]


def test_the_workflow_parses_and_runs_the_readmes_commands(warehouse: Path) -> None:
    workflow = yaml.safe_load((warehouse / WORKFLOW).read_text())
    assert set(workflow["jobs"]) == {"check", "apply"}
    assert workflow["jobs"]["check"]["if"] == "github.event_name == 'pull_request'"
    assert workflow["jobs"]["apply"]["if"] == "github.event_name == 'push'"
    assert workflow[True]["push"]["branches"] == ["main"]  # YAML 1.1 reads `on:` as True
    assert set(workflow["env"]) >= {"PREFECT_API_URL", "PREFECT_API_AUTH_STRING"}
    plan_step = next(s for s in workflow["jobs"]["check"]["steps"] if s.get("name") == "plan")
    assert plan_step["if"] == "env.PREFECT_API_URL != ''"
    assert "$GITHUB_STEP_SUMMARY" in plan_step["run"]
    readme = (warehouse / "README.md").read_text()
    assert workflow_commands(workflow) == readme_ci_commands(readme)


def test_the_plan_step_fails_only_on_an_error(warehouse: Path, tmp_path: Path) -> None:
    """Exit 2 (changes) passes the pull request; exit 1 (no plan) fails it."""
    workflow = yaml.safe_load((warehouse / WORKFLOW).read_text())
    plan_step = next(s for s in workflow["jobs"]["check"]["steps"] if s.get("name") == "plan")
    for exit_code, passes in ((0, True), (2, True), (1, False)):
        fake = tmp_path / f"exit-{exit_code}"
        (fake / "bin").mkdir(parents=True)
        (fake / "bin/python").write_text(f"#!/bin/sh\necho planned\nexit {exit_code}\n")
        (fake / "bin/python").chmod(0o755)
        summary = fake / "summary.md"
        env = {"PATH": f"{fake / 'bin'}:/usr/bin:/bin", "GITHUB_STEP_SUMMARY": str(summary)}
        result = run(["bash", "-e", "-c", plan_step["run"]], fake, env)
        assert (result.returncode == 0) is passes, (exit_code, result.stdout, result.stderr)
        assert "```\nplanned\n```" in summary.read_text()


def test_verify_units_accepts_the_generated_units(warehouse: Path) -> None:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    result = run(["scripts/verify-units.sh"], warehouse, env)
    assert result.returncode == 0, result.stdout + result.stderr
    units = sorted(path.name for path in (warehouse / "systemd").glob("*.service"))
    assert result.stdout == f"systemd-analyze verify: {' '.join(units)} OK\n"


def test_verify_units_names_a_broken_unit(warehouse: Path, tmp_path: Path) -> None:
    broken = tmp_path / "warehouse"
    run(["cp", "-a", str(warehouse), str(broken)], tmp_path)
    unit = broken / "systemd/prefect-services.service"
    unit.write_text(unit.read_text().replace("[Service]\n", "[Service]\nRestartSecs=10\n"))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    result = run(["scripts/verify-units.sh"], broken, env)
    assert result.returncode == 1
    assert "RestartSecs" in result.stderr
    assert result.stderr.endswith(
        "error: systemd-analyze verify rejected the units in systemd/ (see above)\n"
    )


def test_the_ci_dry_run_fails_a_bad_hand_edit_of_flows_json(
    warehouse: Path, tmp_path: Path
) -> None:
    """A pull request that breaks prefect/flows.json fails the check job's offline step with
    one line naming the entry and the key; the plan and apply steps would stop the same way."""
    edited = tmp_path / "warehouse"
    run(["cp", "-a", str(warehouse), str(edited)], tmp_path)
    flows_json = edited / "prefect/flows.json"
    flows_json.write_text(flows_json.read_text().replace('"0 6 * * *"', '"0 6 * * * *"'))
    workflow = yaml.safe_load((edited / WORKFLOW).read_text())
    assert "python prefect/prw_deploy.py --dry-run" in workflow_commands(workflow)
    result = run_python(["prefect/prw_deploy.py", "--dry-run"], edited, offline_env(tmp_path))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "error: prefect/flows.json['clinic-cal-epic-ingest'].cron: '0 6 * * * *' is not a "
        "5-field cron expression like '0 6 * * *'\n"
    )


@pytest.mark.parametrize("option", ["--plan", "--resume", ""], ids=["plan", "resume", "deploy"])
def test_without_an_api_url_nothing_runs_against_a_throwaway_server(
    option: str, warehouse: Path, tmp_path: Path
) -> None:
    """Prefect without PREFECT_API_URL starts an ephemeral server: a deploy there would
    report success and change nothing real."""
    argv = ["prefect/prw_deploy.py"] + ([option] if option else [])
    argv += ["clinic-cal-epic-ingest"] if option == "--resume" else []
    result = run_python(argv, warehouse, offline_env(tmp_path))
    assert result.returncode == (2 if option == "" else 1)
    assert result.stderr == "error: PREFECT_API_URL is not set: export it (see the README)\n"


def test_the_marker_tag_is_the_contracts(warehouse: Path) -> None:
    """prw_deploy.py names its warehouse by slug; the package derives the ownership tag from
    it as prh_ingest.naming says, and nowhere else."""
    text = (warehouse / "prefect/prw_deploy.py").read_text()
    assert f'    slug="{warehouse.name}",\n' in text
    assert "warehouse:" not in text
    flows = warehouse / "prefect/flows.json"
    named = Warehouse(slug=warehouse.name, work_pool="ingest", flows_file=flows)
    assert named.marker_tag == naming.warehouse_tag(warehouse.name) == "warehouse:prh-warehouse"


@pytest.mark.parametrize("option", ["--plan", ""], ids=["plan", "deploy"])
def test_an_unreachable_server_is_one_error_line(
    option: str, warehouse: Path, tmp_path: Path
) -> None:
    env = {**offline_env(tmp_path), "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    result = run_python(["prefect/prw_deploy.py"] + ([option] if option else []), warehouse, env)
    assert result.returncode == 1
    errors = result.stderr.splitlines()  # --plan also names the entry it could not clone
    assert all(line.startswith("error: ") for line in errors), result.stderr
    assert errors[-1].startswith("error: cannot "), result.stderr
    assert "http://127.0.0.1:9/api: " in errors[-1], result.stderr
