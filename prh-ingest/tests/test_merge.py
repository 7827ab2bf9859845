"""LOAD_MODE=merge at the SQL level, on SQLite and PostgreSQL: one current row per key, every
replaced row in the history, the table as of any load, bad keys refused or the last one kept."""

# ruff: noqa: S608 (the SQL names the tests' own tables)

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from prh_ingest.load import merge as merging
from prh_ingest.load.merge import BadKeys, Merged, as_of, merge
from tables import create_table, select_all, stage

TABLE = "clinic_appointments"
COLUMNS = ["appointment_id", "patient_id", "status", "clinic"]
KEYS = ["appointment_id"]


def appointment(number: int, status: str) -> list[str | None]:
    return [f"A{number:05d}", f"P{number % 397:04d}", status, f"C{number % 7}"]


def merged(
    connection: sa.Connection, rows: list[list[str | None]], load_id: int, **options: str
) -> Merged:
    staging = stage(connection, TABLE, COLUMNS, rows)
    return merge(connection, TABLE, staging, KEYS, load_id, **options)


def current(connection: sa.Connection) -> dict[str, tuple]:
    rows = select_all(connection, f"SELECT {', '.join(COLUMNS)}, _load_id FROM {TABLE}")
    return {row[0]: row for row in rows}


def test_three_days_of_an_appointment_export(database: sa.Engine) -> None:
    monday = [appointment(n, "Scheduled") for n in range(1, 1001)]
    tuesday = [appointment(n, "Arrived") for n in range(1, 301)]
    tuesday += [appointment(n, "Scheduled") for n in range(1001, 1201)]
    # Wednesday: 50 keys Tuesday changed, 40 only Monday had, 10 Tuesday added.
    changed = [*range(251, 301), *range(601, 641), *range(1191, 1201)]
    wednesday = [appointment(n, "Completed") for n in changed]
    with database.begin() as connection:
        create_table(connection, TABLE, COLUMNS)
        assert merged(connection, monday, 1) == Merged(rows=1000, replaced=0)
    with database.begin() as connection:
        assert merged(connection, tuesday, 2) == Merged(rows=500, replaced=300)
    with database.begin() as connection:
        result = merged(connection, wednesday, 3)
        assert (result.rows, result.replaced, result.new_keys) == (100, 100, 0)

    with database.connect() as connection:
        table = current(connection)
        expected = {row[0]: (*row, 1) for row in monday}
        expected |= {row[0]: (*row, 2) for row in tuesday}
        expected |= {row[0]: (*row, 3) for row in wednesday}
        assert table == expected  # exactly 1,200 rows, Wednesday's values where it changed them
        assert len(table) == 1200

        history = select_all(
            connection,
            f"SELECT appointment_id, status, _load_id, _replaced_by_load_id FROM {TABLE}_history",
        )
        replaced = [(f"A{n:05d}", "Scheduled", 1, 2) for n in range(1, 301)]
        replaced += [(f"A{n:05d}", "Arrived", 2, 3) for n in range(251, 301)]
        replaced += [(f"A{n:05d}", "Scheduled", 1, 3) for n in range(601, 641)]
        replaced += [(f"A{n:05d}", "Scheduled", 2, 3) for n in range(1191, 1201)]
        assert sorted(history) == sorted(replaced)

        as_of_monday = sorted(tuple(row) for row in as_of(connection, TABLE, 1))
        assert as_of_monday == sorted((*row, 1) for row in monday)  # value for value
        as_of_tuesday = {row[0]: tuple(row) for row in as_of(connection, TABLE, 2)}
        assert as_of_tuesday == {row[0]: (*row, 1) for row in monday} | {
            row[0]: (*row, 2) for row in tuesday
        }
        as_of_wednesday = sorted(tuple(row) for row in as_of(connection, TABLE, 3))
        assert as_of_wednesday == sorted(expected.values())


def test_the_as_of_query_is_the_documented_one(database: sa.Engine) -> None:
    with database.begin() as connection:
        create_table(connection, TABLE, COLUMNS)
        merged(connection, [appointment(1, "Scheduled")], 1)
        merged(connection, [appointment(1, "Arrived")], 2)
        query = merging.AS_OF.format(
            columns=", ".join(COLUMNS), table=TABLE, history=f"{TABLE}_history"
        )
        rows = connection.execute(sa.text(query), {"load_id": 1}).all()
        assert [tuple(row) for row in rows] == [(*appointment(1, "Scheduled"), 1)]


def test_a_repeated_key_is_refused_naming_its_rows_never_its_value(database: sa.Engine) -> None:
    rows = [appointment(n, "Scheduled") for n in range(1, 11)]
    rows[6] = appointment(3, "Arrived")  # row 8 (the header is row 1) repeats row 4's key
    rows[8] = appointment(5, "Arrived")  # row 10 repeats row 6's
    with database.connect() as connection:
        with connection.begin():
            create_table(connection, TABLE, COLUMNS)
            merged(connection, [appointment(1, "Scheduled")], 1)
        with pytest.raises(BadKeys) as refused, connection.begin():
            merged(connection, rows, 2)
        message = str(refused.value)
        assert message == (
            "key (appointment_id) repeats within the file (4 rows): rows 4 and 8; 6 and 10 "
            "(DUPLICATE_KEYS=last lets the later row win)"
        )
        assert "A0000" not in message
        # Nothing written: the table as before, no history.
        assert current(connection) == {"A00001": (*appointment(1, "Scheduled"), 1)}
        assert select_all(connection, f"SELECT count(*) FROM {TABLE}_history") == [(0,)]


def test_an_empty_key_is_refused_naming_its_rows(database: sa.Engine) -> None:
    rows = [appointment(n, "Scheduled") for n in range(1, 6)]
    rows[1][0] = None
    rows[3][0] = "  "
    with database.connect() as connection:
        with connection.begin():
            create_table(connection, TABLE, COLUMNS)
        with pytest.raises(BadKeys, match=r"^key \(appointment_id\) is empty in rows 3, 5$"):
            with connection.begin():
                merged(connection, rows, 1, duplicates="last")
        assert current(connection) == {}


def test_with_last_the_later_row_of_a_key_wins(database: sa.Engine) -> None:
    rows = [appointment(1, "Scheduled"), appointment(2, "Scheduled"), appointment(1, "Arrived")]
    rows += [appointment(1, "Completed"), appointment(3, "Scheduled")]
    with database.begin() as connection:
        create_table(connection, TABLE, COLUMNS)
        merged(connection, [appointment(1, "Booked")], 1)
        result = merged(connection, rows, 2, duplicates="last")
        assert result == Merged(rows=3, replaced=1, dropped=2)
        assert {key: row[2] for key, row in current(connection).items()} == {
            "A00001": "Completed",
            "A00002": "Scheduled",
            "A00003": "Scheduled",
        }
        # Only the table's row is history: the file's earlier rows of a key were never loaded.
        history = select_all(connection, f"SELECT appointment_id, status FROM {TABLE}_history")
        assert history == [("A00001", "Booked")]


def test_a_key_of_several_columns(database: sa.Engine) -> None:
    columns = ["clinic", "slot", "patient_id"]
    with database.begin() as connection:
        create_table(connection, TABLE, columns)
        first = [["C1", "09:00", "P1"], ["C1", "09:30", "P2"], ["C2", "09:00", "P3"]]
        merge(connection, TABLE, stage(connection, TABLE, columns, first), ["clinic", "slot"], 1)
        second = [["C1", "09:30", "P9"], ["C2", "09:30", "P4"]]
        staging = stage(connection, TABLE, columns, second)
        assert merge(connection, TABLE, staging, ["clinic", "slot"], 2) == Merged(2, 1)
        rows = select_all(connection, f"SELECT clinic, slot, patient_id, _load_id FROM {TABLE}")
        assert sorted(rows) == [
            ("C1", "09:00", "P1", 1),
            ("C1", "09:30", "P9", 2),
            ("C2", "09:00", "P3", 1),
            ("C2", "09:30", "P4", 2),
        ]
        repeated = [["C1", "10:00", "P1"], ["C1", "10:00", "P2"]]
        with pytest.raises(BadKeys, match=r"key \(clinic, slot\) repeats .*rows 2 and 3"):
            staging = stage(connection, TABLE, columns, repeated)
            merge(connection, TABLE, staging, ["clinic", "slot"], 3)


def test_a_new_column_is_added_to_the_history_too(database: sa.Engine) -> None:
    """NEW_COLUMNS=add: the loader adds the column to the table; the merge to the history,
    where rows replaced before it existed have it NULL, as they had it in the table."""
    with database.begin() as connection:
        create_table(connection, TABLE, COLUMNS)
        merged(connection, [appointment(1, "Scheduled"), appointment(2, "Scheduled")], 1)
        merged(connection, [appointment(1, "Arrived")], 2)
    with database.begin() as connection:  # the loader's drift step adds the column
        connection.exec_driver_sql(f"ALTER TABLE {TABLE} ADD COLUMN room TEXT")
        columns = [*COLUMNS, "room"]
        rows = [[*appointment(1, "Completed"), "R7"], [*appointment(2, "Arrived"), "R8"]]
        staging = stage(connection, TABLE, columns, rows)
        assert merge(connection, TABLE, staging, KEYS, 3) == Merged(2, 2)
        history = select_all(
            connection,
            f"SELECT appointment_id, status, room, _load_id, _replaced_by_load_id "
            f"FROM {TABLE}_history ORDER BY _replaced_by_load_id, appointment_id",
        )
        assert history == [
            ("A00001", "Scheduled", None, 1, 2),
            ("A00001", "Arrived", None, 2, 3),
            ("A00002", "Scheduled", None, 1, 3),
        ]
        assert sorted(tuple(row) for row in as_of(connection, TABLE, 2)) == [
            (*appointment(1, "Arrived"), None, 2),
            (*appointment(2, "Scheduled"), None, 1),
        ]
        # A file without the new column: it loads as NULL, the row before keeps its value.
        staging = stage(connection, TABLE, COLUMNS, [appointment(1, "Closed")])
        merge(connection, TABLE, staging, KEYS, 4)
        assert select_all(
            connection, f"SELECT room FROM {TABLE}_history WHERE _replaced_by_load_id = 4"
        ) == [("R7",)]


def test_the_staging_table_numbers_rows_from_the_first_data_row(database: sa.Engine) -> None:
    with database.begin() as connection:
        rows = [appointment(1, "x"), appointment(2, "y")]
        staging = stage(connection, TABLE, COLUMNS, rows, first_row=5)
        numbers = select_all(connection, f"SELECT _row_number FROM {staging} ORDER BY 1")
        assert numbers == [(5,), (6,)]


@pytest.mark.parametrize(
    ("value", "keys"),
    [("Appointment ID", ["Appointment ID"]), (" Clinic , Slot ", ["Clinic", "Slot"])],
    ids=["one", "two-with-spaces"],
)
def test_the_key_setting_is_header_names(value: str, keys: list[str]) -> None:
    assert merging.parse_key(value) == keys
    header = ["Appointment ID", "Clinic", "Slot"]
    columns = ["appointment_id", "clinic", "slot"]
    expected = [column for title, column in zip(header, columns, strict=True) if title in keys]
    assert merging.key_columns(keys, header, columns) == expected


@pytest.mark.parametrize("value", [None, "", " , ", "a,,b", "a,a"], ids=repr)
def test_a_bad_key_setting_is_refused(value: str | None) -> None:
    with pytest.raises(merging.BadRows, match="KEY"):
        merging.parse_key(value)


def test_a_key_not_in_the_header_is_refused() -> None:
    with pytest.raises(merging.BadRows, match=r"^KEY names Visit, not in the file's header$"):
        merging.key_columns(["Visit"], ["Appointment ID"], ["appointment_id"])


def test_duplicate_keys_setting() -> None:
    assert merging.parse_duplicate_keys(None) == "refuse"
    assert merging.parse_duplicate_keys("Last") == "last"
    with pytest.raises(merging.BadRows, match="DUPLICATE_KEYS=first: one of refuse, last"):
        merging.parse_duplicate_keys("first")


def test_a_table_that_repeats_a_key_from_before_merge_still_merges(database: sa.Engine) -> None:
    """Rows appended before LOAD_MODE=merge may repeat a key: the key index cannot be unique,
    a file's repeated key is still refused, and a merged key replaces all of its rows."""
    with database.connect() as connection:
        with connection.begin():
            create_table(connection, TABLE, COLUMNS)
            rows = [appointment(1, "Scheduled"), appointment(1, "Arrived"), appointment(2, "x")]
            connection.exec_driver_sql(
                f"INSERT INTO {TABLE} VALUES ({', '.join(['?'] * 5)})"
                if connection.dialect.name == "sqlite"
                else f"INSERT INTO {TABLE} VALUES ({', '.join(['%s'] * 5)})",
                [(*row, 1) for row in rows],
            )
        with pytest.raises(BadKeys, match=r"repeats within the file \(2 rows\): rows 2 and 3"):
            with connection.begin():
                merged(connection, [appointment(3, "a"), appointment(3, "b")], 2)
        with connection.begin():
            assert merged(connection, [appointment(1, "Completed")], 2) == Merged(1, 2)
        assert {key: row[2] for key, row in current(connection).items()} == {
            "A00001": "Completed",
            "A00002": "x",
        }
        history = select_all(connection, f"SELECT status FROM {TABLE}_history ORDER BY status")
        assert history == [("Arrived",), ("Scheduled",)]


def test_a_refused_key_carries_no_value_in_its_error_or_what_caused_it(
    database: sa.Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """PostgreSQL's unique-index error quotes the repeated key: it must not travel along."""
    canary = "CANARY-MRN-7741"
    rows = [[canary, "P1", "Scheduled", "C1"], [canary, "P1", "Arrived", "C1"]]
    with database.begin() as connection:
        create_table(connection, TABLE, COLUMNS)
    with pytest.raises(BadKeys) as refused, database.begin() as connection:
        merged(connection, rows, 1)
    chain, error = [], refused.value
    while error is not None:
        chain += [str(error), repr(error)]
        error = error.__cause__ or error.__context__
    output = capsys.readouterr()
    assert not [text for text in [*chain, output.out, output.err] if canary in text]


def test_staging_never_drops_a_table_of_its_name(database: sa.Engine) -> None:
    with database.begin() as connection:
        create_table(connection, f"{TABLE}_staging", COLUMNS)
        stage(connection, TABLE, COLUMNS, [appointment(1, "x")])
        stage(connection, TABLE, COLUMNS, [appointment(2, "x")])  # replaces the first staging
        assert sa.inspect(connection).has_table(f"{TABLE}_staging")


def test_a_session_that_used_temporary_tables_before_still_stages(database: sa.Engine) -> None:
    with database.connect() as connection:
        with connection.begin():
            connection.exec_driver_sql("CREATE TEMPORARY TABLE scratch (a TEXT)")
            connection.exec_driver_sql("INSERT INTO scratch VALUES ('x')")
            connection.exec_driver_sql("DROP TABLE scratch")
        with connection.begin():
            create_table(connection, TABLE, COLUMNS)
            assert merged(connection, [appointment(1, "x")], 1) == Merged(1, 0)


# --- Rows COPYed straight into the table (PostgreSQL) ----------------------------------------


@pytest.fixture
def postgresql(pg_server) -> Iterator[sa.Engine]:  # noqa: ANN001 (pg.py's server)
    engine = sa.create_engine(pg_server.url(pg_server.create_database("copied")))
    try:
        yield engine
    finally:
        engine.dispose()


def copied(connection: sa.Connection, rows: list[list[str | None]], load_id: int) -> int:
    """The rows in the table as load *load_id*, as the loader's COPY puts them."""
    columns = ", ".join([*COLUMNS, "_load_id"])
    with connection.connection.cursor().copy(f"COPY {TABLE} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([*(value or None for value in row), load_id])
    return len(rows)


@pytest.mark.parametrize(
    ("keys", "sound"),
    [
        ([["A1", "x"], ["A2", "x"], ["  7", "x"]], True),  # a key may start with a space
        ([["A1", "x"], ["A1", "y"]], True),  # (appointment_id, clinic): the pair is the key
        ([["A1", "x"], ["A2", "x"], ["A1", "x"]], False),
        ([["A1", "x"], [None, "x"]], False),
        ([["A1", "x"], ["   ", "x"]], False),
        ([["A1", "x"], ["A1", None]], False),
    ],
    ids=["unique", "pair-unique", "repeated", "null", "blank", "null-part"],
)
def test_the_copied_rows_keys_are_checked_in_one_pass(
    postgresql: sa.Engine, keys: list[list[str | None]], sound: bool
) -> None:
    """check_copied_keys over a two-column key: only this load's rows count."""
    earlier = [["A1", "P1", "Scheduled", "x"]]  # load 1 had A1 too: not a repeat
    with postgresql.begin() as connection:
        create_table(connection, TABLE, COLUMNS)
        copied(connection, earlier, 1)
        copied(connection, [[key, "P1", "Arrived", clinic] for key, clinic in keys], 2)
        key = ["appointment_id", "clinic"]
        assert merging.check_copied_keys(connection, TABLE, key, 2) is sound


def test_copied_rows_merge_as_staged_ones_do(postgresql: sa.Engine) -> None:
    """merge_copied: the same table, history and counts as the staging path's merge."""
    monday = [appointment(n, "Scheduled") for n in range(1, 101)]
    tuesday = [appointment(n, "Arrived") for n in range(51, 151)]
    with postgresql.begin() as connection:
        create_table(connection, TABLE, COLUMNS)
        rows = copied(connection, monday, 1)
        assert merging.merge_copied(connection, TABLE, KEYS, 1, rows) == Merged(100, 0)
    with postgresql.begin() as connection:
        rows = copied(connection, tuesday, 2)
        assert merging.merge_copied(connection, TABLE, KEYS, 2, rows) == Merged(100, 50)
    with postgresql.connect() as connection:
        expected = {row[0]: (*row, 1) for row in monday} | {row[0]: (*row, 2) for row in tuesday}
        assert current(connection) == expected
        assert {tuple(row) for row in as_of(connection, TABLE, 1)} == {(*row, 1) for row in monday}


def test_copied_rows_with_a_repeated_key_are_left_to_the_staging_path(
    postgresql: sa.Engine,
) -> None:
    with postgresql.begin() as connection:
        create_table(connection, TABLE, COLUMNS)
        rows = copied(connection, [appointment(1, "A"), appointment(1, "B")], 1)
        assert merging.merge_copied(connection, TABLE, KEYS, 1, rows) is None
        assert not sa.inspect(connection).has_table(f"{TABLE}_history")  # nothing moved
