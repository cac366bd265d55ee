"""llm_usage_daily on the compose topology as processes (CeleryExecutor, Redis, PostgreSQL, a worker
on ``default`` and one on ``gpu``): the recount shards run on the gpu worker with engines it loaded
once per worker process, everything else on the default worker, the aggregates equal a single-process
run's row for row; a failed shard retries alone; clearing that shard re-runs only it."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.e2e.airflow_server import usage_database, write_task_policy
from tests.e2e.celery_topology import CeleryTopology, celery_topology
from tests.e2e.expected import day_totals, expected_totals, pipeline_env
from tests.e2e.expected import sample_logs as write_sample_logs
from tests.support import SHARED, environment

pytestmark = pytest.mark.slow

DAG = "llm_usage_daily"
LAST = date(2026, 11, 20)
DAYS = [LAST - timedelta(days=1), LAST]
SHARD = "20"  # records per recount shard: a sample day of ~60 records gives 3-4 shards
DEFAULT_WORKER = ["celery", "worker", "--queues", "default", "--skip-serve-logs", "-H", "airflow-worker"]
GPU_WORKER = ["celery", "worker", "--queues", "gpu", "--concurrency", "1", "--skip-serve-logs",
              "-H", "airflow-worker-gpu"]  # fmt: skip


@pytest.fixture(scope="module")
def sample_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_logs(tmp_path_factory.mktemp("service-logs"), days=len(DAYS), per_day=60, end=LAST,
                             shared=SHARED)  # fmt: skip


@pytest.fixture(scope="module")
def usage_db() -> Iterator[str]:
    yield from usage_database()


@pytest.fixture(scope="module")
def topology(
    tmp_path_factory: pytest.TempPathFactory, sample_logs: Path, usage_db: str
) -> Iterator[CeleryTopology]:
    home = tmp_path_factory.mktemp("airflow-celery")
    # a failed shard retries once after 5 s, not 5 minutes
    write_task_policy(home, "task.retries = 1\ntask.retry_delay = timedelta(seconds=5)")
    env = {
        **pipeline_env(home, sample_logs, usage_db, SHARED),
        "LLMTALLY_SHARD_RECORDS": SHARD,
        "LLMTALLY_START_DATE": DAYS[0].isoformat(),
        "LLMTALLY_CATCHUP": "false",
    }
    env.pop("LLMTALLY_RECOUNT_QUEUE", None)
    with celery_topology(home, env) as topo:
        topo.start("airflow-worker", DEFAULT_WORKER)
        topo.start("airflow-worker-gpu", GPU_WORKER, LLMTALLY_PRELOAD_MODELS="*")
        topo.wait_for_workers(["airflow-worker", "airflow-worker-gpu"])
        topo.server.wait_for_dag(DAG)
        assert topo.server.api("PATCH", f"/dags/{DAG}", json={"is_paused": False}).status_code == 200
        yield topo


def _trigger(topo: CeleryTopology, day: date) -> str:
    r = topo.server.api(
        "POST", f"/dags/{DAG}/dagRuns", json={"logical_date": None, "conf": {"day": day.isoformat()}}
    )
    assert r.status_code == 200, r.text
    return str(r.json()["dag_run_id"])


def _wait(topo: CeleryTopology, run_id: str, timeout: float = 600) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        topo.check_alive()
        state = topo.server.api("GET", f"/dags/{DAG}/dagRuns/{run_id}").json()["state"]
        if state in ("success", "failed"):
            return str(state)
        time.sleep(2)
    raise TimeoutError(f"{run_id} did not finish in {timeout} s")


def _tis(topo: CeleryTopology, run_id: str) -> list[dict[str, Any]]:
    r = topo.server.api("GET", f"/dags/{DAG}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
    assert r.status_code == 200, r.text
    return list(r.json()["task_instances"])


def _xcom(topo: CeleryTopology, run_id: str, task_id: str, map_index: int = -1) -> Any:
    import json

    r = topo.server.api(
        "GET", f"/dags/{DAG}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
        params={"map_index": map_index, "deserialize": True},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    value = r.json()["value"]
    return json.loads(value) if isinstance(value, str) else value


def _rows(dsn: str, schema: str, day: date) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute(
            f'SELECT t::text FROM "{schema}".usage_hourly t WHERE day = %s ORDER BY 1', (day,))]  # fmt: skip


def _single_process(env: dict[str, str], day: date, schema: str) -> None:
    """The same day through the same steps in this one process (no Airflow), into ``schema``."""
    from llmtally.jobs import daily

    with environment({**{k: v for k, v in env.items() if k.startswith("LLMTALLY_") or k.startswith("AIRFLOW_")},
                      "LLMTALLY_DB_SCHEMA": schema, "LLMTALLY_SHARD_RECORDS": "1000000"}):  # fmt: skip
        p = daily.plan({"day": day.isoformat()}, run_id=f"single-{schema}",
                       variable=lambda key: os.environ.get("AIRFLOW_VAR_" + key.upper()))  # fmt: skip
        daily.parse(p, daily.collect(p))
        assert daily.load(p, daily.reconcile(p, daily.recount(p)))["loaded"]
        daily.cleanup(p)


def test_shards_run_on_the_gpu_worker_and_equal_a_single_process_run(
    topology: CeleryTopology, sample_logs: Path, usage_db: str
) -> None:
    day = DAYS[0]
    run_id = _trigger(topology, day)
    assert _wait(topology, run_id) == "success", [(t["task_id"], t["state"]) for t in _tis(topology, run_id)]
    tis = _tis(topology, run_id)
    shards = [t for t in tis if t["task_id"] == "recount"]
    parsed = _xcom(topology, run_id, "parse")
    assert len(shards) == -(-parsed["records"] // int(SHARD)) >= 3
    for t in tis:
        where = ("gpu", "airflow-worker-gpu") if t["task_id"] == "recount" else ("default", "airflow-worker")
        assert (t["queue"], t["hostname"], t["state"]) == (*where, "success"), t
    summaries = [_xcom(topology, run_id, "recount", t["map_index"]) for t in shards]
    assert sum(s["records"] for s in summaries) == parsed["records"]
    # one worker process (concurrency 1) loaded the configured models before any task: every shard
    # ran in a fork of it and found them loaded
    pids = {s["pid"] for s in summaries}
    assert len(pids) == len(summaries)  # a process per task ...
    configured = {"qwen3-8b", "Qwen/Qwen3-8B", "deepseek-ai/DeepSeek-V3", "meta-llama/Llama-3.1-8B-Instruct"}
    for s in summaries:
        assert s["host"] and s["loaded"], s
        assert all(how == "preloaded" for model, how in s["loaded"].items() if model in configured), s
    assert any("qwen3-8b" in s["loaded"] for s in summaries)
    want = expected_totals(sample_logs, day)
    assert day_totals(usage_db, day) == (want.requests, want.prompt_tokens, want.completion_tokens)
    _single_process(topology.env, day, "single")
    assert _rows(usage_db, "llmtally", day) == _rows(usage_db, "single", day)


def test_a_failed_shard_retries_alone_and_clearing_it_reruns_only_it(
    topology: CeleryTopology, sample_logs: Path, usage_db: str
) -> None:
    """The gpu worker is down while the day is parsed; one shard's log file goes missing just before the
    worker comes back: that shard fails and retries alone (the others succeed once), fails again, and
    the run fails keeping its staging; the file is put back, that one shard is cleared with its
    downstream tasks (the UI's Clear on one mapped task), re-runs alone, and the day is exact."""
    from llmtally.jobs._staging import ParseIndex, Staging

    day = DAYS[1]
    topology.stop("airflow-worker-gpu")
    run_id = _trigger(topology, day)
    deadline = time.monotonic() + 300
    while not [t for t in _tis(topology, run_id) if t["task_id"] == "recount" and t["state"] == "queued"]:
        assert time.monotonic() < deadline, _tis(topology, run_id)
        time.sleep(2)
    plan = _xcom(topology, run_id, "plan")
    index = Staging(plan["staging"]).read("parse", ParseIndex)
    owners: dict[str, set[int]] = {}
    for shard in index.shards:
        for span in shard.spans:
            owners.setdefault(span.file, set()).add(shard.index)
    victim, (broken,) = next((f, s) for f, s in sorted(owners.items()) if len(s) == 1 and 0 not in s)
    moved = Path(victim + ".away")
    os.rename(victim, moved)
    try:
        topology.start("airflow-worker-gpu", GPU_WORKER, LLMTALLY_PRELOAD_MODELS="*")
        assert _wait(topology, run_id) == "failed"
        tis = _tis(topology, run_id)
        states = {(t["task_id"], t["map_index"]): (t["state"], t["try_number"]) for t in tis}
        shards = sorted(m for t, m in states if t == "recount")
        assert {m: states["recount", m] for m in shards} == {
            m: ("failed", 2) if m == broken else ("success", 1) for m in shards
        }, states
        assert {states[t, -1][0] for t in ("reconcile", "load", "report", "cleanup")} == {"upstream_failed"}
        assert (Path(plan["staging"]) / "parse.json.gz").is_file(), "a failed run keeps its staging"
    finally:
        os.rename(moved, victim)
    r = topology.server.api("POST", f"/dags/{DAG}/clearTaskInstances", json={
        "dry_run": False, "dag_run_id": run_id, "task_ids": [["recount", broken]], "include_downstream": True,
        "only_failed": True})  # fmt: skip
    assert r.status_code == 200, r.text
    cleared = sorted((t["task_id"], t["map_index"]) for t in r.json()["task_instances"])
    assert cleared == sorted([("recount", broken), ("reconcile", -1), ("load", -1), ("report", -1),
                              ("cleanup", -1)]), cleared  # fmt: skip
    time.sleep(3)
    assert _wait(topology, run_id) == "success"
    tries = {t["map_index"]: t["try_number"] for t in _tis(topology, run_id) if t["task_id"] == "recount"}
    assert tries == {k: 3 if k == broken else 1 for k in tries}, (broken, tries)
    want = expected_totals(sample_logs, day)
    assert day_totals(usage_db, day) == (want.requests, want.prompt_tokens, want.completion_tokens)
    _single_process(topology.env, day, "single")
    assert _rows(usage_db, "llmtally", day) == _rows(usage_db, "single", day)
