"""Shared test fixtures (helpers importable from :mod:`tests.support`)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO_ROOT, SHARED

os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED / "tiktoken"))
# Airflow reads its configuration at import: point it at a private home before any test imports it.
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="llmtally-airflow-")
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO_ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO_ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME}/airflow.db"
os.environ.setdefault("AIRFLOW__LOGGING__BASE_LOG_FOLDER", f"{_AIRFLOW_HOME}/logs")


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[str]:
    """A migrated Airflow metadata database (SQLite) for ``dag.test()`` runs."""
    from airflow.utils import db

    db.resetdb()
    yield _AIRFLOW_HOME


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared/ folder with the real tokenizer files."""
    return SHARED


# ---------------------------------------------------------------- PostgreSQL (the real server)
PG_ADMIN_DSN = os.environ.get("LLMTALLY_TEST_PG", "host=127.0.0.1 port=5432 user=postgres dbname=test")
"""Where tests create their databases (``LLMTALLY_TEST_PG`` overrides; trust auth on this machine)."""


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """DSN of a fresh PostgreSQL database created for this test session and dropped at its end."""
    import secrets

    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = f"llmtally_test_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_DSN!r} (set LLMTALLY_TEST_PG): {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            params = conninfo_to_dict(PG_ADMIN_DSN)
            params["dbname"] = name
            yield make_conninfo("", **params)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_schema(pg_dsn: str) -> Iterator[str]:
    """A unique schema name in the session database, dropped after the test."""
    import secrets

    import psycopg

    schema = f"t_{secrets.token_hex(4)}"
    yield schema
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["memory", "postgres"])
def any_store(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Each store backend in turn: :class:`MemoryStore`, then :class:`PostgresStore` (a fresh schema)."""
    from llmtally.store import MemoryStore, PostgresStore

    if request.param == "memory":
        with MemoryStore() as mem:
            yield mem
    else:
        dsn = request.getfixturevalue("pg_dsn")
        with PostgresStore(dsn, schema=request.getfixturevalue("pg_schema")) as pg:
            yield pg
