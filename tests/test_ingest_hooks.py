"""pre_gen_project.py: every bad or hostile answer is refused in one line, with nothing written
(baked through pytest-cookies; what a user types on the command line, as a subprocess)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cookiecutter.exceptions import FailedHookException
from pytest_cookies.plugin import Cookies
from support.baking import INGEST_TEMPLATE_DIR, cookiecutter_cli
from support.commands import REPO_DIR

# (answer, value, what the one-line error must say)
REJECTED = [
    ("project_slug", "Clinic-Cal", "lowercase words joined by '-'"),
    ("project_slug", 'clinic"cal', "lowercase words joined by '-'"),
    ("project_slug", "clinic-$(touch PWNED)", "lowercase words joined by '-'"),
    ("project_slug", "clinic`touch PWNED`", "lowercase words joined by '-'"),
    ("project_slug", "clinic\ncal", "lowercase words joined by '-'"),
    ("project_slug", "../escaped", "lowercase words joined by '-'"),
    ("project_slug", "clínica", "lowercase words joined by '-'"),
    ("project_slug", "a" * 41, "at most 40 allowed"),
    ("project_name", 'Clinic "Cal"', "letters, digits, spaces"),
    ("project_name", "Clinic $(touch PWNED)", "letters, digits, spaces"),
    ("project_name", "x" * 81, "at most 80 allowed"),
    ("source_name", "epic;touch PWNED", "lowercase words joined by '-'"),
    ("source_name", "Epic", "lowercase words joined by '-'"),
    ("git_repo_url", "https://github.com/org/x.git; touch PWNED", "is not a git URL"),
    ("git_repo_url", "https://github.com/org/../../etc.git", "is not a git URL"),
    ("git_repo_url", "github.com/org/clinic-cal", "is not a git URL"),
    ("python_version", "2.7", "one of 3.10, 3.11, 3.12, 3.13"),
    ("python_version", "3.1;", "one of 3.10, 3.11, 3.12, 3.13"),
    ("python_version", "3.11$(touch PWNED)", "at most 4 allowed"),
    ("__ingest_requirements", 'x==1\n[scripts]\nevil = "rm"', "__ingest_requirements must be"),
    ("__dev_requirements", "pytest==9 $(touch PWNED)", "__dev_requirements must be"),
    ("__manager_settings", "A=1\nimport os", "__manager_settings must be"),
    ("__s3_settings", "X_S3_BUCKET_BLOCK=`id`", "__s3_settings must be"),
    ("legacy_flow_name", "Prh_Dash", "lowercase words joined by '-'"),
    ("legacy_flow_name", "prh-dash;touch PWNED", "lowercase words joined by '-'"),
    ("legacy_flow_name", "a" * 64, "at most 63 allowed"),
]


def rejection_id(case: tuple[str, str, str]) -> str:
    key, value, _ = case
    shown = value.encode("unicode_escape").decode()[:24]
    return f"{key}={shown}"


@pytest.mark.parametrize("case", REJECTED, ids=[rejection_id(case) for case in REJECTED])
def test_bad_answer_is_refused_with_one_line_and_nothing_written(
    case: tuple[str, str, str], cookies: Cookies, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    key, value, message = case

    result = cookies.bake(extra_context={key: value}, template=INGEST_TEMPLATE_DIR)

    assert result.exit_code != 0 and isinstance(result.exception, FailedHookException)
    assert result.project_path is None
    errors = [line for line in capfd.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, errors
    assert key in errors[0] and message in errors[0]
    # pytest-cookies bakes into <tmp_path>/cookies/bake00: left empty, nothing beside it
    assert [path.name for path in (tmp_path / "cookies").rglob("*")] == ["bake00"]
    assert not list(tmp_path.rglob("PWNED")) and not (REPO_DIR / "PWNED").exists()


def test_a_bad_answer_typed_on_the_command_line_is_refused_the_same_way(tmp_path: Path) -> None:
    output_dir = tmp_path / "out"
    output_dir.mkdir()
    result = cookiecutter_cli(output_dir, "project_slug=clinic-$(touch PWNED)")
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode != 0 and len(errors) == 1, result.stderr
    assert "project_slug" in errors[0] and "lowercase words joined by '-'" in errors[0]
    assert list(output_dir.iterdir()) == [] and not list(tmp_path.rglob("PWNED"))


@pytest.mark.parametrize(
    ("key", "value"),
    [("source_format", "parquet"), ("dependency_manager", "conda"), ("database", "oracle")],
)
def test_an_answer_outside_a_choice_is_refused_by_cookiecutter(
    key: str, value: str, tmp_path: Path
) -> None:
    """cookiecutter itself refuses it (with its own traceback), before any hook or file."""
    result = cookiecutter_cli(tmp_path, f"{key}={value}")
    assert result.returncode != 0
    assert f"{value} provided for choice variable {key}, but the choices are" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Clinic Cal", "clinic-cal"),
        ("Clinic Cal (v2)", "clinic-cal-v2"),
        ("PRH Dash & Co.", "prh-dash-co"),
    ],
)
def test_the_slug_is_derived_from_any_valid_name(name: str, slug: str, tmp_path: Path) -> None:
    result = cookiecutter_cli(tmp_path / "out", f"project_name={name}")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / slug / "prefect" / f"{slug}-epic-ingest.py").is_file()


def test_default_answers_are_accepted(tmp_path: Path) -> None:
    result = cookiecutter_cli(tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "clinic-cal" / "prefect" / "clinic-cal-epic-ingest.py").is_file()


def test_a_slug_with_a_slash_writes_no_files(tmp_path: Path) -> None:
    """cookiecutter makes the slug's folders before any hook runs; it removes the last one
    on failure but leaves empty parents. No file is ever written."""
    result = cookiecutter_cli(tmp_path, "project_slug=a/b")
    assert result.returncode != 0
    assert "error: project_slug 'a/b' is not valid" in result.stderr
    assert [path for path in tmp_path.rglob("*") if path.is_file()] == []


def test_a_legacy_flow_name_keeps_a_runbook_flow_s_names(tmp_path: Path) -> None:
    """prh-dash's flow was `prh-dash-ingest`: keeping the name keeps its deployment and the
    run history the server holds under it."""
    answers = ("project_name=PRH Dash", "source_name=epic", "legacy_flow_name=prh-dash-ingest")
    result = cookiecutter_cli(tmp_path / "out", *answers)
    assert result.returncode == 0, result.stderr
    flow = (tmp_path / "out/prh-dash/prefect/prh-dash-ingest.py").read_text()
    assert 'FLOW_NAME = "prh-dash-ingest"' in flow
    assert "def prh_dash_ingest(accept_short_load: bool = False) -> None:" in flow
    assert '"entrypoint": "prefect/prh-dash-ingest.py:prh_dash_ingest"' in result.stdout
    settings = (tmp_path / "out/prh-dash/prefect/.env").read_text()
    assert "PRH_DASH_EPIC_SOURCE_FILE=" in settings  # the other names still follow the rule
