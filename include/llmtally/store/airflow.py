"""Airflow edge: the usage database DSN from the Airflow connection (import from DAG code only)."""

from __future__ import annotations

from ._dsn import conninfo

__all__ = ["CONN_ID", "dsn_from_airflow"]

CONN_ID = "llm_usage_db"
"""The Airflow connection id of the aggregate database."""


def dsn_from_airflow(conn_id: str = CONN_ID) -> str:
    """A libpq DSN built from the Airflow connection ``conn_id`` (via ``PostgresHook``)."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    conn = PostgresHook(postgres_conn_id=conn_id).connection
    return conninfo(
        host=conn.host,
        port=conn.port,
        dbname=conn.schema,
        user=conn.login,
        password=conn.password,
        extra=conn.extra_dejson,
    )
