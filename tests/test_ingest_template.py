"""The ingest-project template: every option combination bakes into a clean, working project."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest
from support.baking import (
    FLOW_FILE,
    FLOW_NAME,
    SAMPLE_ROWS,
    SINK_SETTING,
    SOURCE_SETTING,
    bake_ingest_project,
    cookiecutter_cli,
    local_run_env,
    run_flow_script,
    table_count,
    unrendered_files,
)
from support.commands import BIN, REPO_DIR, run
from support.services import offline_env

DEPENDENCY_MANAGERS = ["pipenv", "uv", "none"]
SOURCE_FORMATS = ["xlsx", "csv"]
USE_S3 = [False, True]

COMBINATIONS = [
    {"dependency_manager": manager, "source_format": source_format, "use_s3": use_s3}
    for manager, source_format, use_s3 in itertools.product(
        DEPENDENCY_MANAGERS, SOURCE_FORMATS, USE_S3
    )
] + [  # the database answer only changes the dependency files: once per manager
    {"dependency_manager": manager, "source_format": "csv", "use_s3": False}
    | {"database": "postgresql"}
    for manager in DEPENDENCY_MANAGERS
]
# Files only one option value may leave behind.
FILES_OF = {
    "pipenv": {"Pipfile", "prefect/sync-venv.sh"},
    "uv": {"pyproject.toml", ".python-version", "prefect/sync-venv.sh"},
    "none": {"requirements.txt", "requirements-dev.txt"},
}


def combination_id(answers: dict) -> str:
    s3 = "s3" if answers["use_s3"] else "local"
    database = answers.get("database", "sqlite")
    return f"{answers['dependency_manager']}-{answers['source_format']}-{s3}-{database}"


@pytest.fixture(scope="module", params=COMBINATIONS, ids=combination_id)
def answers(request: pytest.FixtureRequest) -> dict:
    return request.param


@pytest.fixture(scope="module")
def project(answers: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One bake per combination, shared by the tests below: they only read it (a test that
    runs something in the project runs it in its own copy)."""
    return bake_ingest_project(tmp_path_factory.mktemp("bake") / "out", **answers)


def test_bakes_with_contract_names(project: Path, answers: dict) -> None:
    assert project.name == "clinic-cal"
    flow_source = (project / FLOW_FILE).read_text()
    assert f'FLOW_NAME = "{FLOW_NAME}"' in flow_source
    assert "def clinic_cal_epic_ingest() -> None:" in flow_source
    assert (project / "data" / f"sample.{answers['source_format']}").is_file()
    assert not unrendered_files(project)


def test_keeps_only_the_chosen_options_files(project: Path, answers: dict) -> None:
    present = {str(path.relative_to(project)) for path in project.rglob("*") if path.is_file()}
    chosen = answers["dependency_manager"]
    assert FILES_OF[chosen] <= present
    for other, files in FILES_OF.items():
        if other != chosen:
            assert not (files - FILES_OF[chosen]) & present, f"{other} files left"
    assert len(list((project / "data").iterdir())) == 1
    if chosen != "none":
        assert os.access(project / "prefect" / "sync-venv.sh", os.X_OK)


def test_settings_file_has_production_values(project: Path, answers: dict) -> None:
    settings = (project / "prefect" / ".env").read_text()
    assert (
        f"{SOURCE_SETTING}=/srv/prh/landing/clinic-cal/epic.{answers['source_format']}" in settings
    )
    database_urls = {
        "sqlite": "sqlite:///${HOME}/prh-data/clinic-cal.db",
        "postgresql": "postgresql+psycopg://prh_ingest@localhost/prh_warehouse",
    }
    assert f"{SINK_SETTING}={database_urls[answers.get('database', 'sqlite')]}\n" in settings
    for name in ("SHEET", "HEADER_ROW", "ENCODING"):  # documented, commented out
        assert f"\n#CLINIC_CAL_EPIC_{name}=" in settings
    assert ("PIPENV_CUSTOM_VENV_NAME=prefect-clinic-cal" in settings) == (
        answers["dependency_manager"] == "pipenv"
    )
    assert ("CLINIC_CAL_S3_BUCKET_BLOCK=" in settings) == answers["use_s3"]


DRIVER = {"psycopg==3.3.9", "psycopg-binary==3.3.9"}


def ingest_requirements(project: Path, manager: str) -> set[str]:
    """The `name==version` lines of what ingest.py needs, from the chosen dependency file."""
    if manager == "none":
        lines = (project / "requirements.txt").read_text().splitlines()
        return {line for line in lines if line and not line.startswith("#")}
    if manager == "uv":
        pyproject = tomllib.loads((project / "pyproject.toml").read_text())
        return set(pyproject["project"]["dependencies"])
    packages = tomllib.loads((project / "Pipfile").read_text())["packages"]
    return {f"{name}{version}" for name, version in packages.items()}


def test_dependency_files_pin_the_tested_versions(project: Path, answers: dict) -> None:
    """calamine always (the reader is chosen by the file), psycopg with PostgreSQL, each at
    the version constraints.txt pins."""
    found = ingest_requirements(project, answers["dependency_manager"])
    tested = {
        line.lower()
        for line in (REPO_DIR / "constraints.txt").read_text().splitlines()
        if not line.startswith("#")
    }
    assert {line.lower() for line in found} <= tested
    assert {"sqlalchemy==2.1.9", "python-calamine==0.9.1"} <= found
    assert (DRIVER <= found) == (answers.get("database") == "postgresql")
    assert found - DRIVER == {"sqlalchemy==2.1.9", "python-calamine==0.9.1"}


def test_generated_code_passes_ruff(project: Path) -> None:
    result = run([str(BIN / "ruff"), "check", "--no-cache", "."], cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr


def test_baked_projects_own_tests_pass(project: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(project, tmp_path / project.name)  # __pycache__ stays out of the bake
    result = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=copy)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


def test_post_gen_message_prints_local_run_and_warehouse_entry(tmp_path: Path) -> None:
    result = cookiecutter_cli(tmp_path / "out")
    assert result.returncode == 0, result.stderr
    local_run = f"cd clinic-cal && {SOURCE_SETTING}=$PWD/data/sample.xlsx python {FLOW_FILE}"
    assert local_run in result.stdout
    entry_line = next(line for line in result.stdout.splitlines() if "regenerate.py --add" in line)
    entry = json.loads(entry_line.split("'")[1])
    assert entry == {
        FLOW_NAME: {
            "repo": "https://github.com/org/clinic-cal.git",
            "entrypoint": f"{FLOW_FILE}:clinic_cal_epic_ingest",
            "cron": "0 6 * * *",
        }
    }


# --- The runbook's local run, on Prefect's ephemeral default ----------------------------------


@pytest.fixture(scope="module")
def venvs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared venvs for the local runs, as on a developer's machine."""
    return tmp_path_factory.mktemp("venvs") / "virtualenvs"


@pytest.mark.network
@pytest.mark.parametrize("manager", DEPENDENCY_MANAGERS)
def test_runbook_local_run_loads_sample_and_rerun_adds_nothing(
    manager: str, tmp_path: Path, venvs: Path
) -> None:
    project = bake_ingest_project(tmp_path / "out", dependency_manager=manager)
    database = tmp_path / "sink" / "clinic-cal.db"
    env = local_run_env(offline_env(tmp_path / "prefect-home"), project, venvs, database)

    first = run_flow_script(project, env)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    assert f"loaded {SAMPLE_ROWS} rows" in first.stdout + first.stderr
    assert table_count(database) == SAMPLE_ROWS

    again = run_flow_script(project, env)
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    assert table_count(database) == SAMPLE_ROWS
    if manager != "none":
        assert "is up to date" in again.stdout + again.stderr  # the warm run skipped the install
        assert [path.name for path in venvs.iterdir() if path.is_dir()] == ["prefect-clinic-cal"]


def test_a_failing_step_fails_the_flow_and_leaves_the_sink(tmp_path: Path) -> None:
    project = bake_ingest_project(tmp_path / "out", dependency_manager="none")
    database = tmp_path / "sink" / "clinic-cal.db"
    env = local_run_env(offline_env(tmp_path / "prefect-home"), project, tmp_path / "v", database)
    bad = tmp_path / "landing" / "sample.xlsx"
    bad.parent.mkdir()
    bad.write_text("not a workbook")
    env[SOURCE_SETTING] = str(bad)

    result = run_flow_script(project, env)

    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"error: {SOURCE_SETTING}={bad}: not a readable xlsx workbook" in output
    assert output.count("triggered with") == 1  # a rejected file is not retried
    assert not database.exists() or table_count(database) == 0


RUN_SHELL_STEP = """
import sys
from prefect_shell import ShellOperation
sys.path.insert(0, "prefect")
import ingest_flow
shell = ShellOperation(
    commands=ingest_flow.ingest_commands("epic"),
    env=ingest_flow.load_settings(),
    working_dir=ingest_flow.PROJECT_DIR,
)
shell.run()
"""


def test_the_shell_step_is_fail_fast(tmp_path: Path) -> None:
    """The flows' shell step, run as its ShellOperation: a failing dependency step stops
    the script, so ingest.py never runs after it (`pipenv run` works; only install fails)."""
    project = bake_ingest_project(tmp_path / "out", dependency_manager="pipenv")
    database = tmp_path / "sink" / "clinic-cal.db"
    env = local_run_env(offline_env(tmp_path / "prefect-home"), project, tmp_path / "v", database)
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir()
    (fake_bin / "python").symlink_to(sys.executable)
    fake_pipenv = fake_bin / "pipenv"
    fake_pipenv.write_text(
        '#!/bin/sh\nif [ "$1" = run ]; then shift; exec "$@"; fi\n'
        "echo 'pipenv: install broken' >&2\nexit 1\n"
    )
    fake_pipenv.chmod(0o755)
    env["PATH"] = f"{fake_bin}{os.pathsep}/usr/bin{os.pathsep}/bin"

    result = run([sys.executable, "-c", RUN_SHELL_STEP], cwd=project, env=env)

    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "failed with return code 1" in output
    assert "pipenv: install broken" in output
    assert "loaded" not in output
    assert not database.exists()


FAKE_PIPENV = """#!/bin/sh
# `pipenv install` takes a second and builds the venv; `pipenv run` records that it ran.
venv="$WORKON_HOME/$PIPENV_CUSTOM_VENV_NAME"
case "$1" in
  install) echo install-start >>"$CALLS"; sleep 1; mkdir -p "$venv/bin"
           ln -sf "$REAL_PYTHON" "$venv/bin/python"; echo install-end >>"$CALLS" ;;
  run) echo run >>"$CALLS" ;;
esac
"""


def test_two_first_runs_at_once_install_the_venv_once(tmp_path: Path) -> None:
    """The dependency step's lock: the second run waits for the first install, then finds the
    venv up to date; both then run their ingest."""
    project = bake_ingest_project(tmp_path / "out", dependency_manager="pipenv")
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir()
    (fake_bin / "pipenv").write_text(FAKE_PIPENV)
    (fake_bin / "pipenv").chmod(0o755)
    calls = tmp_path / "calls"
    env = {
        **os.environ,
        "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}",
        "WORKON_HOME": str(tmp_path / "venvs"),
        "PIPENV_CUSTOM_VENV_NAME": "prefect-clinic-cal",
        "CALLS": str(calls),
        "REAL_PYTHON": sys.executable,
    }
    argv = ["prefect/sync-venv.sh", "pipenv", "run", "python", "ingest.py"]
    runs = [
        subprocess.Popen(argv, cwd=project, env=env, stdout=subprocess.PIPE, text=True)
        for _ in "ab"
    ]
    outputs = [run.communicate(timeout=60)[0] for run in runs]

    assert [run.returncode for run in runs] == [0, 0]
    assert calls.read_text().split() == ["install-start", "install-end", "run", "run"]
    assert sum("is up to date" in output for output in outputs) == 1


def test_a_venv_whose_install_never_finished_is_built_again_from_scratch(tmp_path: Path) -> None:
    """A stop during the first install leaves a venv with a python but no stamp: the next
    run removes it before installing (the booted-systemd tests stop a real install)."""
    project = bake_ingest_project(tmp_path / "out", dependency_manager="pipenv")
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir()
    (fake_bin / "pipenv").write_text(FAKE_PIPENV)
    (fake_bin / "pipenv").chmod(0o755)
    venv = tmp_path / "venvs" / "prefect-clinic-cal"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / "half-installed-package").write_text("left by the interrupted install\n")
    env = {
        **os.environ,
        "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}",
        "WORKON_HOME": str(tmp_path / "venvs"),
        "PIPENV_CUSTOM_VENV_NAME": venv.name,
        "CALLS": str(tmp_path / "calls"),
        "REAL_PYTHON": sys.executable,
    }
    argv = ["prefect/sync-venv.sh", "pipenv", "run", "python", "ingest.py"]

    result = run(argv, cwd=project, env=env)

    assert result.returncode == 0, result.stderr
    assert "installing dependencies" in result.stdout
    assert not (venv / "half-installed-package").exists()
    assert (venv / ".prefect-installed").exists()
    assert (tmp_path / "calls").read_text().split() == ["install-start", "install-end", "run"]


# --- S3 source, against the loopback S3 server ------------------------------------------------


def test_s3_source_is_fetched_loaded_and_archived(
    tmp_path: Path, s3_server, prefect_server
) -> None:
    project = bake_ingest_project(tmp_path / "out", dependency_manager="none", use_s3=True)
    database = tmp_path / "sink" / "clinic-cal.db"
    s3 = s3_server.client()
    s3.create_bucket(Bucket="prh-landing-test")
    s3.upload_file(str(project / "data" / "sample.xlsx"), "prh-landing-test", "epic/today.xlsx")
    env = local_run_env(prefect_server.env, project, tmp_path / "v", database)
    save_blocks = f"""
from prefect_aws import AwsCredentials, S3Bucket
credentials = AwsCredentials(
    aws_access_key_id={s3_server.access_key_id!r},
    aws_secret_access_key={s3_server.secret_access_key!r},
    region_name={s3_server.region!r},
    aws_client_parameters={{"endpoint_url": {s3_server.endpoint_url!r}}},
)
credentials.save("clinic-cal-aws-test", overwrite=True)
S3Bucket(bucket_name="prh-landing-test", credentials=credentials).save(
    "clinic-cal-landing-test", overwrite=True
)
"""
    saved = run([sys.executable, "-c", save_blocks], cwd=tmp_path, env=env)
    assert saved.returncode == 0, saved.stderr
    env.update(
        {
            SOURCE_SETTING: "s3://prh-landing-test/epic/today.xlsx",
            "CLINIC_CAL_S3_BUCKET_BLOCK": "clinic-cal-landing-test",
        }
    )

    result = run_flow_script(project, env)

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert table_count(database) == SAMPLE_ROWS
    with sqlite3.connect(database) as connection:
        loads = connection.execute("SELECT source_file FROM clinic_cal_epic_loads").fetchall()
    assert loads == [(f"{tempfile.gettempdir()}/{FLOW_NAME}/prh-landing-test/epic/today.xlsx",)]
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket="prh-landing-test")["Contents"]]
    assert keys == ["archive/epic/today.xlsx"]


# --- ingest.py on a file it may not read -----------------------------------------------------


def test_unreadable_source_is_rejected_in_one_line() -> None:
    """As root every file is readable, so the test then runs ingest.py as `nobody`, in a
    folder `nobody` may enter (pytest's tmp_path is private to its user)."""
    shared = Path(tempfile.mkdtemp(prefix="unreadable-"))
    try:
        shared.chmod(0o777)
        project = bake_ingest_project(shared, dependency_manager="none")
        locked = shared / "sample.xlsx"
        shutil.copy(project / "data" / "sample.xlsx", locked)
        locked.chmod(0)
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        argv = [*(as_nobody if os.geteuid() == 0 else []), sys.executable, "ingest.py"]
        sink = f"sqlite:///{shared / 'sink.db'}"
        env = {**os.environ, SOURCE_SETTING: str(locked), SINK_SETTING: sink}
        result = run(argv, cwd=project, env=env)
    finally:
        shutil.rmtree(shared)
    assert result.returncode == 65, result.stderr  # ingest.py's bad-input code
    expected = f"error: {SOURCE_SETTING}={locked}: file is not readable (permission denied)\n"
    assert result.stderr == expected
