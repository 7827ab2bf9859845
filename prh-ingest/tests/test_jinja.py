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
