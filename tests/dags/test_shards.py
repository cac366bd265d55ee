"""llm_usage_daily with its recount cut into shards (``dag.test()``, real tokenizers, real PostgreSQL):
any shard size gives byte-identical tables, one mapped recount task per shard."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.e2e.expected import day_totals, expected_totals, pipeline_env
from tests.support import REPO_ROOT, SHARED, environment

DAY = date(2026, 11, 20)
TABLES = ("usage_hourly", "usage_daily", "reconciliation", "top_requests", "prompt_digests", "quarantine")


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sys.path.insert(0, str(REPO_ROOT / "examples"))
    from sample_traffic import generate

    root = tmp_path_factory.mktemp("service-logs")
    generate(root, days=1, per_day=60, shared=SHARED, end=DAY)
    return root


@pytest.fixture(scope="module")
def env(
    airflow_db: str, logs: Path, pg_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    values = pipeline_env(tmp_path_factory.mktemp("run"), logs, pg_dsn, SHARED)
    with environment(values):
        yield values


@pytest.fixture(scope="module")
def dag(env: dict[str, str]) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(REPO_ROOT / "dags")).dags["llm_usage_daily"]


def _tables(dsn: str, schema: str) -> dict[str, list[str]]:
    """Every row of the day's tables as PostgreSQL's own text of the row, in a fixed order."""
    with psycopg.connect(dsn) as conn:
        query = 'SELECT t::text FROM "{}".{} t WHERE day = %s ORDER BY 1'
        return {t: [r[0] for r in conn.execute(query.format(schema, t), (DAY,))] for t in TABLES}


def test_any_shard_size_gives_byte_identical_tables(dag: Any, env: dict[str, str], logs: Path) -> None:
    dsn = env["AIRFLOW_CONN_LLM_USAGE_DB"]
    want = expected_totals(logs, DAY)
    assert 40 <= want.requests <= 100, want.requests
    seen: dict[str, dict[str, list[str]]] = {}
    for size in ("1000000", "1", "7", str(want.requests)):  # one shard (the unsharded run), the rest cut
        schema = f"shards_{size}"
        with environment({"LLMTALLY_SHARD_RECORDS": size, "LLMTALLY_DB_SCHEMA": schema}):
            run = dag.test(run_conf={"day": DAY.isoformat()})
        assert run.state == "success", size
        shards = sorted(ti.map_index for ti in run.get_task_instances() if ti.task_id == "recount")
        parse = next(ti for ti in run.get_task_instances() if ti.task_id == "parse")
        n = parse.xcom_pull(task_ids="parse")["records"]
        assert shards == list(range(-(-n // min(int(size), n))))
        parts = [
            ti.xcom_pull(task_ids="recount", map_indexes=ti.map_index)
            for ti in sorted(run.get_task_instances(), key=lambda t: t.map_index)
            if ti.task_id == "recount"
        ]
        assert sum(part["records"] for part in parts) == n  # every record, once
        # dag.test runs every task in this process: each model's engine loads once, later shards reuse it
        how: dict[str, list[str]] = {}
        for part in parts:
            for model, where in part["loaded"].items():
                how.setdefault(model, []).append(where)
        assert how and all(w[0] in ("loaded", "reused") and set(w[1:]) <= {"reused"} for w in how.values())
        assert day_totals(dsn, DAY, schema=schema) == (
            want.requests,
            want.prompt_tokens,
            want.completion_tokens,
        )
        seen[size] = _tables(dsn, schema)
    unsharded = seen.pop("1000000")
    assert unsharded["usage_hourly"] and unsharded["reconciliation"]
    for size, tables in seen.items():
        for t in TABLES:
            assert tables[t] == unsharded[t], (size, t)
