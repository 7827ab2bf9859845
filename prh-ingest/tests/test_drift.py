"""Schema drift on both databases: by default a file with other columns than the table's is
refused in one line naming the new and the missing ones, table untouched; with
NEW_COLUMNS=add a new column is added (text, earlier rows NULL there) and a column the file
lacks loads as NULL. Nothing is ever dropped or renamed."""

from __future__ import annotations

from pathlib import Path

from loading import BAD_INPUT, NEW_COLUMNS_SETTING, TABLE, Sink, ingest, rejected

ADD = {NEW_COLUMNS_SETTING: "add"}


def columns(sink: Sink) -> list[str]:
    if sink.url.startswith("sqlite"):
        return [row[1] for row in sink.query(f"PRAGMA table_info({TABLE})")]
    where = f"table_schema = current_schema() AND table_name = '{TABLE}' ORDER BY ordinal_position"
    sql = f"SELECT column_name FROM information_schema.columns WHERE {where}"  # noqa: S608
    return [row[0] for row in sink.query(sql)]


def all_rows(sink: Sink) -> list[tuple]:
    found = sink.query(f"SELECT mrn, visit, ward FROM {TABLE}")  # noqa: S608
    return sorted(found, key=repr)


def month(tmp_path: Path, name: str, text: str) -> Path:
    """One month's export, written for the test."""
    path = tmp_path / f"{name}.csv"
    path.write_text(text)
    return path


def loaded(sink: Sink, source: Path, **env: str) -> None:
    result = ingest(source, sink, **env)
    assert result.returncode == 0, result.stderr


def test_a_new_column_is_refused_by_default(sink: Sink, tmp_path: Path) -> None:
    loaded(sink, month(tmp_path, "november", "mrn,visit,note\n0001,2026-11-01,x\n"))
    drifted = month(tmp_path, "december", "mrn,visit,ward\n0002,2026-12-01,4B\n")
    message = rejected(ingest(drifted, sink), drifted)
    assert message == (
        f"columns ['mrn', 'visit', 'ward'] differ from table {TABLE}'s ['mrn', 'visit', 'note'] "
        f"(new: ward; missing: note); set {NEW_COLUMNS_SETTING}=add to add new columns"
    )
    assert columns(sink) == ["mrn", "visit", "note", "_load_id"]
    assert sink.rows() == [("0001", "2026-11-01", "x")]


def test_new_columns_add_adds_them(sink: Sink, tmp_path: Path) -> None:
    loaded(sink, month(tmp_path, "november", "mrn,visit\n0001,2026-11-01\n"))
    wider = month(tmp_path, "december", "mrn,visit,ward\n0002,2026-12-01,4B\n")
    loaded(sink, wider, **ADD)
    assert columns(sink) == ["mrn", "visit", "_load_id", "ward"]
    # a column the table has is missing from the file: NULL there
    loaded(sink, month(tmp_path, "january", "ward,mrn\n5C,0003\n"), **ADD)
    assert all_rows(sink) == sorted(
        [("0001", "2026-11-01", None), ("0002", "2026-12-01", "4B"), ("0003", None, "5C")],
        key=repr,
    )
    assert columns(sink) == ["mrn", "visit", "_load_id", "ward"]  # nothing dropped


def test_a_failed_load_adds_no_column(sink: Sink, tmp_path: Path) -> None:
    """The ALTER TABLE is inside the load's transaction."""
    loaded(sink, month(tmp_path, "november", "mrn,visit\n0001,2026-11-01\n"))
    bad = month(tmp_path, "december", "mrn,visit,ward\n0002,2026-12-01,4B\n0003,x,y,z\n")
    assert ingest(bad, sink, **ADD).returncode == BAD_INPUT
    assert columns(sink) == ["mrn", "visit", "_load_id"]


def test_a_bad_new_columns_setting_is_refused(sink: Sink, tmp_path: Path) -> None:
    source = month(tmp_path, "november", "mrn\n1\n")
    result = ingest(source, sink, **{NEW_COLUMNS_SETTING: "drop"})
    assert result.returncode == BAD_INPUT
    assert result.stderr == (
        f"error: {NEW_COLUMNS_SETTING}=drop: add, or unset (a new column is refused)\n"
    )
