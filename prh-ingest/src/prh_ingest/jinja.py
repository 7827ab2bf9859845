"""The templates' Jinja extension: every derived name a template writes, rendered through
prh_ingest.naming, so no template derives a name itself.

Each filter takes the answers (`cookiecutter`) and gives one name of the project's first
source, or of the warehouse:

    {{ cookiecutter | flow_name }}        clinic-cal-epic-ingest (or the legacy_flow_name kept)
    {{ cookiecutter | flow_function }}    clinic_cal_epic_ingest
    {{ cookiecutter | env_prefix }}       CLINIC_CAL
    {{ cookiecutter | source_key }}       CLINIC_CAL_EPIC (its optional settings: <key>_SHEET, ...)
    {{ cookiecutter | source_setting }}   CLINIC_CAL_EPIC_SOURCE_FILE
    {{ cookiecutter | sink_setting }}     CLINIC_CAL_DATABASE_URL
    {{ cookiecutter | table_name }}       clinic_cal_epic
    {{ cookiecutter | warehouse_tag }}    warehouse:prh-warehouse
    {{ cookiecutter | prh_ingest_requirement }}  prh-ingest @ git+https://…@v0.1.0#subdirectory=…
    {{ cookiecutter | prh_ingest_pipfile }}      the same as a Pipfile entry
(the last two from the `prh_ingest` answer and the version the template pins; an ingest
project on PostgreSQL gets the package's `postgresql` extra)

Both cookiecutter.json files load it as `contract.jinja.Names`, which imports this module
from the template commit being rendered (see contract/jinja.py), never an installed copy.
Only a template render imports it: Jinja2 comes with cookiecutter, not with this package.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import Environment
from jinja2.ext import Extension

from prh_ingest import naming

Answers = Mapping[str, Any]


def flow_name(answers: Answers) -> str:
    return naming.first_flow_name(
        answers["project_slug"], answers["source_name"], answers.get("legacy_flow_name", "")
    )


def flow_function(answers: Answers) -> str:
    return naming.flow_function(flow_name(answers))


def env_prefix(answers: Answers) -> str:
    return naming.env_prefix(answers["project_slug"])


def source_key(answers: Answers) -> str:
    return naming.source_key(answers["project_slug"], answers["source_name"])


def source_setting(answers: Answers) -> str:
    return naming.source_setting(answers["project_slug"], answers["source_name"])


def sink_setting(answers: Answers) -> str:
    return naming.sink_setting(answers["project_slug"])


def table_name(answers: Answers) -> str:
    return naming.table_name(answers["project_slug"], answers["source_name"])


def warehouse_tag(answers: Answers) -> str:
    return naming.warehouse_tag(answers["warehouse_slug"])


def package_extra(answers: Answers) -> str:
    return "postgresql" if answers.get("database") == "postgresql" else ""


def prh_ingest_requirement(answers: Answers) -> str:
    version = answers["__versions"]["prh-ingest"]
    return naming.package_requirement(answers["prh_ingest"], version, package_extra(answers))


def prh_ingest_pipfile(answers: Answers) -> str:
    version = answers["__versions"]["prh-ingest"]
    return naming.pipfile_entry(answers["prh_ingest"], version, package_extra(answers))


FILTERS: dict[str, Callable[[Answers], str]] = {
    derive.__name__: derive
    for derive in (
        flow_name,
        flow_function,
        env_prefix,
        source_key,
        source_setting,
        sink_setting,
        table_name,
        warehouse_tag,
        prh_ingest_requirement,
        prh_ingest_pipfile,
    )
}


class Names(Extension):
    """The FILTERS above, in the environment that renders a template."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.filters.update(FILTERS)
