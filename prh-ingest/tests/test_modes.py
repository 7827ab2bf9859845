"""LOAD_MODE on both databases: a source system that overwrites one path with each day's
file never loses an earlier day by surprise, and a template update keeps what an existing
project's tables do (a table keeps the mode of its first load; loads from before LOAD_MODE
are recorded as `file`, what the loader did then)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from loading import BAD_INPUT, LOAD_MODE_SETTING, TABLE, Sink, ingest, rejected
from prh_ingest import naming
from prh_ingest.load import sinks
from prh_ingest.settings import Names

HEADER = "mrn,visit"
KEY_SETTING = naming.key_setting("clinic-cal", "epic")
DAY_1 = [(f"{n:08}", "2026-11-01") for n in range(10)]
DAY_2 = [(f"{n:08}", "2026-11-02") for n in range(100, 105)]


def write_day(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("\n".join([HEADER, *(",".join(row) for row in rows)]) + "\n")
    return path


def records(sink: Sink) -> list[tuple]:
    """Each load's record: (id, path, mode, rows, replaced_by), in load order."""
    sql = f"SELECT load_id, source_file, load_mode, row_count, replaced_by FROM {TABLE}_loads"  # noqa: S608
    return sorted(sink.query(sql))


def sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


# What a path overwritten with day 2's file leaves, in each mode.
KEPT = {"append": DAY_1 + DAY_2, "file": DAY_2, "snapshot": DAY_2}


@pytest.mark.parametrize("mode", KEPT)
def test_a_path_overwritten_with_day_2(sink: Sink, tmp_path: Path, mode: str) -> None:
    landing = write_day(tmp_path / "epic.csv", DAY_1)
    assert ingest(landing, sink, **{LOAD_MODE_SETTING: mode}).returncode == 0
    day_1_sha = sha256(landing)
    write_day(landing, DAY_2)
    result = ingest(landing, sink, **{LOAD_MODE_SETTING: mode})
    assert result.returncode == 0, result.stderr
    assert f"loaded 5 rows from {landing}" in result.stdout
    assert f"({LOAD_MODE_SETTING}={mode}" in result.stdout
    assert sink.rows() == sorted(KEPT[mode], key=repr)
    replaced_by = None if mode == "append" else 2
    assert records(sink) == [
        (1, str(landing), mode, 10, replaced_by),  # day 1's record stays, also once replaced
        (2, str(landing), mode, 5, None),
    ]
    kept = sink.query(f"SELECT source_sha256 FROM {TABLE}_loads WHERE load_id = 1")  # noqa: S608
    assert kept == [(day_1_sha,)]


def test_new_tables_append_by_default(sink: Sink, tmp_path: Path) -> None:
    landing = write_day(tmp_path / "epic.csv", DAY_1)
    assert ingest(landing, sink).returncode == 0
    write_day(landing, DAY_2)
    assert ingest(landing, sink).returncode == 0
    assert sink.rows() == sorted(DAY_1 + DAY_2, key=repr)
    assert [record[2] for record in records(sink)] == ["append", "append"]


def test_the_same_bytes_again_add_nothing_and_say_so(sink: Sink, tmp_path: Path) -> None:
    """Wherever they sit: a copy in an archive folder is the same file."""
    landing = write_day(tmp_path / "epic.csv", DAY_1)
    assert ingest(landing, sink).returncode == 0
    copy = tmp_path / "archive" / "epic.csv"
    copy.parent.mkdir()
    copy.write_bytes(landing.read_bytes())
    result = ingest(copy, sink)
    assert result.returncode == 0, result.stderr
    assert f"loaded 0 rows: {copy} has the same bytes as load 1, already in table" in result.stdout
    assert sink.rows() == sorted(DAY_1, key=repr)
    assert len(records(sink)) == 1


def test_snapshot_replaces_every_earlier_file(sink: Sink, tmp_path: Path) -> None:
    other = write_day(tmp_path / "other.csv", DAY_1)
    assert ingest(other, sink).returncode == 0
    full = write_day(tmp_path / "full.csv", DAY_2)
    result = ingest(full, sink, **{LOAD_MODE_SETTING: "snapshot"})
    assert result.returncode == 0, result.stderr
    assert "replacing the rows of 1 earlier load(s)" in result.stdout
    assert sink.rows() == sorted(DAY_2, key=repr)
    assert [record[4] for record in records(sink)] == [2, None]


@pytest.mark.parametrize("mode", KEPT)
def test_a_bad_day_2_changes_nothing(sink: Sink, tmp_path: Path, mode: str) -> None:
    landing = write_day(tmp_path / "epic.csv", DAY_1)
    assert ingest(landing, sink, **{LOAD_MODE_SETTING: mode}).returncode == 0
    landing.write_text(landing.read_text() + "99,2026-11-02,extra\n")
    result = ingest(landing, sink, **{LOAD_MODE_SETTING: mode})
    assert rejected(result, landing) == "row 12 has 3 values, the header has 2"
    assert sink.rows() == sorted(DAY_1, key=repr)
    assert records(sink) == [(1, str(landing), mode, 10, None)]


def test_a_bad_load_mode_is_refused(sink: Sink, tmp_path: Path) -> None:
    landing = write_day(tmp_path / "epic.csv", DAY_1)
    result = ingest(landing, sink, **{LOAD_MODE_SETTING: "replace"})
    assert result.returncode == BAD_INPUT
    modes = "append, file, snapshot, merge"
    assert result.stderr == f"error: {LOAD_MODE_SETTING}=replace: one of {modes}\n"


# --- an existing project's tables, as the loader before LOAD_MODE left them --------------------


def tables_before_load_modes(sink: Sink, landing: Path) -> None:
    """The two tables exactly as ingest.py made them before LOAD_MODE (no load_mode or
    replaced_by column), holding day 1's load of `landing`."""
    engine = sa.create_engine(sink.url)
    if engine.dialect.name == "sqlite":
        Path(engine.url.database).parent.mkdir(parents=True, exist_ok=True)
    metadata = sa.MetaData()
    # A copy, not an import: the released pre-wave-3 schema an upgraded ingest.py must read.
    loads = sa.Table(
        f"{TABLE}_loads",
        metadata,
        sa.Column("load_id", sa.Integer, primary_key=True),
        sa.Column("source_file", sa.Text, nullable=False, index=True),
        sa.Column("source_sha256", sa.String(64), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("row_count", sa.Integer),
    )
    rows = sa.Table(
        TABLE,
        metadata,
        sa.Column("mrn", sa.Text),
        sa.Column("visit", sa.Text),
        sa.Column(
            "_load_id",
            sa.Integer,
            nullable=False,
            server_default=(
                sa.text("current_setting('prh_ingest.load_id')::integer")
                if engine.dialect.name == "postgresql"
                else None
            ),
        ),
    )
    with engine.begin() as connection:
        metadata.create_all(connection)
        connection.execute(
            loads.insert().values(
                source_file=str(landing),
                source_sha256=sha256(landing),
                loaded_at=sa.func.now(),
                row_count=len(DAY_1),
            )
        )
        connection.execute(rows.insert(), [{"mrn": m, "visit": v, "_load_id": 1} for m, v in DAY_1])
    engine.dispose()


def test_an_updated_project_keeps_replacing_by_path(sink: Sink, tmp_path: Path) -> None:
    """After the update, with no LOAD_MODE set, day 2 at the same path replaces day 1 as it
    did before, and day 1's record is kept, marked replaced."""
    landing = write_day(tmp_path / "epic.csv", DAY_1)
    tables_before_load_modes(sink, landing)
    write_day(landing, DAY_2)
    result = ingest(landing, sink)
    assert result.returncode == 0, result.stderr
    assert f"({LOAD_MODE_SETTING}=file" in result.stdout
    assert sink.rows() == sorted(DAY_2, key=repr)
    assert records(sink) == [(1, str(landing), "file", 10, 2), (2, str(landing), "file", 5, None)]
    other = write_day(tmp_path / "2026-11-03.csv", DAY_1[:3])
    assert ingest(other, sink).returncode == 0  # other paths still add their rows
    assert len(sink.rows()) == 8


def load_id_indexes(sink: Sink) -> list[str]:
    """The table's indexes on `_load_id` (by their column, whatever their name)."""
    engine = sa.create_engine(sink.url)
    try:
        indexes = sa.inspect(engine).get_indexes(TABLE)
    finally:
        engine.dispose()
    return [index["name"] for index in indexes if index["column_names"] == ["_load_id"]]


# Each load's mode, then whether the table indexes _load_id after them.
INDEXED_AFTER = {
    "append": (["append"], False),
    "snapshot": (["snapshot"], False),
    "file": (["file"], True),
    "merge": (["merge"], True),
    "append-then-file": (["append", "file"], True),
}


@pytest.mark.parametrize(("modes", "indexed"), INDEXED_AFTER.values(), ids=INDEXED_AFTER)
def test_only_a_mode_that_reads_by_load_id_indexes_it(
    sink: Sink, tmp_path: Path, modes: list[str], indexed: bool
) -> None:
    """file and merge find rows by _load_id; append and snapshot never do, so their loads
    keep no index row by row. A table switched to such a mode gets it then."""
    for day, mode in zip((DAY_1, DAY_2), modes, strict=False):
        landing = write_day(tmp_path / f"{mode}.csv", day)
        settings = {LOAD_MODE_SETTING: mode, KEY_SETTING: "mrn"}
        result = ingest(landing, sink, **settings)
        assert result.returncode == 0, result.stderr
    expected = [f"ix_{TABLE}__load_id"] if indexed else []
    assert load_id_indexes(sink) == expected


def test_a_long_table_name_finds_its_index_by_the_name_postgresql_keeps(
    database: sa.Engine,
) -> None:
    """PostgreSQL keeps 63 characters of a name: the index is looked for by that cut name, so
    a later load in file mode neither makes it again nor waits for the lock that makes it."""
    names = Names("a-project-name-forty-characters-long-xyz", "a-source-of-15c")
    assert len(f"ix_{names.table}__load_id") > 63
    with database.begin() as connection:
        connection.exec_driver_sql(f"CREATE TABLE {names.table} (_load_id INTEGER)")
        sinks.index_load_ids(connection, names, "file")
    statements: list[str] = []
    record = lambda *event: statements.append(event[2])  # noqa: E731 (the statement's text)
    sa.event.listen(database, "before_cursor_execute", record)
    with database.begin() as connection:
        sinks.index_load_ids(connection, names, "file")
    sa.event.remove(database, "before_cursor_execute", record)
    assert [s for s in statements if "CREATE INDEX" in s or "advisory" in s] == []
    indexes = sa.inspect(database).get_indexes(names.table)
    assert [index["name"] for index in indexes] == [naming.load_id_index(names.table)]
