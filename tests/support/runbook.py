"""Ingest projects as the team's Prefect 2.10 runbook made them by hand, in git repos."""

from __future__ import annotations

from pathlib import Path

from prh_ingest import naming

from support.git import commit_all, git

RUNBOOK_FLOW = """from pathlib import Path

from prefect import flow
from prefect_shell import ShellOperation
{extra_imports}

@flow(name="{flow_name}")
def {function}():
    with ShellOperation(
        commands=["pipenv install", "pipenv run python ingest.py"],
        working_dir=Path(__file__).parent.parent,
    ) as ingest:
        ingest.run()


if __name__ == "__main__":
    {function}()
"""

RUNBOOK_INGEST = '''"""Our {slug} ingest: pandas, our own column fixes."""
import os

import pandas as pd
from sqlalchemy import create_engine

frame = pd.read_excel(os.environ["{source_setting}"], dtype=str)
frame = frame.rename(columns={{"MRN": "mrn"}})
frame.to_sql("{table}", create_engine(os.environ["{sink_setting}"]), if_exists="append")
'''

RUNBOOK_PIPFILE = """[[source]]
url = "https://pypi.org/simple"
verify_ssl = true
name = "pypi"

[packages]
pandas = "*"
openpyxl = "*"
sqlalchemy = "*"

[requires]
python_version = "3.11"
"""


def runbook_project(
    root: Path,
    slug: str,
    flow_name: str,
    source_setting: str,
    table: str,
    extra_imports: str = "",
) -> Path:
    """A runbook-era project: a Prefect 2 flow wrapping `pipenv install` and the ingest,
    `prefect/.env` with PIPENV_CUSTOM_VENV_NAME, its own ingest.py and Pipfile."""
    project = root / slug
    # The runbook's conventions, which the naming contract kept.
    sink_setting = naming.sink_setting(slug)
    files = {
        f"prefect/{flow_name}.py": RUNBOOK_FLOW.format(
            flow_name=flow_name,
            function=naming.flow_function(flow_name),
            extra_imports=extra_imports,
        ),
        "prefect/.env": (
            f"{source_setting}=/mnt/landing/{slug}/export.xlsx\n"
            f"{sink_setting}=sqlite:////srv/prh/{slug}.db\n"
            f"PIPENV_CUSTOM_VENV_NAME={naming.venv_name(slug)}\n"
        ),
        "ingest.py": RUNBOOK_INGEST.format(
            slug=slug,
            source_setting=source_setting,
            sink_setting=sink_setting,
            table=table,
        ),
        "Pipfile": RUNBOOK_PIPFILE,
        "README.md": f"# {slug}\n\nSee the runbook.\n",
    }
    for name, text in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    git(project, "init", "-q", "-b", "main")
    commit_all(project, "as the runbook made it")
    return project


def clinic_cal(root: Path) -> Path:
    return runbook_project(
        root, "clinic-cal", "clinic-cal-epic-ingest", "CLINIC_CAL_EPIC_SOURCE_FILE", "clinic_cal"
    )


def prh_dash(root: Path, s3: bool = True) -> Path:
    """Its flow is `prh-dash-ingest`: the `<slug>-<source>-ingest` rule cannot make it.
    With *s3* its flow imports prefect-aws, as the runbook's does."""
    return runbook_project(
        root,
        "prh-dash",
        "prh-dash-ingest",
        "PRH_DASH_REDCAP_SOURCE_FILE",
        "prh_dash",
        extra_imports="from prefect_aws import AwsCredentials, S3Bucket\n" if s3 else "",
    )


CLINIC_CAL_ANSWERS = {"project_name": "Clinic Cal", "source_name": "epic"}
PRH_DASH_ANSWERS = {
    "project_name": "PRH Dash",
    "source_name": "redcap",
    "legacy_flow_name": "prh-dash-ingest",
    "use_s3": True,
}
