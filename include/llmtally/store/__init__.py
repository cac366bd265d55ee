"""Where the day's aggregates live: a :class:`UsageStore` protocol, PostgreSQL and in-memory backends.

``PostgresStore(dsn)`` needs the ``pipeline`` extra (psycopg 3); it is imported on first use so
``llmtally.store`` itself stays light.  :class:`MemoryStore` is the shipped test double with the same
contract.  DSNs come from :func:`dsn_from_env` (``AIRFLOW_CONN_LLM_USAGE_DB``) or, in DAG code only,
:func:`llmtally.store.airflow.dsn_from_airflow`.

Both stores also keep the alerts' state: budget thresholds fired (``claim``, ``fired_in``:
:class:`llmtally.budgets.BudgetState`, rows :class:`FiredThreshold`) and alert messages sent per
channel (``sent_since``, ``record_sent``: :class:`llmtally.alerts.SentLog`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._alerts import FiredThreshold
from ._base import FILTER_COLUMNS, SUM_COLUMNS, SUMMABLE, StoreQueries, SummedRow, UsageStore, Where, fold
from ._dsn import DEFAULT_SCHEMA, conninfo, dsn_from_env, schema_from_env
from ._memory import MemoryStore
from ._migrations import MIGRATIONS
from ._rows import (
    DIMENSIONS,
    DayLoad,
    DayQuality,
    FoldEntry,
    HourlyRow,
    LedgerEntry,
    LossEntry,
    PromptDigestRow,
    QuarantineEntry,
    ReconciliationRow,
    TopRequest,
    Totals,
)

if TYPE_CHECKING:
    from ._postgres import PostgresStore

__all__ = [
    "DEFAULT_SCHEMA",
    "DIMENSIONS",
    "FILTER_COLUMNS",
    "MIGRATIONS",
    "SUMMABLE",
    "SUM_COLUMNS",
    "DayLoad",
    "DayQuality",
    "FiredThreshold",
    "FoldEntry",
    "HourlyRow",
    "LedgerEntry",
    "LossEntry",
    "MemoryStore",
    "PostgresStore",
    "PromptDigestRow",
    "QuarantineEntry",
    "ReconciliationRow",
    "StoreQueries",
    "SummedRow",
    "TopRequest",
    "Totals",
    "UsageStore",
    "Where",
    "conninfo",
    "dsn_from_env",
    "fold",
    "open_store",
    "schema_from_env",
]


def __getattr__(name: str) -> Any:
    if name == "PostgresStore":
        from ._postgres import PostgresStore

        return PostgresStore
    raise AttributeError(name)


def open_store(dsn: str | None = None, *, schema: str | None = None) -> PostgresStore:
    """A migrated :class:`PostgresStore` for ``dsn`` (default: :func:`dsn_from_env`) and ``schema``
    (default: :func:`schema_from_env`)."""
    from ._postgres import PostgresStore

    return PostgresStore(dsn or dsn_from_env(), schema=schema or schema_from_env())
