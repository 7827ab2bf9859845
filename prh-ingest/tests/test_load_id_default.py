"""PostgreSQL's `_load_id` default (sinks.LOAD_ID_FUNCTION): a COPY reads the load's id once,
not once per row, and every load still gets its own id, also two loads in one session; the
function is made once per schema, also by two loads at once, and a first load's table gets it.
A table from before it switches by the CHANGELOG's statement; a role that may not make it loads
as before."""

from __future__ import annotations

import contextlib
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from loading import TABLE, Sink, ingest, write_csv
from pg import PostgresServer
from prh_ingest.load.sinks import (
    LOAD_ID_FUNCTION,
    LOAD_ID_SETTING,
    load_id_default,
    loads_table,
    make_load_id_function,
    make_load_id_function_in,
)
from prh_ingest.settings import Names

CHANGELOG = Path(__file__).resolve().parents[1] / "CHANGELOG.md"
OLD_DEFAULT = f"current_setting('{LOAD_ID_SETTING}')::integer"
DAY_1 = [["mrn", "visit"], ["00000001", "2026-11-01"]]
ROWS = 1_000

# PostgreSQL only: the `database` fixture's second case (databases.py), as `engine` here.
pytestmark = pytest.mark.parametrize("database", ["postgresql"], indirect=True)


@pytest.fixture
def engine(database: sa.Engine) -> sa.Engine:
    return database


def sink_as(engine: sa.Engine, role: str | None = None) -> Sink:
    """The engine's database as the loader sees it, as *role* (default: the engine's)."""
    url = engine.url.set(username=role) if role else engine.url
    return Sink(url.render_as_string(hide_password=False), lambda sql: [])


def functions_made(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        made = f"SELECT count(*) FROM pg_proc WHERE proname = '{LOAD_ID_FUNCTION}'"  # noqa: S608
        return connection.exec_driver_sql(made).scalar_one()


def create_table(engine: sa.Engine) -> None:
    make_load_id_function(engine)
    with engine.begin() as connection:
        default = load_id_default(connection)
        connection.exec_driver_sql(
            f"CREATE TABLE t (mrn TEXT, _load_id INTEGER NOT NULL DEFAULT {default})"
        )


def copy_rows(connection: psycopg.Connection, load_id: int) -> None:
    """One load's rows as the loader sends them: the setting for the transaction, then COPY."""
    with connection.transaction():
        connection.execute("SELECT set_config(%s, %s, true)", (LOAD_ID_SETTING, str(load_id)))
        with connection.cursor().copy("COPY t (mrn) FROM STDIN") as copy:
            copy.write("".join(f"{n:08}\n" for n in range(ROWS)))


def column_default(connection: psycopg.Connection | sa.Connection, table: str) -> str:
    sql = f"SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = '{table}'::regclass"  # noqa: S608
    if isinstance(connection, sa.Connection):
        return connection.exec_driver_sql(sql).scalar_one()
    return connection.execute(sql).fetchone()[0]


def test_each_load_in_one_session_gets_its_own_id(
    engine: sa.Engine, pg_server: PostgresServer
) -> None:
    create_table(engine)
    conninfo = pg_server.conninfo(engine.url.database)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        for load_id in (1, 2, 3):
            copy_rows(connection, load_id)
        by_load = "SELECT _load_id, count(*) FROM t GROUP BY 1 ORDER BY 1"
        counts = connection.execute(by_load).fetchall()
        default = column_default(connection, "t")
    assert counts == [(1, ROWS), (2, ROWS), (3, ROWS)]
    assert default == f"{LOAD_ID_FUNCTION}()"


def test_a_copy_reads_the_setting_once(engine: sa.Engine, pg_server: PostgresServer) -> None:
    """The function's calls as PostgreSQL counts them: one per COPY (it is folded when the
    COPY plans its defaults), where a per-row default would count one per row."""
    create_table(engine)
    conninfo = pg_server.conninfo(engine.url.database)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute("SET track_functions = 'all'")
        copy_rows(connection, 1)
        copy_rows(connection, 2)
        connection.execute("SELECT pg_stat_force_next_flush()")
    with psycopg.connect(conninfo, autocommit=True) as connection:
        calls = connection.execute(
            "SELECT calls FROM pg_stat_user_functions WHERE funcname = %s", (LOAD_ID_FUNCTION,)
        ).fetchall()
    assert calls == [(2,)]


def waiting_on_an_advisory_lock(engine: sa.Engine) -> bool:
    waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    with engine.connect() as connection:
        return connection.exec_driver_sql(waiting).scalar() > 0


def test_two_loads_at_once_make_the_function_once(engine: sa.Engine) -> None:
    """The second waits for the first's lock, then finds the function (CREATE FUNCTION twice
    would fail the second load)."""
    errors: list[BaseException] = []

    def second_load() -> None:
        try:
            make_load_id_function(engine)
        except BaseException as error:  # noqa: BLE001 (reported by the assertion below)
            errors.append(error)

    with engine.connect() as first:
        first.begin()
        make_load_id_function_in(first)  # made, not yet committed: the lock held
        waiting = threading.Thread(target=second_load)
        waiting.start()
        deadline = time.monotonic() + 30
        while not waiting_on_an_advisory_lock(engine) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert waiting_on_an_advisory_lock(engine)  # the second waits on the first's lock
        first.commit()
    waiting.join(timeout=30)
    assert not waiting.is_alive()
    assert errors == []
    assert functions_made(engine) == 1


def test_a_first_load_gives_its_new_table_the_function(engine: sa.Engine, tmp_path: Path) -> None:
    result = ingest(write_csv(tmp_path / "day-1.csv", DAY_1), sink_as(engine))
    assert result.returncode == 0, result.stderr
    assert functions_made(engine) == 1
    with engine.connect() as connection:
        assert column_default(connection, TABLE) == f"{LOAD_ID_FUNCTION}()"
        loaded = connection.exec_driver_sql(f"SELECT mrn, _load_id FROM {TABLE}")  # noqa: S608
        assert loaded.all() == [("00000001", 1)]


def tables_before_the_function(engine: sa.Engine) -> None:
    """The tables as a load before this version left them: `current_setting()` per row."""
    metadata = sa.MetaData()
    loads_table(metadata, Names("clinic-cal", "epic"))
    columns = [sa.Column(name, sa.Text) for name in ("mrn", "visit")]
    default = sa.text(OLD_DEFAULT)
    load_id = sa.Column("_load_id", sa.Integer, nullable=False, server_default=default)
    sa.Table(TABLE, metadata, *columns, load_id)
    with engine.begin() as connection:
        metadata.create_all(connection)


def test_a_table_from_before_switches_by_the_changelogs_statement(
    engine: sa.Engine, tmp_path: Path
) -> None:
    tables_before_the_function(engine)
    sink = sink_as(engine)
    day_1 = write_csv(tmp_path / "day-1.csv", DAY_1)
    assert ingest(day_1, sink).returncode == 0  # loads as before, and makes the function
    statement = re.search(r"`(ALTER TABLE <table> [^`]+)`", CHANGELOG.read_text()).group(1)
    with engine.begin() as connection:
        assert column_default(connection, TABLE).startswith("(current_setting(")
        connection.exec_driver_sql(statement.replace("<table>", TABLE))
    day_2 = write_csv(tmp_path / "day-2.csv", [["mrn", "visit"], ["00000002", "2026-11-02"]])
    assert ingest(day_2, sink).returncode == 0
    with engine.connect() as connection:
        assert column_default(connection, TABLE) == f"{LOAD_ID_FUNCTION}()"
        loaded = connection.exec_driver_sql(f"SELECT mrn, _load_id FROM {TABLE} ORDER BY 1")  # noqa: S608
        assert loaded.all() == [("00000001", 1), ("00000002", 2)]


@contextlib.contextmanager
def loader_role(engine: sa.Engine, *grants: str) -> Iterator[str]:
    """A login role of its own with *grants* (statements, `{role}` its name), dropped after:
    roles are the server's, not the test database's."""
    role = f"prh_loader_{uuid.uuid4().hex[:8]}"
    with engine.begin() as connection:
        connection.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
        for grant in grants:
            connection.exec_driver_sql(grant.format(role=role))
    try:
        yield role
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"DROP OWNED BY {role}")
            connection.exec_driver_sql(f"DROP ROLE {role}")


def loaded_without_the_function(engine: sa.Engine) -> list[tuple]:
    """The rows' mrn and load id, checking that no load made the function."""
    assert functions_made(engine) == 0
    with engine.connect() as connection:
        assert column_default(connection, TABLE).startswith("(current_setting(")
        return connection.exec_driver_sql(f"SELECT mrn, _load_id FROM {TABLE}").all()  # noqa: S608


# Roles that may not make the function, and load as before. "tables-made-for-it": a DBA made
# the tables and granted the role their use only. "no-sql-functions": the role may create in
# its schema, but SQL functions are kept from it; its first load makes the tables.
ROLES_WITHOUT_THE_FUNCTION = {
    "tables-made-for-it": (
        True,
        [
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
            "GRANT USAGE ON SCHEMA public TO {role}",
            "GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}",
            "GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}",
        ],
    ),
    "no-sql-functions": (
        False,
        [
            "REVOKE USAGE ON LANGUAGE sql FROM PUBLIC",
            "GRANT USAGE, CREATE ON SCHEMA public TO {role}",
        ],
    ),
}


@pytest.mark.parametrize(
    ("tables_made", "grants"), ROLES_WITHOUT_THE_FUNCTION.values(), ids=ROLES_WITHOUT_THE_FUNCTION
)
def test_a_role_that_may_not_make_the_function_loads_as_before(
    engine: sa.Engine, tmp_path: Path, tables_made: bool, grants: list[str]
) -> None:
    if tables_made:
        tables_before_the_function(engine)
    with loader_role(engine, *grants) as role:
        result = ingest(write_csv(tmp_path / "day-1.csv", DAY_1), sink_as(engine, role))
        assert result.returncode == 0, result.stderr
        assert loaded_without_the_function(engine) == [("00000001", 1)]
