"""ingest.py's contract: loads the sample, re-runs add nothing, bad files change nothing."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent
SAMPLE = PROJECT_DIR / "data" / "sample.{{ cookiecutter.source_format }}"
SOURCE_SETTING = "{{ cookiecutter | source_setting }}"
SINK_SETTING = "{{ cookiecutter | sink_setting }}"
TABLE = "{{ cookiecutter | table_name }}"
SAMPLE_ROWS = 20
BAD_INPUT = 65  # ingest.py's exit code for a rejected file or setting


def ingest(source: Path, database: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, SOURCE_SETTING: str(source), SINK_SETTING: f"sqlite:///{database}", **settings}
    return subprocess.run(
        [sys.executable, "ingest.py"], cwd=PROJECT_DIR, env=env, capture_output=True, text=True
    )


def table_rows(database: Path) -> list[tuple]:
    with sqlite3.connect(database) as connection:
        return connection.execute(f"SELECT * FROM {TABLE} ORDER BY appointment_id").fetchall()


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "sink" / "warehouse.db"


def test_loads_the_sample(database: Path) -> None:
    result = ingest(SAMPLE, database)
    assert result.returncode == 0, result.stderr
    assert f"loaded {SAMPLE_ROWS} rows" in result.stdout
    rows = table_rows(database)
    assert len(rows) == SAMPLE_ROWS
    assert rows[0][:4] == ("100200", "Cardiology", "Dr. Alvarez", "2026-11-02")


def test_rerunning_the_same_file_adds_no_rows(database: Path) -> None:
    assert ingest(SAMPLE, database).returncode == 0
    first = [row[:-1] for row in table_rows(database)]  # all but _load_id
    assert ingest(SAMPLE, database).returncode == 0
    assert [row[:-1] for row in table_rows(database)] == first
    with sqlite3.connect(database) as connection:
        loads = connection.execute(f"SELECT source_file, row_count FROM {TABLE}_loads").fetchall()
    assert loads == [(str(SAMPLE), SAMPLE_ROWS)]


@pytest.mark.parametrize("other", ["next-day.{{ cookiecutter.source_format }}", "2026-11-28/sample.{{ cookiecutter.source_format }}"])
def test_the_same_bytes_elsewhere_add_nothing(database: Path, tmp_path: Path, other: str) -> None:
    """append (a new table's mode) keys a load by the file's bytes: a copy adds no rows..."""
    copy = tmp_path / other
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_bytes(SAMPLE.read_bytes())
    assert ingest(SAMPLE, database).returncode == 0
    assert "loaded 0 rows" in ingest(copy, database).stdout
    assert len(table_rows(database)) == SAMPLE_ROWS


@pytest.mark.parametrize("other", ["next-day.{{ cookiecutter.source_format }}", "2026-11-28/sample.{{ cookiecutter.source_format }}"])
def test_another_path_adds_its_rows_in_file_mode(database: Path, tmp_path: Path, other: str) -> None:
    """...while LOAD_MODE=file keys it by its path: another name or folder is another file."""
    copy = tmp_path / other
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_bytes(SAMPLE.read_bytes())
    mode = {"{{ cookiecutter | source_key }}_LOAD_MODE": "file"}
    assert ingest(SAMPLE, database, **mode).returncode == 0
    assert ingest(copy, database, **mode).returncode == 0
    assert ingest(copy, database, **mode).returncode == 0
    assert len(table_rows(database)) == 2 * SAMPLE_ROWS


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(None, id="missing"),
        pytest.param(b"", id="empty"),
        pytest.param(b"\x00\xffnot a spreadsheet\x00" * 50, id="garbage"),
    ],
)
def test_bad_file_is_rejected_in_one_line_and_changes_nothing(
    database: Path, tmp_path: Path, content: bytes | None
) -> None:
    """The landing file is loaded, then replaced by a bad one: its rows must survive."""
    landing = tmp_path / SAMPLE.name
    landing.write_bytes(SAMPLE.read_bytes())
    assert ingest(landing, database).returncode == 0
    before = table_rows(database)
    landing.unlink()
    if content is not None:
        landing.write_bytes(content)
    result = ingest(landing, database)
    assert result.returncode == BAD_INPUT
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {SOURCE_SETTING}={landing}: ")
    assert table_rows(database) == before


def test_a_ragged_row_fails_the_whole_load(database: Path, tmp_path: Path) -> None:
    """A CSV export of the loaded rows, with one value too many on its 16th row."""
    assert ingest(SAMPLE, database).returncode == 0
    before = table_rows(database)
    with sqlite3.connect(database) as connection:
        columns = [row[1] for row in connection.execute(f"PRAGMA table_info({TABLE})")]
    header = [name for name in columns if name != "_load_id"]
    lines = [",".join(header)] + [",".join(row[: len(header)]) for row in before]
    lines[15] += ",one too many"
    landing = tmp_path / "ragged.csv"
    landing.write_text("\n".join(lines) + "\n")
    result = ingest(landing, database)
    assert result.returncode == BAD_INPUT
    assert f"row 16 has {len(header) + 1} values, the header has {len(header)}" in result.stderr
    assert table_rows(database) == before


def test_missing_sink_setting_is_rejected(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != SINK_SETTING}
    env[SOURCE_SETTING] = str(SAMPLE)
    result = subprocess.run(
        [sys.executable, "ingest.py"], cwd=PROJECT_DIR, env=env, capture_output=True, text=True
    )
    assert result.returncode == BAD_INPUT
    assert result.stderr.strip() == f"error: {SINK_SETTING} is not set"
