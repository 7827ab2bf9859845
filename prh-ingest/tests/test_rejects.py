"""BAD_ROWS=quarantine at the row and SQL level, on SQLite and PostgreSQL: which rows are
rejects and why, the limit above which a file is refused whole, superseded rejects, and a
patient's value that goes nowhere but the rejects table."""

# ruff: noqa: S608 (the SQL names the tests' own tables)

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest
import sqlalchemy as sa
from prh_ingest import naming
from prh_ingest.load import rejects
from prh_ingest.load.merge import merge
from prh_ingest.load.rejects import Reject, RowReader, TooManyBadRows
from tables import create_table, select_all, stage

TABLE = "clinic_appointments"
COLUMNS = ["appointment_id", "patient_id", "status"]
CANARY = "CANARY-MRN-7741"
READER = RowReader(encoding="utf-8", delimiter=",", quote='"', width=3, key_positions=(0,))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'A1,P1,"Arrived, late"\r\n', ["A1", "P1", "Arrived, late"]),
        (b"A1,,\n", ["A1", "", ""]),
        (b"A1,P1,Arrived,extra\n", rejects.WRONG_WIDTH),
        (b"A1,P1\n", rejects.WRONG_WIDTH),
        (b"\n", rejects.WRONG_WIDTH),
        (b"A1,P\xff1,Arrived\n", rejects.UNDECODABLE),
        (b'A1,P1,"Arrived\n', rejects.UNTERMINATED_QUOTE),
        (b'A1,"P1"x,Arrived\n', rejects.MALFORMED_QUOTE),
        (b",P1,Arrived\n", rejects.MISSING_KEY),
        (b" ,P1,Arrived\n", rejects.MISSING_KEY),
    ],
    ids=["ok", "ok-empty-values", "extra", "short", "blank", "byte", "quote", "after-quote",
         "no-key", "blank-key"],
)
def test_a_row_is_read_or_rejected_with_a_reason(raw: bytes, expected: object) -> None:
    read = READER.read(raw, 7)
    if isinstance(expected, list):
        assert read == expected
    else:
        assert read == Reject(7, str(expected), raw.rstrip(b"\r\n"), read.row_key)


def test_a_reject_keeps_the_key_it_carried_when_it_could_be_read() -> None:
    assert READER.read(b"A9,P1,Arrived,extra\n", 2).row_key == "A9"
    assert READER.read(b"A9,P\xff,x\n", 2).row_key == "A9"
    assert READER.read(b",P1,x\n", 2).row_key is None
    two = RowReader("utf-8", ",", '"', 3, key_positions=(0, 2))
    assert two.read(b"A9,P1\n", 2).row_key is None  # half a key is no key
    assert two.read(b"A9,P1,x,y\n", 2).row_key == "A9\x1fx"


def test_without_a_qualifier_quotes_are_data() -> None:
    reader = RowReader("cp1252", "|", None, 2)
    assert reader.read(b'5" laceration|\xe9\r\n', 3) == ['5" laceration', "\u00e9"]


@pytest.mark.parametrize(
    ("value", "bad", "rows", "refused"),
    [
        (None, 100, 10_000, False),
        (None, 101, 10_000, True),
        ("0", 1, 10_000, True),
        ("0", 0, 10_000, False),
        ("25", 25, 100, False),
        ("25", 26, 1_000_000, True),
        ("0.5%", 5, 1_000, False),
        ("0.5%", 6, 1_000, True),
        (" 5% ", 5, 100, False),
    ],
    ids=["default-at", "default-above", "zero-one", "zero-none", "count-at", "count-above",
         "percent-at", "percent-above", "spaces"],
)
def test_max_bad_rows(value: str | None, bad: int, rows: int, refused: bool) -> None:
    assert rejects.parse_max_bad_rows(value).exceeded(bad, rows) is refused


@pytest.mark.parametrize("value", ["-1", "1.5", "ten", "%", "101%", "1 %"], ids=repr)
def test_a_bad_max_bad_rows_is_refused(value: str) -> None:
    with pytest.raises(rejects.BadRows, match=rf"^MAX_BAD_ROWS={value}: a count"):
        rejects.parse_max_bad_rows(value)


def test_bad_rows_setting() -> None:
    assert rejects.parse_bad_rows(None) == "refuse"
    assert rejects.parse_bad_rows("Quarantine") == "quarantine"
    with pytest.raises(rejects.BadRows, match="^BAD_ROWS=skip: one of refuse, quarantine$"):
        rejects.parse_bad_rows("skip")


def export(rows: int, bad: dict[int, bytes]) -> list[bytes]:
    """A file's data lines (row 2 on), the ones of `bad` row numbers replaced."""
    lines = [f"A{n:05d},P{n % 97:03d},Arrived\n".encode() for n in range(2, rows + 2)]
    for number, line in bad.items():
        lines[number - 2] = line
    return lines


def quarantine(
    connection: sa.Connection, lines: Sequence[bytes], load_id: int, sha256: str
) -> tuple[int, list[Reject]]:
    """What the loader does with BAD_ROWS=quarantine: good rows in, bad ones aside, the
    whole file refused above the limit (before anything is written)."""
    good, bad = [], []
    for number, line in enumerate(lines, start=2):
        read = READER.read(line, number)
        (bad if isinstance(read, Reject) else good).append(read)
    rejects.parse_max_bad_rows(None).check(bad, len(lines))
    cursor = connection.connection.cursor()
    marks = "%s, %s, %s" if connection.dialect.name == "postgresql" else "?, ?, ?"
    cursor.executemany(
        f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}, _load_id) VALUES ({marks}, {load_id})", good
    )
    rejects.record(connection, TABLE, load_id, sha256, bad)
    return len(good), bad


THREE_BAD = {
    17: b"A00017,P017,Arrived,extra\n",
    4242: b"A04242,P\xff42,Arrived\n",
    9000: b'A09000,P000,"Arrived\n',
}


def test_three_bad_rows_among_10000_are_set_aside(database: sa.Engine) -> None:
    with database.begin() as connection:
        create_table(connection, TABLE, COLUMNS)
        loaded, bad = quarantine(connection, export(10_000, THREE_BAD), 1, "a" * 64)
        assert (loaded, len(bad)) == (9_997, 3)
    with database.connect() as connection:
        assert select_all(connection, f"SELECT count(*) FROM {TABLE}") == [(9_997,)]
        rows = select_all(
            connection,
            "SELECT load_id, row_number, source_sha256, reason, raw_line, superseded_by "
            f"FROM {TABLE}_rejects ORDER BY row_number",
        )
        assert [(*row[:4], bytes(row[4]), row[5]) for row in rows] == [
            (1, 17, "a" * 64, "wrong_width", THREE_BAD[17].rstrip(), None),
            (1, 4242, "a" * 64, "undecodable", THREE_BAD[4242].rstrip(), None),
            (1, 9000, "a" * 64, "unterminated_quote", THREE_BAD[9000].rstrip(), None),
        ]


def test_a_file_with_5_percent_bad_rows_is_refused_whole(database: sa.Engine) -> None:
    bad = {number: b"A1,P1,Arrived,extra\n" for number in range(2, 1002, 20)}  # 50 of 1,000
    with database.connect() as connection:
        with connection.begin():
            create_table(connection, TABLE, COLUMNS)
        with pytest.raises(TooManyBadRows) as refused, connection.begin():
            quarantine(connection, export(1_000, bad), 1, "b" * 64)
        assert str(refused.value) == (
            "50 of 1000 rows cannot be read (50 wrong_width), above the limit of 1%: "
            "the whole file is refused"
        )
        assert select_all(connection, f"SELECT count(*) FROM {TABLE}") == [(0,)]
        assert not sa.inspect(connection).has_table(f"{TABLE}_rejects")


def test_a_canary_in_bad_rows_is_only_in_the_rejects_table(
    database: sa.Engine, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    canary = CANARY.encode()
    bad = {
        5: b"A00005," + canary + b",Arrived,extra\n",
        6: b"A00006,\xff" + canary + b",Arrived\n",
        7: b'A00007,"' + canary + b",Arrived\n",
        8: b"," + canary + b",Arrived\n",
    }
    said = []
    with database.begin() as connection:
        create_table(connection, TABLE, COLUMNS)
        _, set_aside = quarantine(connection, export(1_000, bad), 1, "c" * 64)
        said += [repr(set_aside), str(set_aside)]
    with pytest.raises(TooManyBadRows) as refused, database.begin() as connection:
        many = {number: b"," + canary + b",x\n" for number in range(2, 60)}
        quarantine(connection, export(1_000, many), 2, "d" * 64)
    said += [str(refused.value), repr(refused.value), repr(refused.value.__dict__)]
    output = capsys.readouterr()
    said += [output.out, output.err, caplog.text]
    assert not [text for text in said if CANARY in text]
    with database.connect() as connection:
        kept = select_all(connection, f"SELECT raw_line FROM {TABLE}_rejects")
        assert sorted(bytes(row[0]) for row in kept) == sorted(map(bytes.rstrip, bad.values()))
        anywhere = " || ".join(f"coalesce({column}, '')" for column in COLUMNS)
        in_table = connection.execute(
            sa.text(f"SELECT count(*) FROM {TABLE} WHERE {anywhere} LIKE :canary"),
            {"canary": f"%{CANARY}%"},
        )
        assert in_table.scalar() == 0


def open_rows(connection: sa.Connection) -> list[tuple[int, int, str]]:
    return [tuple(row[:3]) for row in rejects.open_rejects(connection, TABLE)]


def test_a_corrected_file_loaded_again_supersedes_the_earlier_rejects(database: sa.Engine) -> None:
    """`file` mode: the loader knows the loads the new one replaced (same path)."""
    with database.begin() as connection:
        create_table(connection, TABLE, COLUMNS)
        quarantine(connection, export(1_000, {3: b"A1,x\n", 9: b"A2,\xff,x\n"}), 1, "e" * 64)
        quarantine(connection, export(1_000, {4: b"A3,x\n"}), 2, "f" * 64)  # another path
        assert open_rows(connection) == [
            (1, 3, "wrong_width"),
            (1, 9, "undecodable"),
            (2, 4, "wrong_width"),
        ]
    with database.begin() as connection:
        assert rejects.supersede_loads(connection, TABLE, [1], 3) == 2
        assert rejects.supersede_loads(connection, TABLE, [], 3) == 0
        assert open_rows(connection) == [(2, 4, "wrong_width")]
        query = rejects.OPEN_REJECTS.format(rejects=naming.rejects_table(TABLE))
        assert len(connection.execute(sa.text(query)).all()) == 1
        superseded = select_all(
            connection, f"SELECT row_number, superseded_by FROM {TABLE}_rejects WHERE load_id = 1"
        )
        assert sorted(superseded) == [(3, 3), (9, 3)]


def test_merging_a_rejected_rows_key_supersedes_its_reject(database: sa.Engine) -> None:
    bad = {3: b"A00003,P003,Arrived,extra\n", 5: b",P005,Arrived\n", 8: b"A00008,P\xff,x\n"}
    with database.begin() as connection:
        create_table(connection, TABLE, COLUMNS)
        quarantine(connection, export(1_000, bad), 1, "g" * 64)
    with database.begin() as connection:
        corrected = [["A00003", "P003", "Arrived"], ["A00004", "P004", "Completed"]]
        staging = stage(connection, TABLE, COLUMNS, corrected)
        assert merge(connection, TABLE, staging, ["appointment_id"], 2).superseded_rejects == 1
        assert open_rows(connection) == [(1, 5, "missing_key"), (1, 8, "undecodable")]


def test_a_rejects_repr_never_shows_its_line() -> None:
    reject = READER.read(b"A1," + CANARY.encode() + b",x,y\n", 4)
    assert isinstance(reject, Reject)
    assert CANARY not in repr(reject) and CANARY not in str(reject)
    assert repr(reject) == "Reject(row_number=4, reason='wrong_width')"


def sorted_out(
    chunks: list[bytes], quote: str | None = '"'
) -> tuple[bytes, list[tuple[int, str, bytes]]]:
    """What Quarantine.readable() passes on from *chunks* (data rows from row 2), and its
    rejects as (row number, reason, raw record)."""
    reader = RowReader("utf-8", ",", quote, 3)
    quarantine = rejects.Quarantine(reader, rejects.parse_max_bad_rows(None), first_row=2)
    good = b"".join(quarantine.readable(chunks))
    return good, [(r.row_number, r.reason, r.raw_line) for r in quarantine.rejects]


@pytest.mark.parametrize(
    ("lines", "good", "bad"),
    [
        ([b'A1,P1,"first\n', b'second"\n', b"A2,P2,x\n"], [0, 1, 2], []),
        ([b'A1,P1,"say ""hi\n', b'there"""\n'], [0, 1], []),
        ([b'A1,"a\n', b"\n", b'b",x\n'], [0, 1, 2], []),  # a blank line inside a value
        ([b'A1,P1,5" cut\n', b"A2,P2,x\n"], [0, 1], []),  # a quote inside a value is data
        (
            [b'A1,"P1"x,"y\n', b'z"\n'],  # after a closing quote: read no further
            [],
            [(2, "malformed_quote", b'A1,"P1"x,"y'), (3, "wrong_width", b'z"')],
        ),
        ([b'A1,P1,"x""\n', b"A2,P2,x\n"], [1], [(2, "unterminated_quote", b'A1,P1,"x""')]),
        ([b"A1,P1,x\n", b"\r\n", b"A2,P2\n"], [0], [(4, "wrong_width", b"A2,P2")]),
        ([b"A1,P\xff1,x\n", b"A2,P2,x\n"], [1], [(2, "undecodable", b"A1,P\xff1,x")]),
        ([b"A1,P2,x\n", b"A2,P\x002,x\n"], [0], [(3, "undecodable", b"A2,P\x002,x")]),
    ],
    ids=["line-break", "doubled-quotes", "blank-line", "quote-inside", "after-quote",
         "unclosed", "blank-record", "byte", "nul"],
)
def test_a_record_is_its_lines_as_the_csv_reader_reads_them(
    lines: list[bytes], good: list[int], bad: list[tuple[int, str, bytes]]
) -> None:
    assert sorted_out([b"".join(lines)]) == (b"".join(lines[n] for n in good), bad)


def test_a_record_across_chunks_is_read_whole() -> None:
    chunks = [b'A1,P1,"first\n', b'second"\nA2,P2,x\n', b'A3,P3,"open\n']
    good, bad = sorted_out(chunks)
    assert good == b'A1,P1,"first\nsecond"\nA2,P2,x\n'
    assert bad == [(4, "unterminated_quote", b'A3,P3,"open')]  # the file ended inside it


def test_without_a_qualifier_each_line_is_a_record() -> None:
    good, bad = sorted_out([b'A1,"x,y\n', b'y"\n'], quote=None)
    assert (good, [(n, reason) for n, reason, _ in bad]) == (b'A1,"x,y\n', [(3, "wrong_width")])


@pytest.mark.parametrize("chunked", [False, True], ids=["one-chunk", "line-per-chunk"])
def test_a_quote_open_past_max_record_lines_is_its_first_line_alone(
    monkeypatch: pytest.MonkeyPatch, chunked: bool
) -> None:
    monkeypatch.setattr(rejects, "MAX_RECORD_LINES", 3)
    lines = [b'A1,P1,"x\n', b"a\n", b'b"\n', b'A2,P2,"y\n', b"a\n", b"b\n", b'c"\n', b"A3,P3,z\n"]
    good, bad = sorted_out(lines if chunked else [b"".join(lines)])
    assert good == b'A1,P1,"x\na\nb"\nA3,P3,z\n'  # closed on its third line: one record
    assert bad == [
        (3, "unterminated_quote", b'A2,P2,"y'),  # open after three lines: alone, and
        (4, "wrong_width", b"a"),  # the lines after it read again
        (5, "wrong_width", b"b"),
        (6, "wrong_width", b'c"'),
    ]


def test_a_second_pass_counts_afresh() -> None:
    reader = RowReader("utf-8", ",", '"', 3)
    quarantine = rejects.Quarantine(reader, rejects.parse_max_bad_rows("5"), first_row=2)
    data = [b'A1,P1,"' + CANARY.encode() + b'\r\nsecond line"\r\nA2,P2\r\nA3,P3,ok\r\n']
    for _ in range(2):  # e.g. COPY's text fallen back to rows: the file is read again
        assert b"".join(quarantine.readable(data)).endswith(b"A3,P3,ok\r\n")
    assert [(r.row_number, r.reason) for r in quarantine.rejects] == [(3, rejects.WRONG_WIDTH)]
    assert quarantine.rows == 3
    assert CANARY not in repr(quarantine.rejects)
