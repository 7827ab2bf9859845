"""The team's own code lives in transform.py, which template updates never touch; the loader
(ingest.py) is the template's. A loading improvement reaches a project whose team edited only
transform.py with zero conflicts, and the loader really runs the team's transform."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_cookies.plugin import Cookies
from support.baking import INGEST_TEMPLATE_DIR, SINK_SETTING, SOURCE_SETTING, baked
from support.git import commit_all, git, head
from support.regeneration import (
    cruft_project,
    cruft_state,
    edit_ingest_template,
    regenerate,
    template_repo,
)

# The team's code: a rename, a type fix and a filter (the transform.py docstring's example).
TEAM_TRANSFORM = '''"""Clinic Cal's own fixes."""

from collections.abc import Iterator

Row = list[str | None]
RENAMES = {"appointment_id": "appointment", "duration_minutes": "minutes"}


def transform(source: str, columns: list[str], rows: Iterator[Row]) -> tuple[list, Iterator]:
    columns = [RENAMES.get(name, name) for name in columns]
    status, start = columns.index("status"), columns.index("start_time")

    def fixed(rows: Iterator[Row]) -> Iterator[Row]:
        for row in rows:
            if row[status] == "Cancelled":  # a filter
                continue
            row[start] = row[start] + ":00"  # a type fix: HH:MM:SS
            yield row

    return columns, fixed(rows)
'''
# A change to the template's ingest.py as a template release would make it (the loader
# itself is the package's: its improvements reach a project as a pin bump).
LOADER_OLD = "sys.exit(69)  # EX_UNAVAILABLE: the flow does not retry it"
LOADER_NEW = "sys.exit(69)  # EX_UNAVAILABLE (sysexits.h): the flow does not retry it"


def ingest(project: Path, source: Path, database: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, SOURCE_SETTING: str(source), SINK_SETTING: f"sqlite:///{database}"}
    return subprocess.run(
        [sys.executable, "ingest.py"], cwd=project, env=env, capture_output=True, text=True
    )


def sample_rows(project: Path) -> list[list[str]]:
    lines = (project / "data/sample.csv").read_text().splitlines()
    return [line.split(",") for line in lines[1:]]


def test_a_loader_improvement_reaches_a_project_with_team_code_without_conflict(
    tmp_path: Path,
) -> None:
    template = template_repo(tmp_path)
    project = cruft_project(template, tmp_path / "projects", source_format="csv")
    (project / "transform.py").write_text(TEAM_TRANSFORM)
    commit_all(project, "our column fixes")
    edit_ingest_template(template, "ingest.py", LOADER_OLD, LOADER_NEW)

    result = regenerate(project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "conflict" not in (result.stdout + result.stderr).lower()
    assert LOADER_NEW in (project / "ingest.py").read_text()
    assert (project / "transform.py").read_text() == TEAM_TRANSFORM
    assert cruft_state(project)["commit"] == head(template)
    assert git(project, "status", "--porcelain").split() == ["M", ".cruft.json", "M", "ingest.py"]

    database = tmp_path / "sink.db"
    loaded = ingest(project, project / "data/sample.csv", database)
    assert loaded.returncode == 0, loaded.stderr
    kept = [row for row in sample_rows(project) if row[7] != "Cancelled"]
    with sqlite3.connect(database) as connection:
        columns = [row[1] for row in connection.execute("PRAGMA table_info(clinic_cal_epic)")]
        first = connection.execute(
            "SELECT appointment, start_time, minutes FROM clinic_cal_epic ORDER BY appointment"
        ).fetchone()
        count = connection.execute("SELECT count(*) FROM clinic_cal_epic").fetchone()[0]
    assert columns[:6] == [
        "appointment",
        "clinic",
        "provider",
        "appointment_date",
        "start_time",
        "minutes",
    ]
    assert first == (kept[0][0], kept[0][4] + ":00", kept[0][5])
    assert 0 < count == len(kept) < len(sample_rows(project))  # the filter dropped some


@pytest.mark.parametrize("source_format", ["csv", "xlsx"])
def test_the_default_transform_loads_the_file_as_read(
    source_format: str, tmp_path: Path, cookies: Cookies
) -> None:
    project = baked(
        cookies.bake(extra_context={"source_format": source_format}, template=INGEST_TEMPLATE_DIR)
    )
    database = tmp_path / "sink.db"
    result = ingest(project, project / f"data/sample.{source_format}", database)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(database) as connection:
        count = connection.execute("SELECT count(*) FROM clinic_cal_epic").fetchone()[0]
    assert count == 20


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("return [*columns[:-1], 'visit type'], rows", "returned column 'visit type'"),
        ("return columns, (row[:-1] for row in rows)", "returned a row of 7 values for 8"),
    ],
    ids=["bad-column-name", "short-row"],
)
def test_a_broken_transform_fails_in_one_line_and_loads_nothing(
    body: str, message: str, tmp_path: Path, cookies: Cookies
) -> None:
    project = baked(
        cookies.bake(extra_context={"source_format": "csv"}, template=INGEST_TEMPLATE_DIR)
    )
    (project / "transform.py").write_text(f"def transform(source, columns, rows):\n    {body}\n")
    database = tmp_path / "sink.db"
    result = ingest(project, project / "data/sample.csv", database)
    assert result.returncode == 65
    assert result.stderr.startswith(f"error: {SOURCE_SETTING}=")
    assert f"transform.py {message}" in result.stderr
    assert result.stderr.count("\n") == 1
    with sqlite3.connect(database) as connection:
        tables = connection.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
        rows = (
            connection.execute("SELECT count(*) FROM clinic_cal_epic").fetchone()[0]
            if (("clinic_cal_epic",) in tables)
            else 0
        )
    assert rows == 0
