"""``llmtally db migrate`` against the real PostgreSQL (what the compose init job runs)."""

from __future__ import annotations

import psycopg
from click.testing import CliRunner

from llmtally.cli import main
from llmtally.store import MIGRATIONS


def test_migrate_applies_then_is_idempotent(pg_dsn: str, pg_schema: str) -> None:
    first = CliRunner().invoke(main, ["db", "migrate", "--dsn", pg_dsn, "--schema", pg_schema])
    assert first.exit_code == 0, first.output
    assert f"applied {len(MIGRATIONS)} migration(s)" in first.output
    with psycopg.connect(pg_dsn) as conn:
        names = [
            r[0] for r in conn.execute(f'SELECT name FROM "{pg_schema}".schema_migrations ORDER BY name')
        ]
    assert names == sorted(name for name, _ in MIGRATIONS)
    again = CliRunner().invoke(main, ["db", "migrate", "--dsn", pg_dsn, "--schema", pg_schema])
    assert again.exit_code == 0 and "up to date" in again.output


def test_migrate_without_a_database_says_what_to_set(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("AIRFLOW_CONN_LLM_USAGE_DB", raising=False)
    res = CliRunner().invoke(main, ["db", "migrate"])
    assert res.exit_code == 1 and "AIRFLOW_CONN_LLM_USAGE_DB" in res.output
