"""The usage page over both store backends, loaded once per session with :mod:`tests.web.data`."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from llmtally.report import ReportSettings
from llmtally.store import MemoryStore, PostgresStore, UsageStore
from tests.report import gen
from tests.web import data

RATE = "7.1"
"""USD → CNY in the test configuration (in force from 2026-01-01)."""


@pytest.fixture(scope="session")
def web_config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """llmtally.toml for the page tests: the time zone, CNY as the reporting currency, one rate."""
    path = tmp_path_factory.mktemp("web-config") / "llmtally.toml"
    path.write_text(
        f'timezone = "{data.TZ}"\n\n[currency]\nreport = "CNY"\n\n'
        f'[[currency.rates]]\nfrom = "USD"\nto = "CNY"\nrate = "{RATE}"\ndate = 2026-01-01\n',
        encoding="utf-8",
    )
    return path


@pytest.fixture
def web_config(web_config_file: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The page tests' configuration, for one test (nothing leaks into other modules)."""
    monkeypatch.setenv("LLMTALLY_CONFIG", str(web_config_file))
    monkeypatch.setenv("LLMTALLY_TIMEZONE", data.TZ)
    monkeypatch.delenv("LLMTALLY_REPORT_CURRENCY", raising=False)
    return web_config_file


@pytest.fixture(scope="session")
def rows() -> list[gen.Row]:
    return data.rows()


def _fill(store: UsageStore, rows: list[gen.Row]) -> None:
    for load in data.loads(rows):
        store.load_day(load)
    store.archive_report(data.DAY, "zh", "<html><body><p id='archived'>日报 2026-11-26</p></body></html>", {})
    store.archive_report(data.DAY - timedelta(days=1), "en", "<html><body>report</body></html>", {})


@pytest.fixture(scope="session")
def memory_store(rows: list[gen.Row]) -> Iterator[MemoryStore]:
    with MemoryStore() as store:
        _fill(store, rows)
        yield store


@pytest.fixture(scope="session")
def postgres_store(pg_dsn: str, rows: list[gen.Row]) -> Iterator[PostgresStore]:
    import psycopg

    schema = f"web_{secrets.token_hex(4)}"
    with PostgresStore(pg_dsn, schema=schema) as store:
        _fill(store, rows)
        yield store
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["memory", "postgres"])
def store(request: pytest.FixtureRequest, web_config: Path) -> UsageStore:
    """Each backend in turn, holding the same six weeks."""
    return request.getfixturevalue(f"{request.param}_store")  # type: ignore[no-any-return]


def opener(store: UsageStore) -> Any:
    @contextmanager
    def open_store() -> Iterator[UsageStore]:
        yield store

    return open_store


@pytest.fixture
def client(store: UsageStore) -> Any:
    """The app over ``store`` on the day after the data ends (so the default range ends on it)."""
    from fastapi.testclient import TestClient

    from llmtally.web import create_app

    app = create_app(
        opener(store),
        timezone=data.TZ,
        settings=ReportSettings(lang="zh"),
        today=lambda: data.DAY + timedelta(days=1),
    )
    with TestClient(app) as c:
        yield c
