"""PostgreSQL specifics: migrations, partitions, atomic failure, DSNs, driver error mapping."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date

import psycopg
import pytest

from llmtally import ConfigError, StorageError
from llmtally.store import MIGRATIONS, PostgresStore, dsn_from_env, schema_from_env
from tests.store.days import day_load

D1 = date(2026, 12, 1)  # its local day starts on 30 November in UTC: two monthly partitions


def test_migrations_are_recorded_once(pg_dsn: str, pg_schema: str) -> None:
    with PostgresStore(pg_dsn, schema=pg_schema, migrate=False) as store:
        assert store.migrate() == [name for name, _ in MIGRATIONS]
        assert store.migrate() == []
    with PostgresStore(pg_dsn, schema=pg_schema) as store, psycopg.connect(pg_dsn) as conn:
        names = conn.execute(f'SELECT name FROM "{pg_schema}".schema_migrations').fetchall()
        assert [n for (n,) in names] == [name for name, _ in MIGRATIONS]
        store.load_day(day_load(D1))
        parts = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace "
            "WHERE p.relname = 'usage_hourly' AND n.nspname = %s ORDER BY 1",
            (pg_schema,),
        ).fetchall()
        assert [p for (p,) in parts] == [
            "usage_hourly_default",
            "usage_hourly_p202611",
            "usage_hourly_p202612",
        ]
        default_rows = conn.execute(f'SELECT count(*) FROM "{pg_schema}".usage_hourly_default').fetchone()
        assert default_rows == (0,)
        daily = conn.execute(
            f'SELECT sum(total_tokens) FROM "{pg_schema}".usage_daily WHERE day = %s', (D1,)
        ).fetchone()
        assert daily is not None and daily[0] == 474


def test_0003_and_0004_add_losses_and_folds_to_a_database_in_use(
    pg_dsn: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llmtally.store._postgres as pg

    monkeypatch.setattr(pg, "MIGRATIONS", MIGRATIONS[:2])
    with PostgresStore(pg_dsn, schema=pg_schema) as store, psycopg.connect(pg_dsn) as conn:
        conn.execute(
            f'INSERT INTO "{pg_schema}".quality (day, timezone, records, prompt_tokens, completion_tokens) '
            "VALUES (%s, 'UTC', 5, 50, 10)",
            (D1,),
        )
        conn.commit()
        monkeypatch.setattr(pg, "MIGRATIONS", MIGRATIONS)
        assert store.migrate() == [
            "0003_losses", "0004_folds", "0005_daily_rollup", "0006_provisional_days", "0007_budgets_alerts",
            "0008_readonly_role",
        ]  # fmt: skip
        quality = store.quality(D1)
        assert quality is not None and (
            quality.records, quality.lost_records, quality.loss_markers, quality.folded_values,
            quality.folded_requests,
        ) == (5, 0, 0, 0, 0)  # fmt: skip
        assert store.losses(D1) == [] and store.folds(D1) == []


def test_0005_turns_usage_daily_into_a_table_filled_from_the_days_loaded(
    pg_dsn: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llmtally.store._postgres as pg

    monkeypatch.setattr(pg, "MIGRATIONS", [*MIGRATIONS[:4], *MIGRATIONS[5:]])  # all but 0005 (0006: quality)
    monkeypatch.setattr(pg, "_DAY_TABLES", tuple(t for t in pg._DAY_TABLES if t != "usage_daily"))
    monkeypatch.setattr(pg, "_rollup", lambda schema: psycopg.sql.SQL("SELECT %s"))
    monkeypatch.setattr(pg.PostgresStore, "_problems", lambda self, cur, day: [])  # the view lacks columns
    with PostgresStore(pg_dsn, schema=pg_schema) as store, psycopg.connect(pg_dsn) as conn:
        store.load_day(day_load(D1))  # loaded by the code before 0005: usage_daily is a view
        kind = f"SELECT relkind FROM pg_class WHERE oid = '\"{pg_schema}\".usage_daily'::regclass"
        assert conn.execute(kind).fetchone() == ("v",)
        by_view = conn.execute(
            f'SELECT model, status, sum(requests), sum(total_tokens), sum(cost) FROM "{pg_schema}".usage_daily '
            "GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
        conn.commit()
        monkeypatch.undo()
        assert store.migrate() == ["0005_daily_rollup"]
        assert conn.execute(kind).fetchone() == ("r",)
        by_table = conn.execute(
            f'SELECT model, status, sum(requests), sum(total_tokens), sum(cost) FROM "{pg_schema}".usage_daily '
            "GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
        assert by_table == by_view and len(by_table) >= 2
        store.check_day(D1)  # the day's rollup sums to its hours


def test_a_rollup_that_disagrees_with_its_hours_fails_the_check(pg_dsn: str, pg_schema: str) -> None:
    from llmtally import DataQualityError

    with PostgresStore(pg_dsn, schema=pg_schema) as store, psycopg.connect(pg_dsn) as conn:
        store.load_day(day_load(D1))
        store.load_day(day_load(D1, scale=2, run_id="again"))  # a re-load replaces the rollup too
        hourly = conn.execute(
            f'SELECT sum(requests), sum(prompt_tokens) FROM "{pg_schema}".usage_hourly WHERE day = %s', (D1,)
        ).fetchone()
        daily = conn.execute(
            f'SELECT sum(requests), sum(prompt_tokens) FROM "{pg_schema}".usage_daily WHERE day = %s', (D1,)
        ).fetchone()
        assert daily == hourly and hourly is not None and hourly[0] > 0
        conn.execute(f'UPDATE "{pg_schema}".usage_daily SET requests = requests + 1 WHERE day = %s', (D1,))
        conn.commit()
        with pytest.raises(DataQualityError, match="usage_daily does not sum to usage_hourly"):
            store.check_day(D1)
        assert store.rebuild_daily(D1, D1) == 1  # rebuilt from the hours: right again
        store.check_day(D1)
        conn.execute(f'DELETE FROM "{pg_schema}".usage_hourly WHERE day = %s', (D1,))
        conn.commit()
        assert store.rebuild_daily(D1, D1) == 0  # no hours left: no rollup either
        left = conn.execute(
            f'SELECT count(*) FROM "{pg_schema}".usage_daily WHERE day = %s', (D1,)
        ).fetchone()
        assert left == (0,)


def test_failure_mid_load_rolls_back(pg_dsn: str, pg_schema: str) -> None:
    with PostgresStore(pg_dsn, schema=pg_schema) as store:
        good = day_load(D1)
        store.load_day(good)
        bad = day_load(D1, scale=2)
        dup_top = replace(
            bad, top_requests=[*bad.top_requests, bad.top_requests[0]]
        )  # primary key clash mid-COPY
        with pytest.raises(StorageError, match="UniqueViolation"):
            store.load_day(dup_top)
        negative = replace(bad, hourly=[replace(bad.hourly[0], cached_tokens=-1), *bad.hourly[1:]])
        with pytest.raises(StorageError, match="CheckViolation"):
            store.load_day(negative)
        assert store.hourly_rows(D1) == sorted(good.hourly, key=lambda h: (h.hour, h.model))
        assert store.top_requests(D1) == list(good.top_requests)
        assert len(store.ledger(D1)) == 1


def test_driver_errors_are_storage_errors(pg_dsn: str) -> None:
    with pytest.raises(StorageError, match="cannot connect"):
        PostgresStore("host=127.0.0.1 port=1 connect_timeout=2 user=nobody dbname=nothing")
    with pytest.raises(ConfigError):
        PostgresStore(pg_dsn, schema="bad; drop")


def test_dsn_from_env_forms() -> None:
    uri = "postgres://u%40x:p%2Fw@db.example:6543/usage?sslmode=require&__extra__=%7B%22connect_timeout%22%3A+5%7D"
    dsn = dsn_from_env({"AIRFLOW_CONN_LLM_USAGE_DB": uri})
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    assert params == {
        "host": "db.example",
        "port": "6543",
        "dbname": "usage",
        "user": "u@x",
        "password": "p/w",
        "sslmode": "require",
        "connect_timeout": "5",
    }
    obj = {
        "conn_type": "postgres",
        "host": "h",
        "login": "l",
        "password": "s",
        "schema": "d",
        "port": 5432,
        "extra": {"sslmode": "disable", "cursor": "dictcursor"},
    }
    params = psycopg.conninfo.conninfo_to_dict(dsn_from_env({"AIRFLOW_CONN_LLM_USAGE_DB": json.dumps(obj)}))
    assert params == {
        "host": "h",
        "port": "5432",
        "dbname": "d",
        "user": "l",
        "password": "s",
        "sslmode": "disable",
    }
    assert dsn_from_env({"AIRFLOW_CONN_LLM_USAGE_DB": "host=x dbname=y"}) == "host=x dbname=y"
    # libpq's query parameters win over the URI's parts: the only way a URI names a socket folder
    uri = "postgresql://u@/usage?host=%2Frun%2Fpg&port=5433"
    params = psycopg.conninfo.conninfo_to_dict(dsn_from_env({"AIRFLOW_CONN_LLM_USAGE_DB": uri}))
    assert params == {"host": "/run/pg", "port": "5433", "dbname": "usage", "user": "u"}
    with pytest.raises(ConfigError, match="AIRFLOW_CONN_LLM_USAGE_DB"):
        dsn_from_env({})
    with pytest.raises(ConfigError):
        dsn_from_env({"AIRFLOW_CONN_LLM_USAGE_DB": "mysql://x/y"})
    assert schema_from_env({}) == "llmtally" and schema_from_env({"LLMTALLY_DB_SCHEMA": "usage"}) == "usage"


def test_a_borrowed_connection_is_left_open_and_idle(pg_dsn: str, pg_schema: str) -> None:
    from psycopg.pq import TransactionStatus
    from psycopg.rows import dict_row

    with PostgresStore(pg_dsn, schema=pg_schema) as owner:
        owner.load_day(day_load(D1))
    with psycopg.connect(pg_dsn, row_factory=dict_row) as conn:  # no autocommit, dict rows
        with PostgresStore.from_connection(conn, schema=pg_schema) as store:
            with store.snapshot():
                assert store.daily_totals(D1, D1)[D1].requests == 6
                assert store.quality(D1) == day_load(D1).quality
            assert conn.info.transaction_status == TransactionStatus.IDLE
            store.archive_report(D1, "en", "<html>en</html>", {"day": "2026-12-01"})
        assert not conn.closed
        with conn.transaction():  # the caller's transaction: the reads join it
            conn.execute("SELECT 1")
            inner = PostgresStore.from_connection(conn, schema=pg_schema)
            with inner.snapshot():
                assert inner.loaded_days(D1, D1) == [D1]
            assert conn.info.transaction_status == TransactionStatus.INTRANS
    with PostgresStore(pg_dsn, schema=pg_schema) as store:
        assert store.archived_report(D1, "en") == ("<html>en</html>", {"day": "2026-12-01"})


def test_a_snapshot_is_read_only(pg_dsn: str, pg_schema: str) -> None:
    with PostgresStore(pg_dsn, schema=pg_schema) as store:
        store.load_day(day_load(D1))
        with store.snapshot():
            with pytest.raises(StorageError, match="read-only"):
                store.load_day(day_load(D1, scale=2))
            assert store.daily_totals(D1, D1)[D1].requests == 6  # the snapshot is still usable
        assert store.daily_totals(D1, D1)[D1].requests == 6
