"""Report tests: generated aggregates in their own schemas of the session's PostgreSQL database."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.report import gen


def _schema(pg_dsn: str, ds: gen.Dataset) -> Iterator[str]:
    import psycopg

    name = f"report_{secrets.token_hex(4)}"
    gen.load(pg_dsn, name, ds)
    yield name
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture(scope="session")
def steady_data() -> gen.Dataset:
    """Six weeks of steady traffic ending on gen.DAY."""
    return gen.steady()


@pytest.fixture(scope="session")
def planted_data(steady_data: gen.Dataset) -> gen.Dataset:
    """The steady weeks with five planted anomalies on gen.DAY."""
    return gen.plant_anomalies(steady_data)


@pytest.fixture(scope="session")
def steady_schema(pg_dsn: str, steady_data: gen.Dataset) -> Iterator[str]:
    yield from _schema(pg_dsn, steady_data)


@pytest.fixture(scope="session")
def planted_schema(pg_dsn: str, planted_data: gen.Dataset) -> Iterator[str]:
    yield from _schema(pg_dsn, planted_data)


@pytest.fixture
def use_schema(monkeypatch: pytest.MonkeyPatch) -> object:
    """``use_schema(name)`` points the report at a schema (LLMTALLY_DB_SCHEMA) for one test."""

    def use(name: str) -> None:
        monkeypatch.setenv("LLMTALLY_DB_SCHEMA", name)
        monkeypatch.setenv("LLMTALLY_TIMEZONE", gen.TZ)
        monkeypatch.delenv("LLMTALLY_CONFIG", raising=False)
        monkeypatch.delenv("LLMTALLY_REPORT_DIR", raising=False)
        monkeypatch.delenv("LLMTALLY_REPORT_LANG", raising=False)

    return use
