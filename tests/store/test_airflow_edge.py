"""The Airflow adapter reads the ``llm_usage_db`` connection (here from its env var)."""

from __future__ import annotations

import psycopg
import pytest

from llmtally.store.airflow import dsn_from_airflow


def test_dsn_from_the_airflow_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_LLM_USAGE_DB", "postgresql://usr:se%40cret@db.internal:5433/usage?sslmode=prefer"
    )
    params = psycopg.conninfo.conninfo_to_dict(dsn_from_airflow())
    assert params == {
        "host": "db.internal",
        "port": "5433",
        "dbname": "usage",
        "user": "usr",
        "password": "se@cret",
        "sslmode": "prefer",
    }
