"""Shared test fixtures (helpers importable from :mod:`tests.support`)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

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
