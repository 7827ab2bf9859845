"""LOAD_MODE=merge through the loader's main, on both databases (issue 28): three days of an
appointment export leave one current row per key and every replaced one in the history; a
re-sent file changes nothing; bad keys are refused by row number, or the last one wins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from loading import LOAD_MODE_SETTING, NEW_COLUMNS_SETTING, TABLE, Sink, ingest, rejected
from prh_ingest import naming
from prh_ingest.load import merge
from prh_ingest.load.merge import AS_OF

KEY_SETTING = naming.key_setting("clinic-cal", "epic")
DUPLICATES_SETTING = naming.duplicate_keys_setting("clinic-cal", "epic")
MERGE = {LOAD_MODE_SETTING: "merge", KEY_SETTING: "Appointment ID"}
HEADER = "Appointment ID,Patient ID,Status"
COLUMNS = "appointment_id, patient_id, status"


def appointment(number: int, status: str) -> tuple[str, str, str]:
    return (f"A{number:05d}", f"P{number % 397:04d}", status)


def write(path: Path, rows: list[tuple[str, ...]], header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *(",".join(row) for row in rows)]) + "\n")
    return path


def loaded(result_stdout: str) -> dict:
    return json.loads(result_stdout.strip().splitlines()[-1])


def test_three_days_of_an_appointment_export(sink: Sink, tmp_path: Path) -> None:
    monday = [appointment(n, "Scheduled") for n in range(1, 1001)]
    tuesday = [appointment(n, "Arrived") for n in range(1, 301)]
    tuesday += [appointment(n, "Scheduled") for n in range(1001, 1201)]
    changed = [*range(251, 301), *range(601, 641), *range(1191, 1201)]  # 100, some Tuesday's
    wednesday = [appointment(n, "Completed") for n in changed]
    days = [
        write(tmp_path / "monday.csv", monday),
        write(tmp_path / "tuesday.csv", tuesday),
        write(tmp_path / "wednesday.csv", wednesday),
    ]
    for day in days:
        result = ingest(day, sink, **MERGE)
        assert result.returncode == 0, result.stderr
    again = ingest(days[1], sink, **MERGE)  # Tuesday's file sent again
    assert again.returncode == 0, again.stderr
    assert loaded(again.stdout)["same_as_load"] == 2
    assert loaded(again.stdout)["rows"] == 0

    expected = {row[0]: row for row in monday} | {row[0]: row for row in tuesday}
    expected |= {row[0]: row for row in wednesday}
    current = sink.query(f"SELECT {COLUMNS} FROM {TABLE}")  # noqa: S608
    assert len(current) == 1200
    assert {row[0]: tuple(row) for row in current} == expected
    history = sink.query(f"SELECT count(*) FROM {naming.history_table(TABLE)}")  # noqa: S608
    assert history == [(300 + 100,)]
    as_of = AS_OF.format(columns=COLUMNS, table=TABLE, history=naming.history_table(TABLE))
    monday_rows = sink.query(as_of.replace(":load_id", "1"))
    assert sorted(tuple(row[:3]) for row in monday_rows) == sorted(monday)  # value for value


def test_merge_adds_new_columns(sink: Sink, tmp_path: Path) -> None:
    first = write(tmp_path / "monday.csv", [appointment(n, "Scheduled") for n in range(1, 4)])
    assert ingest(first, sink, **MERGE).returncode == 0
    wider = [(*appointment(2, "Arrived"), "Room 4")]
    second = write(tmp_path / "tuesday.csv", wider, header=f"{HEADER},Room")
    result = ingest(second, sink, **MERGE, **{NEW_COLUMNS_SETTING: "add"})
    assert result.returncode == 0, result.stderr
    assert loaded(result.stdout)["columns_added"] == ["room"]
    rows = sink.query(f"SELECT {COLUMNS}, room FROM {TABLE}")  # noqa: S608
    assert sorted(tuple(row) for row in rows) == [
        (*appointment(1, "Scheduled"), None),
        (*appointment(2, "Arrived"), "Room 4"),
        (*appointment(3, "Scheduled"), None),
    ]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [appointment(1, "A"), appointment(2, "B"), appointment(1, "C")],
            "rows 2 and 4",
        ),
        ([appointment(1, "A"), ("", "P0001", "B")], "row 3"),
    ],
    ids=["repeated", "empty"],
)
def test_bad_keys_are_refused_by_row_number(
    sink: Sink, tmp_path: Path, rows: list[tuple[str, ...]], message: str
) -> None:
    landing = write(tmp_path / "monday.csv", rows)
    error = rejected(ingest(landing, sink, **MERGE), landing)
    assert "appointment_id" in error and message in error, error
    assert "A00001" not in error and "P0001" not in error  # never a value


@pytest.mark.parametrize(
    "first_status",
    ["Scheduled", '12" drain'],
    ids=["copy-reads-it", "copy-reads-it-otherwise"],
)
def test_the_last_of_a_repeated_key_wins_under_last(
    sink: Sink, tmp_path: Path, first_status: str
) -> None:
    """On PostgreSQL a merge first COPYs the file into the table; the repeated key sends it
    to the staging path, which reads the file again: also when COPY could not read its bytes
    and its rows went one by one (a `"` after a value's first character)."""
    rows = [appointment(1, first_status), appointment(2, "Scheduled"), appointment(1, "Arrived")]
    landing = write(tmp_path / "monday.csv", rows)
    result = ingest(landing, sink, **MERGE, **{DUPLICATES_SETTING: "last"})
    assert result.returncode == 0, result.stderr
    current = sink.query(f"SELECT {COLUMNS} FROM {TABLE}")  # noqa: S608
    assert sorted(tuple(row) for row in current) == [
        appointment(1, "Arrived"),
        appointment(2, "Scheduled"),
    ]


def test_postgresql_merges_a_clean_file_without_staging(
    sink: Sink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file's rows are written once, straight into the table; SQLite stages them."""
    staged: list[str] = []
    create_staging = merge.create_staging

    def staging(connection: object, table: str, *args: object, **kwargs: object) -> str:
        staged.append(table)
        return create_staging(connection, table, *args, **kwargs)

    monkeypatch.setattr(merge, "create_staging", staging)
    monday = write(tmp_path / "monday.csv", [appointment(n, "Scheduled") for n in range(1, 11)])
    tuesday = write(tmp_path / "tuesday.csv", [appointment(n, "Arrived") for n in range(6, 16)])
    for day in (monday, tuesday):
        result = ingest(day, sink, **MERGE)
        assert result.returncode == 0, result.stderr
    assert loaded(result.stdout)["rows"] == 10
    history = sink.query(f"SELECT count(*) FROM {naming.history_table(TABLE)}")  # noqa: S608
    assert history == [(5,)]
    assert staged == ([] if sink.url.startswith("postgresql") else [TABLE, TABLE])


def test_merge_without_a_key_is_one_line(sink: Sink, tmp_path: Path) -> None:
    landing = write(tmp_path / "monday.csv", [appointment(1, "A")])
    result = ingest(landing, sink, **{LOAD_MODE_SETTING: "merge"})
    assert result.returncode == 65
    assert result.stderr.strip() == (
        f"error: {KEY_SETTING} is not set: LOAD_MODE=merge needs the key's header names"
    )


README = Path(__file__).parents[2] / "{{cookiecutter.project_slug}}" / "README.md"


def readme_queries() -> list[str]:
    """The generated README's SQL blocks, with this project's table name."""
    text = README.read_text().replace("{{ cookiecutter | table_name }}", TABLE)
    return [block.split("```")[0].strip().rstrip(";") for block in text.split("```sql\n")[1:]]


def test_the_readmes_queries_run(sink: Sink, tmp_path: Path) -> None:
    """Docs that run: the README's as-of-Monday and open-rejects queries, as written."""
    queries = readme_queries()
    (as_of_monday,) = [sql for sql in queries if f"{TABLE}_history" in sql]
    (open_rejects,) = [sql for sql in queries if f"{TABLE}_rejects" in sql]
    monday = write(tmp_path / "monday.csv", [appointment(n, "Scheduled") for n in range(1, 4)])
    tuesday = write(tmp_path / "tuesday.csv", [appointment(2, "Arrived"), ("A9", "P9", "X", "4")])
    assert ingest(monday, sink, **MERGE).returncode == 0
    quarantine = {naming.bad_rows_setting("clinic-cal", "epic"): "quarantine"}
    result = ingest(tuesday, sink, **MERGE, **quarantine, **{"CLINIC_CAL_EPIC_MAX_BAD_ROWS": "1"})
    assert result.returncode == 0, result.stderr
    assert sorted(sink.query(as_of_monday)) == [(f"A{n:05d}", "Scheduled") for n in range(1, 4)]
    assert [tuple(row[:3]) for row in sink.query(open_rejects)] == [(2, 3, "wrong_width")]
