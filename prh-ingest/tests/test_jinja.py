"""The templates' names filters render what prh_ingest.naming derives, in-process."""

from __future__ import annotations

import pytest
from jinja2 import Environment, StrictUndefined
from prh_ingest import jinja, naming

ANSWERS = {"project_slug": "clinic-cal", "source_name": "epic-2", "legacy_flow_name": ""}


def rendered(template: str, answers: dict[str, str]) -> str:
    # Text, not HTML: cookiecutter renders without escaping, as here.
    environment = Environment(extensions=[jinja.Names], undefined=StrictUndefined)  # noqa: S701
    return environment.from_string(template).render(cookiecutter=answers)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("flow_name", "clinic-cal-epic-2-ingest"),
        ("flow_function", "clinic_cal_epic_2_ingest"),
        ("env_prefix", "CLINIC_CAL"),
        ("source_key", "CLINIC_CAL_EPIC_2"),
        ("source_setting", "CLINIC_CAL_EPIC_2_SOURCE_FILE"),
        ("sink_setting", "CLINIC_CAL_DATABASE_URL"),
        ("table_name", "clinic_cal_epic_2"),
    ],
)
def test_each_filter_names_the_first_source(name: str, expected: str) -> None:
    assert rendered(f"{{{{ cookiecutter | {name} }}}}", ANSWERS) == expected


def test_a_kept_legacy_flow_name_is_the_flow_and_its_function() -> None:
    answers = {**ANSWERS, "legacy_flow_name": "prh_dash-load"}
    assert rendered("{{ cookiecutter | flow_name }}", answers) == "prh_dash-load"
    assert rendered("{{ cookiecutter | flow_function }}", answers) == "prh_dash_load"


def test_the_warehouse_tag_is_the_contracts() -> None:
    answers = {"warehouse_slug": "prh-warehouse"}
    tag = rendered("{{ cookiecutter | warehouse_tag }}", answers)
    assert tag == naming.warehouse_tag("prh-warehouse") == "warehouse:prh-warehouse"


def test_a_flow_name_too_long_for_the_warehouse_stops_the_render() -> None:
    with pytest.raises(naming.Invalid, match="at most 63 allowed"):
        rendered("{{ cookiecutter | flow_name }}", {**ANSWERS, "project_slug": "a" * 60})


REPO = "git+https://git.hospital.example/data/prh-ingest-template.git"
WHEEL = "https://pkgs.hospital.example/prh_ingest-0.1.0-py3-none-any.whl"


@pytest.mark.parametrize(
    ("source", "database", "requirement", "pipfile"),
    [
        ("index", "sqlite", "prh-ingest==1.2.3", '{version = "==1.2.3"}'),
        (
            REPO,
            "postgresql",
            f"prh-ingest[postgresql] @ {REPO}@v1.2.3#subdirectory=prh-ingest",
            '{git = "https://git.hospital.example/data/prh-ingest-template.git", '
            'ref = "v1.2.3", subdirectory = "prh-ingest", extras = ["postgresql"]}',
        ),
        (WHEEL, None, f"prh-ingest @ {WHEEL}", f'{{file = "{WHEEL}"}}'),
    ],
    ids=["index", "repository-postgresql", "wheel-warehouse"],
)
def test_the_package_answer_is_one_pin_for_both_templates(
    source: str, database: str | None, requirement: str, pipfile: str
) -> None:
    """An ingest project's and a warehouse's `prh_ingest` answer (a warehouse has no
    database answer, so no extra), pinned to the template's version of the package."""
    answers = {"prh_ingest": source, "__versions": {"prh-ingest": "1.2.3"}}
    if database:
        answers["database"] = database
    assert rendered("{{ cookiecutter | prh_ingest_requirement }}", answers) == requirement
    assert rendered("{{ cookiecutter | prh_ingest_pipfile }}", answers) == pipfile
    assert naming.check_package_source("prh_ingest", source) == source


@pytest.mark.parametrize(
    "source",
    ["prh-ingest==1.0", "git+https://u:t@h/r.git", "https://h/x.whl; rm -rf /", "file:///../x.whl"],
    ids=["a-requirement", "credentials", "shell", "dot-dot"],
)
def test_a_bad_package_source_is_refused(source: str) -> None:
    with pytest.raises(naming.Invalid, match=r"^prh_ingest .* is not a package source: use index"):
        naming.check_package_source("prh_ingest", source)
