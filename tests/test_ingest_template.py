"""The ingest-project template: every option combination bakes into a clean, working project."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest
from prh_ingest import naming
from pytest_cookies.plugin import Cookies
from support import package
from support.baking import (
    FLOW_FILE,
    FLOW_NAME,
    INGEST_TEMPLATE_DIR,
    SAMPLE_ROWS,
    SINK_SETTING,
    SLUG,
    SOURCE,
    SOURCE_SETTING,
    bake_ingest_project,
    baked,
    cookiecutter_cli,
    local_run_env,
    portable_bin,
    run_flow_script,
    table_count,
    unrendered_files,
)
from support.commands import BIN, REPO_DIR, run
from support.regeneration import cruft_project, cruft_state, edit, regenerate, template_repo
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
# What every project has; then the files each option value adds (exact sets).
COMMON_FILES = {
    ".gitattributes",
    ".github/workflows/ci.yml",
    ".gitignore",
    "README.md",
    "ingest.py",
    "prefect/.env",
    FLOW_FILE,
    "prefect/source_file.py",
    "ruff.toml",
    "scripts/regenerate.py",
    "tests/test_flow.py",
    "tests/test_ingest.py",
    "transform.py",
}
FILES_OF = {
    "pipenv": {"Pipfile", "prefect/sync-venv.sh", "prefect/shared-venv.sh"},
    "uv": {"pyproject.toml", ".python-version", "prefect/sync-venv.sh", "prefect/shared-venv.sh"},
    "none": {"requirements.txt", "requirements-dev.txt"},
    "xlsx": {"data/sample.xlsx"},
    "csv": {"data/sample.csv"},
}


def combination_id(answers: dict) -> str:
    s3 = "s3" if answers["use_s3"] else "local"
    database = answers.get("database", "sqlite")
    return f"{answers['dependency_manager']}-{answers['source_format']}-{s3}-{database}"


@pytest.fixture(scope="module", params=COMBINATIONS, ids=combination_id)
def answers(request: pytest.FixtureRequest) -> dict:
    return request.param


@pytest.fixture(scope="module")
def project(answers: dict, cookies_session: Cookies) -> Path:
    """One bake per combination, shared by the tests below: they only read it (a test that
    runs something in the project runs it in its own copy)."""
    result = cookies_session.bake(extra_context=answers, template=INGEST_TEMPLATE_DIR)
    assert result.exit_code == 0, result.exception
    return result.project_path


def test_bakes_with_contract_names(project: Path, answers: dict) -> None:
    assert project.name == "clinic-cal"
    flow_source = (project / FLOW_FILE).read_text()
    assert f'FLOW_NAME = "{FLOW_NAME}"' in flow_source
    assert "def clinic_cal_epic_ingest(accept_short_load: bool = False) -> None:" in flow_source
    assert (project / "data" / f"sample.{answers['source_format']}").is_file()
    assert not unrendered_files(project)


def test_generates_exactly_the_chosen_options_files(project: Path, answers: dict) -> None:
    present = {str(path.relative_to(project)) for path in project.rglob("*") if path.is_file()}
    chosen = FILES_OF[answers["dependency_manager"]] | FILES_OF[answers["source_format"]]
    assert present == COMMON_FILES | chosen
    if answers["dependency_manager"] != "none":
        assert os.access(project / "prefect" / "sync-venv.sh", os.X_OK)
    # use_s3 picks which prefect/source_file.py the project gets
    source_file = (project / "prefect" / "source_file.py").read_text()
    assert ("from prefect_aws import S3Bucket" in source_file) == answers["use_s3"]


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
    # uv trusts the machine's certificate store, as pip does (a proxy's own CA)
    assert ("\nUV_SYSTEM_CERTS=1\n" in settings) == (answers["dependency_manager"] == "uv")


DRIVER = {"psycopg==3.3.9", "psycopg-binary==3.3.9"}


def test_the_generated_settings_leave_the_load_mode_to_the_table(project: Path) -> None:
    """The update's merge of prefect/.env must not set a mode: only a comment names it."""
    setting = f"{naming.source_key(SLUG, SOURCE)}_LOAD_MODE"
    lines = (project / "prefect" / ".env").read_text().splitlines()
    assert [line for line in lines if setting in line] == [f"#{setting}=file"]


def test_the_readme_says_which_setting_fits_which_export(project: Path) -> None:
    readme = (project / "README.md").read_text()
    shape = readme.split("## Your export's shape", 1)[1].split("\n## ", 1)[0]
    settings = ("_DELIMITER", "_QUOTE=none", "_ENCODING=cp1252", "_FOOTER_ROWS=1", "_HEADER_ROW")
    for setting in settings:
        assert setting in shape, setting
    for mode in ("`append`", "`file`", "`snapshot`"):
        assert mode in shape, mode


def ingest_requirements(project: Path, manager: str) -> set[str]:
    """The `name==version` lines of what ingest.py needs, from the chosen dependency file
    (the engine, prh-ingest, as its requirement: see ENGINE)."""
    if manager == "none":
        lines = (project / "requirements.txt").read_text().splitlines()
        return {line for line in lines if line and not line.startswith("#")}
    if manager == "uv":
        pyproject = tomllib.loads((project / "pyproject.toml").read_text())
        return set(pyproject["project"]["dependencies"])
    packages = tomllib.loads((project / "Pipfile").read_text())["packages"]
    return {pipfile_requirement(name, version) for name, version in packages.items()}


def pipfile_requirement(name: str, version: str | dict) -> str:
    """A Pipfile entry as a requirement: `name==version`, or `name[extras] @ <wheel URL>`."""
    if isinstance(version, str):
        return f"{name}{version}"
    extras = f"[{','.join(version['extras'])}]" if "extras" in version else ""
    return f"{name}{extras} @ {version['file']}"


def engine(answers: dict) -> str:
    """The engine's requirement in a project the tests bake: the package under test."""
    extra = "[postgresql]" if answers.get("database") == "postgresql" else ""
    return package.requirement().replace("prh-ingest", f"prh-ingest{extra}", 1)


def test_dependency_files_pin_the_tested_versions(project: Path, answers: dict) -> None:
    """calamine always (the reader is chosen by the file), psycopg with PostgreSQL, each at
    the version constraints.txt pins."""
    found = ingest_requirements(project, answers["dependency_manager"])
    assert engine(answers) in found
    found = found - {engine(answers)}
    tested = {
        line.lower()
        for line in (REPO_DIR / "constraints.txt").read_text().splitlines()
        if not line.startswith("#")
    }
    assert {line.lower() for line in found} <= tested
    assert {"sqlalchemy==2.1.9", "python-calamine==0.9.1"} <= found
    assert (DRIVER <= found) == (answers.get("database") == "postgresql")
    assert found - DRIVER == {"sqlalchemy==2.1.9", "python-calamine==0.9.1"}


RELEASE = "https://github.com/org/prh-ingest-template.git"
# Where the engine comes from (the prh_ingest answer; the default: this repository at the
# release tag of the template's version of the package) -> (a requirement line, the Pipfile
# entry). {v} is the version: the template's, so a template update bumps it.
ENGINE_SOURCES = {
    "release-tag": (
        None,
        f"prh-ingest @ git+{RELEASE}@v{{v}}#subdirectory=prh-ingest",
        {"git": RELEASE, "ref": "v{v}", "subdirectory": "prh-ingest"},
    ),
    "index": ("index", "prh-ingest=={v}", {"version": "=={v}"}),
}


@pytest.mark.parametrize("manager", DEPENDENCY_MANAGERS)
@pytest.mark.parametrize("source", ENGINE_SOURCES)
def test_the_engine_is_pinned_where_the_answer_says(
    tmp_path: Path, source: str, manager: str
) -> None:
    """The command a user types: the default answer pins the package's own version."""
    answer, requirement, pipfile = ENGINE_SOURCES[source]
    v = package.version()
    answers = [f"dependency_manager={manager}", "database=postgresql"]
    if answer:
        answers.append(f"prh_ingest={answer}")
    result = cookiecutter_cli(tmp_path / "out", *answers)
    assert result.returncode == 0, result.stderr
    project = tmp_path / "out" / "clinic-cal"
    expected = requirement.format(v=v).replace("prh-ingest", "prh-ingest[postgresql]", 1)
    if manager == "pipenv":
        entry = tomllib.loads((project / "Pipfile").read_text())["packages"]["prh-ingest"]
        assert entry == {k: w.format(v=v) for k, w in pipfile.items()} | {"extras": ["postgresql"]}
    else:
        assert expected in ingest_requirements(project, manager)


def test_a_template_update_bumps_the_engine_pin(tmp_path: Path) -> None:
    """The answer names where the package comes from, never its version: the version is the
    template's, so an engine fix reaches a project as a normal template update."""
    template = template_repo(tmp_path)
    project = cruft_project(
        template, tmp_path / "projects", dependency_manager="none", prh_ingest="index"
    )
    version = package.version()
    assert f"prh-ingest=={version}\n" in (project / "requirements.txt").read_text()
    pin = f'"prh-ingest": "{version}"'
    edit(template, "cookiecutter.json", pin, '"prh-ingest": "9.9.9"', "a new engine release")

    result = regenerate(project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "prh-ingest==9.9.9\n" in (project / "requirements.txt").read_text()
    assert cruft_state(project)["context"]["cookiecutter"]["prh_ingest"] == "index"


def test_a_bad_engine_answer_is_refused_in_one_line(tmp_path: Path) -> None:
    result = cookiecutter_cli(tmp_path / "out", "prh_ingest=prh-ingest>=0.1")
    assert result.returncode != 0
    assert "error: prh_ingest 'prh-ingest>=0.1' is not a package source: use index" in (
        result.stdout + result.stderr
    )
    assert not (tmp_path / "out" / "clinic-cal").exists()


PIN = re.compile(r'(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?: = "|)==(?P<version>[0-9][0-9a-z.]*)')


def versions_table() -> dict[str, str]:
    return json.loads((REPO_DIR / "cookiecutter.json").read_text())["__versions"]


def pinned_in(requirements: Path) -> dict[str, str]:
    """`name[extra]==version` lines as {normalized name: version}."""
    pins = {}
    for line in requirements.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.split("[")[0].lower().replace("_", "-")] = version.strip()
    return pins


def test_the_version_table_pins_what_this_repo_tests() -> None:
    """cookiecutter.json's __versions is the one table of what generated projects install:
    each version is the one constraints.txt pins (and requirements.txt, where it names it)."""
    versions = versions_table()
    assert versions.pop("prh-ingest") == package.version()  # the package's own (pyproject)
    constraints = pinned_in(REPO_DIR / "constraints.txt")
    assert {name: constraints.get(name) for name in versions} == versions
    requirements = pinned_in(REPO_DIR / "requirements.txt")
    assert {name: requirements[name] for name in versions if name in requirements} == {
        name: version for name, version in versions.items() if name in requirements
    }


def test_the_template_pins_versions_only_through_the_table() -> None:
    """No generated file writes a version of its own: every pin comes from __versions."""
    template = REPO_DIR / "{{cookiecutter.project_slug}}"
    written = [
        f"{path.relative_to(template)}: {match.group()}"
        for path in sorted(template.rglob("*"))
        if path.is_file() and path.suffix != ".xlsx"
        for match in PIN.finditer(path.read_text())
    ]
    assert written == []


def test_every_pin_in_a_project_is_the_table_s(project: Path) -> None:
    versions = versions_table()
    found = {
        (match["name"].lower(), match["version"])
        for path in project.rglob("*")
        if path.is_file() and path.suffix != ".xlsx"
        for match in PIN.finditer(path.read_text())
    }
    assert found, "no pins found"
    assert {(name, versions.get(name)) for name, _ in found} == found


PROJECT_PYTHON_BUDGET = 250  # lines of Python a default project carries beside the team's own


def project_python_lines(project: Path) -> dict[str, int]:
    """Lines of each Python file the template owns (transform.py and tests/ are the team's)."""
    return {
        str(path.relative_to(project)): len(path.read_text().splitlines())
        for path in sorted(project.rglob("*.py"))
        if path.name != "transform.py" and path.relative_to(project).parts[0] != "tests"
    }


def test_a_default_project_is_thin(cookies: Cookies) -> None:
    project = baked(cookies.bake(template=INGEST_TEMPLATE_DIR))
    lines = project_python_lines(project)
    assert sum(lines.values()) <= PROJECT_PYTHON_BUDGET, lines


def test_the_loader_and_the_flows_are_the_packages(cookies: Cookies) -> None:
    """ingest.py is an entry point and each flow file names its source: the engine is
    prh-ingest's (what remains besides them is prefect/source_file.py and scripts/)."""
    project = baked(cookies.bake(template=INGEST_TEMPLATE_DIR))
    lines = project_python_lines(project)
    assert lines["ingest.py"] <= 30 and lines[FLOW_FILE] <= 40, lines
    assert "from prh_ingest.load import main" in (project / "ingest.py").read_text()


def test_generated_code_passes_ruff(project: Path) -> None:
    result = run([str(BIN / "ruff"), "check", "--no-cache", "."], cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr


# The project's own tests run on this repo's python, not in the project's venv, so the manager
# and database answers only change settings those tests read. They run for a covering set:
# every value of every answer once, and each source format with and without S3 (the two
# answers that choose code files). The tests above still read every combination's bake.
OWN_TESTS_COMBINATIONS = [
    {"dependency_manager": "pipenv", "source_format": "xlsx", "use_s3": False},
    {"dependency_manager": "uv", "source_format": "xlsx", "use_s3": True},
    {"dependency_manager": "none", "source_format": "csv", "use_s3": True},
    {"dependency_manager": "pipenv", "source_format": "csv", "use_s3": False}
    | {"database": "postgresql"},
]


def answer_values(combinations: list[dict]) -> list[set[str]]:
    """The values each answer takes (manager, format, S3 or local, database)."""
    ids = [combination_id(answers).split("-") for answers in combinations]
    return [set(values) for values in zip(*ids, strict=True)]


def test_own_tests_combinations_cover_every_answer_and_code_choice() -> None:
    assert answer_values(OWN_TESTS_COMBINATIONS) == answer_values(COMBINATIONS)
    code_choices = {(a["source_format"], a["use_s3"]) for a in OWN_TESTS_COMBINATIONS}
    assert code_choices == set(itertools.product(SOURCE_FORMATS, USE_S3))


@pytest.mark.parametrize("own_answers", OWN_TESTS_COMBINATIONS, ids=combination_id)
def test_baked_projects_own_tests_pass(own_answers: dict, tmp_path: Path, cookies: Cookies) -> None:
    project = baked(cookies.bake(extra_context=own_answers, template=INGEST_TEMPLATE_DIR))
    result = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


def test_post_gen_message_prints_local_run_and_warehouse_entry(tmp_path: Path) -> None:
    result = cookiecutter_cli(tmp_path / "out")
    assert result.returncode == 0, result.stderr
    local_run = f"cd clinic-cal && {SOURCE_SETTING}=$PWD/data/sample.xlsx python {FLOW_FILE}"
    assert local_run in result.stdout
    entry_line = next(line for line in result.stdout.splitlines() if "prw_deploy.py --add" in line)
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
    manager: str, tmp_path: Path, venvs: Path, cookies: Cookies
) -> None:
    project = baked(
        cookies.bake(extra_context={"dependency_manager": manager}, template=INGEST_TEMPLATE_DIR)
    )
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


def test_a_failing_step_fails_the_flow_and_leaves_the_sink(
    tmp_path: Path, cookies: Cookies
) -> None:
    project = baked(
        cookies.bake(extra_context={"dependency_manager": "none"}, template=INGEST_TEMPLATE_DIR)
    )
    database = tmp_path / "sink" / "clinic-cal.db"
    env = local_run_env(offline_env(tmp_path / "prefect-home"), project, tmp_path / "v", database)
    bad = tmp_path / "landing" / "sample.xlsx"
    bad.parent.mkdir()
    bad.write_text("not a workbook")
    env[SOURCE_SETTING] = str(bad)

    result = run_flow_script(project, env)

    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"error: {SOURCE_SETTING}={bad}: not a readable .xlsx workbook" in output
    assert output.count("triggered with") == 1  # a rejected file is not retried
    assert not database.exists() or table_count(database) == 0


RUN_SHELL_STEP = f"""
import importlib, sys
from prefect_shell import ShellOperation
from prh_ingest import flow
sys.path.insert(0, "prefect")
project = importlib.import_module("{FLOW_NAME}").PROJECT
shell = ShellOperation(
    commands=flow.ingest_commands(project, "epic"),
    env=flow.load_settings(project),
    working_dir=project.folder,
)
shell.run()
"""


def test_the_shell_step_is_fail_fast(tmp_path: Path, cookies: Cookies) -> None:
    """The flows' shell step, run as its ShellOperation: a failing dependency step stops
    the script, so ingest.py never runs after it (`pipenv run` works; only install fails)."""
    project = baked(
        cookies.bake(extra_context={"dependency_manager": "pipenv"}, template=INGEST_TEMPLATE_DIR)
    )
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


FAKE_MANAGER = """#!/bin/sh
# A stand-in for pipenv and uv: `pipenv install` / `uv sync` takes a second and builds the
# venv; `pipenv run` / `uv run` records that it ran.
venv="${UV_PROJECT_ENVIRONMENT:-$WORKON_HOME/$PIPENV_CUSTOM_VENV_NAME}"
case "$1" in
  install|sync) echo install-start >>"$CALLS"; sleep 1; mkdir -p "$venv/bin"
                ln -sf "$REAL_PYTHON" "$venv/bin/python"; echo install-end >>"$CALLS" ;;
  run) echo run >>"$CALLS" ;;
esac
"""
RUN_INGEST = {
    "pipenv": ["pipenv", "run", "python", "ingest.py"],
    "uv": ["uv", "run", "--no-sync", "python", "ingest.py"],
}
GNU_ONLY_TOOLS = ("flock", "sha256sum", "readlink")
PATH_KINDS = ["linux-path", "no-gnu-tools"]  # this machine's PATH; a macOS-like one


def sync_step_env(tmp_path: Path, manager: str, path_kind: str = "linux-path") -> dict:
    """The dependency step's environment with a stand-in *manager* first on PATH; with
    `no-gnu-tools` the rest of PATH has only the tools a laptop without GNU tools has."""
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir()
    (fake_bin / manager).write_text(FAKE_MANAGER)
    (fake_bin / manager).chmod(0o755)
    if path_kind == "no-gnu-tools":
        path = str(portable_bin(tmp_path / "portable-bin"))
        assert not [tool for tool in GNU_ONLY_TOOLS if shutil.which(tool, path=path)]
    else:
        path = os.environ["PATH"]
    venvs = tmp_path / "venvs"
    manager_settings = {"PIPENV_CUSTOM_VENV_NAME", "WORKON_HOME", "UV_PROJECT_ENVIRONMENT"}
    env = {name: value for name, value in os.environ.items() if name not in manager_settings}
    env |= {
        "PATH": f"{fake_bin}{os.pathsep}{path}",
        "CALLS": str(tmp_path / "calls"),
        "REAL_PYTHON": sys.executable,
    }
    if manager == "pipenv":
        return env | {"WORKON_HOME": str(venvs), "PIPENV_CUSTOM_VENV_NAME": "prefect-clinic-cal"}
    return env | {"UV_PROJECT_ENVIRONMENT": str(venvs / "prefect-clinic-cal")}


@pytest.mark.parametrize("path_kind", PATH_KINDS)
@pytest.mark.parametrize("manager", ["pipenv", "uv"])
def test_two_first_runs_at_once_install_the_venv_once(
    manager: str, path_kind: str, tmp_path: Path, cookies: Cookies
) -> None:
    """The dependency step's lock: the second run waits for the first install, then finds the
    venv up to date; both then run their ingest. With `no-gnu-tools` it runs as on a laptop
    without flock(1), sha256sum or readlink."""
    project = baked(
        cookies.bake(extra_context={"dependency_manager": manager}, template=INGEST_TEMPLATE_DIR)
    )
    env = sync_step_env(tmp_path, manager, path_kind)
    argv = ["prefect/sync-venv.sh", *RUN_INGEST[manager]]
    runs = [
        subprocess.Popen(
            argv, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in "ab"
    ]
    outputs = [run.communicate(timeout=60) for run in runs]

    assert [run.returncode for run in runs] == [0, 0], outputs
    calls = (tmp_path / "calls").read_text().split()
    assert calls == ["install-start", "install-end", "run", "run"]
    assert sum("is up to date" in stdout for stdout, _ in outputs) == 1
    assert [stderr for _, stderr in outputs] == ["", ""]


@pytest.mark.parametrize("path_kind", PATH_KINDS)
def test_a_venv_whose_install_never_finished_is_built_again_from_scratch(
    path_kind: str, tmp_path: Path, cookies: Cookies
) -> None:
    """A stop during the first install leaves a venv with a python but no stamp: the next
    run removes it before installing (the booted-systemd tests stop a real install)."""
    project = baked(
        cookies.bake(extra_context={"dependency_manager": "pipenv"}, template=INGEST_TEMPLATE_DIR)
    )
    env = sync_step_env(tmp_path, "pipenv", path_kind)
    venv = tmp_path / "venvs" / "prefect-clinic-cal"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / "half-installed-package").write_text("left by the interrupted install\n")

    result = run(["prefect/sync-venv.sh", *RUN_INGEST["pipenv"]], cwd=project, env=env)

    assert result.returncode == 0, result.stderr
    assert "installing dependencies" in result.stdout
    assert not (venv / "half-installed-package").exists()
    assert (venv / ".prefect-installed").exists()
    assert (tmp_path / "calls").read_text().split() == ["install-start", "install-end", "run"]


def test_a_venv_stamped_by_the_flock_era_script_stays_up_to_date(
    tmp_path: Path, cookies: Cookies
) -> None:
    """The stamp holds the hash as `sha256sum -` printed it, so a worker's venv installed
    before the step became portable is not reinstalled on the template update."""
    project = baked(
        cookies.bake(extra_context={"dependency_manager": "pipenv"}, template=INGEST_TEMPLATE_DIR)
    )
    env = sync_step_env(tmp_path, "pipenv")
    venv = tmp_path / "venvs" / "prefect-clinic-cal"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    pipfile = (project / "Pipfile").read_bytes()
    old_hash = subprocess.run(["sha256sum"], input=pipfile, capture_output=True, check=True)
    (venv / ".prefect-installed").write_bytes(old_hash.stdout * 2)

    result = run(["prefect/sync-venv.sh", *RUN_INGEST["pipenv"]], cwd=project, env=env)

    assert result.returncode == 0, result.stderr
    assert f"venv {venv} is up to date" in result.stdout
    assert (tmp_path / "calls").read_text().split() == ["run"]


# --- S3 source, against the loopback S3 server ------------------------------------------------


@pytest.mark.e2e  # a live Prefect server and the loopback S3 server
def test_s3_source_is_fetched_loaded_and_archived(
    tmp_path: Path, s3_server, prefect_server, cookies: Cookies
) -> None:
    project = baked(
        cookies.bake(
            extra_context={"dependency_manager": "none", "use_s3": True},
            template=INGEST_TEMPLATE_DIR,
        )
    )
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
