"""Migration 0008: ``llmtally_readonly`` reads every table of the schema and changes nothing; tables
that loads and later migrations create are readable too; schemas of one cluster share the role; and
a migrating user that may not create roles (the compose deployment's ``llmtally``) migrates once the
role exists, and without it (a warning, no grants) until docker/grafana-reader.sql grants it."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from datetime import date

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from llmtally.store import MIGRATIONS, PostgresStore
from llmtally.store._migrations import READONLY_ROLE
from tests.store.days import day_load

D1 = date(2026, 12, 1)  # its load creates two monthly partitions, after the migrations ran
WRITES = [
    "INSERT INTO {s}.losses (day, service, host, records, first_ts, last_ts, reason)"
    " VALUES ('2026-12-01', 's', 'h', 1, now(), now(), 'r')",
    "UPDATE {s}.quality SET records = 0",
    "DELETE FROM {s}.usage_hourly",
    "TRUNCATE {s}.usage_daily",
    "CREATE TABLE {s}.mine (x int)",
    "CREATE VIEW {s}.mine AS SELECT 1 AS x",
    "ALTER TABLE {s}.quality ADD COLUMN mine int",
    "DROP TABLE {s}.ledger",
]


def _relations(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> list[str]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v') ORDER BY 1",
        (schema,),
    ).fetchall()
    return [str(r[0]) for r in rows]


def _reads_only(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> None:
    """As the role: every relation of the schema reads; every kind of change is refused."""
    relations = _relations(conn, schema)
    assert {"usage_hourly", "usage_hourly_p202611", "usage_hourly_p202612", "usage_daily", "quality",
            "reconciliation", "quarantine", "losses", "schema_migrations"} <= set(relations)  # fmt: skip
    for rel in relations:
        privileges = conn.execute(
            "SELECT has_table_privilege(%s, c.oid, 'SELECT'),"
            " has_table_privilege(%s, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
            (READONLY_ROLE, READONLY_ROLE, schema, rel),
        ).fetchone()
        assert privileges == (True, False), rel
    assert conn.execute(
        "SELECT has_schema_privilege(%s, %s, 'USAGE'), has_schema_privilege(%s, %s, 'CREATE')",
        (READONLY_ROLE, schema, READONLY_ROLE, schema),
    ).fetchone() == (True, False)
    conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(READONLY_ROLE)))
    try:
        for rel in relations:
            conn.execute(
                sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(rel))
            )
        day_rows = conn.execute(
            sql.SQL("SELECT count(*) FROM {}.usage_daily WHERE day = %s").format(sql.Identifier(schema)),
            (D1,),
        ).fetchone()
        assert day_rows is not None and day_rows[0] > 0
        for statement in WRITES:
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(sql.SQL(statement).format(s=sql.Identifier(schema)))
    finally:
        conn.execute("RESET ROLE")


def test_the_role_reads_every_table_and_changes_nothing(pg_dsn: str, pg_schema: str) -> None:
    with PostgresStore(pg_dsn, schema=pg_schema) as store:
        store.load_day(day_load(D1))  # partitions made after the migrations: default privileges
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        role = conn.execute(
            "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = %s",
            (READONLY_ROLE,),
        ).fetchone()
        assert role == (False, False, False, False)
        _reads_only(conn, pg_schema)
        # a table a later migration adds is readable without a grant of its own
        conn.execute(sql.SQL("CREATE TABLE {}.later (x int)").format(sql.Identifier(pg_schema)))
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(READONLY_ROLE)))
        assert conn.execute(
            sql.SQL("SELECT count(*) FROM {}.later").format(sql.Identifier(pg_schema))
        ).fetchone() == (0,)


def test_schemas_of_one_cluster_share_the_role(pg_dsn: str, pg_schema: str) -> None:
    other = f"{pg_schema}_b"
    try:
        for schema in (pg_schema, other):
            with PostgresStore(pg_dsn, schema=schema) as store:
                store.load_day(day_load(D1))
                assert store.migrate() == []
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            for schema in (pg_schema, other):
                _reads_only(conn, schema)
            count = conn.execute(
                "SELECT count(*) FROM pg_roles WHERE rolname = %s", (READONLY_ROLE,)
            ).fetchone()
            assert count == (1,)
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(other)))


@pytest.fixture
def owner(pg_dsn: str, pg_schema: str) -> Iterator[str]:
    """DSN of a login that may create schemas in the database but not roles (compose's ``llmtally``)."""
    name = f"llmtally_owner_{secrets.token_hex(4)}"
    ident = sql.Identifier(name)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        db = conn.info.dbname
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOCREATEROLE NOSUPERUSER").format(ident))
        conn.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(db), ident))
    try:
        yield make_conninfo("", **{**conninfo_to_dict(pg_dsn), "user": name})
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(pg_schema)))
            conn.execute(sql.SQL("DROP OWNED BY {}").format(ident))
            conn.execute(sql.SQL("DROP ROLE {}").format(ident))


def test_a_user_that_may_not_create_roles_migrates_once_the_role_exists(
    pg_dsn: str, pg_schema: str, owner: str
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # as docker/grafana-reader.sql does
        conn.execute(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{READONLY_ROLE}')"
            f" THEN CREATE ROLE {READONLY_ROLE} NOLOGIN; END IF; END $$"
        )
    with PostgresStore(owner, schema=pg_schema) as store:
        store.load_day(day_load(D1))  # the owner's partitions: its default privileges apply
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        _reads_only(conn, pg_schema)


@pytest.fixture
def stand_in(pg_dsn: str) -> Iterator[tuple[str, list[str]]]:
    """A fresh role name and two empty schemas for running 0008 with that role in place of the real one
    (roles belong to the whole cluster: the real one stays, other sessions use it)."""
    role, schemas = f"llmtally_ro_{secrets.token_hex(4)}", [f"t_{secrets.token_hex(4)}" for _ in range(2)]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for schema in schemas:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield role, schemas
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            for schema in schemas:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _0008(role: str, schema: str) -> sql.Composed:
    return sql.SQL(dict(MIGRATIONS)["0008_readonly_role"].replace(READONLY_ROLE, role)).format(
        s=sql.Identifier(schema)
    )


def test_two_migrations_creating_the_role_at_once_both_succeed(
    pg_dsn: str, stand_in: tuple[str, list[str]]
) -> None:
    role, (first, second) = stand_in
    with psycopg.connect(pg_dsn) as a, psycopg.connect(pg_dsn) as b:
        a.execute(_0008(role, first))  # creates the role; not committed yet
        done: list[BaseException | None] = []

        def migrate_second() -> None:
            try:
                b.execute(_0008(role, second))  # waits for a's new role, then finds it taken
                b.commit()
                done.append(None)
            except BaseException as exc:  # reported below
                done.append(exc)

        thread = threading.Thread(target=migrate_second)
        thread.start()
        deadline = time.monotonic() + 30
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'"
        with psycopg.connect(pg_dsn, autocommit=True) as watch:  # (a's own view is fixed for its transaction)
            while watch.execute(waiting, (b.info.backend_pid,)).fetchone() != (1,):
                assert time.monotonic() < deadline and thread.is_alive(), done
                time.sleep(0.05)
        a.commit()
        thread.join(30)
        assert done == [None]
        for schema in (first, second):
            usable = a.execute("SELECT has_schema_privilege(%s, %s, 'USAGE')", (role, schema)).fetchone()
            assert usable == (True,)


def test_a_missing_role_that_the_user_may_not_create_never_blocks_a_load(
    owner: str, stand_in: tuple[str, list[str]]
) -> None:
    """BI is optional: a migrating user that may not create the missing role migrates with a warning
    saying what to run, and grants nothing."""
    role, (schema, _) = stand_in
    notices: list[tuple[str | None, str | None, str | None]] = []  # read in the handler: it is freed after
    with psycopg.connect(owner) as conn:
        conn.add_notice_handler(
            lambda d: notices.append((d.severity_nonlocalized, d.message_primary, d.message_hint))
        )
        conn.execute(_0008(role, schema))
        conn.commit()
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,)).fetchone() == (0,)
    ((_, message, hint),) = [n for n in notices if n[0] == "WARNING"]
    assert f"role {role} is missing" in (message or "")
    assert "docker/grafana-reader.sql" in (hint or "")


def test_the_reader_script_grants_a_schema_migrated_without_the_role(
    pg_dsn: str, pg_schema: str, owner: str
) -> None:
    """A volume migrated before the role existed: docker/grafana-reader.sql, run once as the superuser,
    creates the login and grants the role the existing schema -- tables and later partitions."""
    import shutil
    import subprocess

    from tests.support import REPO_ROOT

    with psycopg.connect(owner) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(pg_schema)))
    with PostgresStore(owner, schema=pg_schema) as store:  # as the owner: 0008 may or may not grant
        store.load_day(day_load(date(2026, 11, 20)))
    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # undo whatever 0008 granted: as if it could not
        conn.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(
            sql.Identifier(pg_schema), sql.Identifier(READONLY_ROLE)))  # fmt: skip
        conn.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM {}").format(
            sql.Identifier(pg_schema), sql.Identifier(READONLY_ROLE)))  # fmt: skip
        assert conn.execute("SELECT has_schema_privilege(%s, %s, 'USAGE')", (READONLY_ROLE, pg_schema)
                            ).fetchone() == (False,)  # fmt: skip
    reader = f"llmtally_reader_{secrets.token_hex(4)}"
    psql = shutil.which("psql")
    assert psql is not None, "psql (the PostgreSQL client) runs docker/grafana-reader.sql"
    try:
        out = subprocess.run(
            [psql, "-X", "-q", pg_dsn, "-v", f"reader={reader}", "-v", "password=pw", "-v",
             f"schema={pg_schema}", "-f", str(REPO_ROOT / "docker" / "grafana-reader.sql")],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        with PostgresStore(owner, schema=pg_schema) as store:  # the owner's new partitions: readable too
            store.load_day(day_load(D1))
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            _reads_only(conn, pg_schema)
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(reader)))
