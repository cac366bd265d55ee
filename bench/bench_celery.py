"""llm_usage_daily on the real Celery topology, with 1 and then 2 workers on the ``gpu`` queue.

    python bench/bench_celery.py [--records 40000] [--shard-records 10000]

The compose topology as processes (``tests/e2e/celery_topology.py``: CeleryExecutor with the
machine's Redis and PostgreSQL, api-server, scheduler, dag-processor, a worker on ``default`` and
``gpu`` workers preloading the sample's models), a day of ``--records`` records made as
``bench_scale.py`` makes them, cut into shards of ``--shard-records`` (not the default: a day this
small would be one shard), triggered over the REST API and timed from the trigger to the run's end.
A first run warms the processes up (reported apart); then one run with one gpu worker and one with
two.  From the task instances: each task's run time and where it ran; the shards' own recount
seconds from their XComs (the rest of a shard task's time is Airflow's: the fork, the DAG file's
parse, the API calls).  Every run loads the same day; the tables are compared row for row.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from tests.e2e.airflow_server import temp_database  # noqa: E402
from tests.e2e.celery_topology import celery_topology  # noqa: E402

from bench_scale import DAY, SHARED, _rows, _write_day  # noqa: E402

DAG = "llm_usage_daily"
WORKER = ["celery", "worker", "--skip-serve-logs"]
PRELOAD = "*,deepseek-chat,gpt-4o-mini"  # every [models] entry and the sample's built-in names


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _one_run(topo: Any, label: str) -> dict[str, Any]:
    api = topo.server.api
    t0 = time.perf_counter()
    r = api("POST", f"/dags/{DAG}/dagRuns", json={"logical_date": None, "conf": {"day": DAY.isoformat()}})
    assert r.status_code == 200, r.text
    run_id = r.json()["dag_run_id"]
    while (state := api("GET", f"/dags/{DAG}/dagRuns/{run_id}").json()["state"]) not in ("success", "failed"):
        topo.check_alive()
        time.sleep(1)
    wall = time.perf_counter() - t0
    assert state == "success", state
    tis = api("GET", f"/dags/{DAG}/dagRuns/{run_id}/taskInstances", params={"limit": 100}).json()[
        "task_instances"
    ]
    shards = [t for t in tis if t["task_id"] == "recount"]
    own = []
    for t in shards:
        x = api("GET", f"/dags/{DAG}/dagRuns/{run_id}/taskInstances/recount/xcomEntries/return_value",
                params={"map_index": t["map_index"], "deserialize": True}).json()["value"]  # fmt: skip
        own.append(json.loads(x) if isinstance(x, str) else x)
    durations = {f"{t['task_id']}[{t['map_index']}]" if t["map_index"] >= 0 else t["task_id"]: t["duration"]
                 for t in tis}  # fmt: skip
    spans = sorted((_ts(t["start_date"]), _ts(t["end_date"])) for t in tis)
    first, last = spans[0][0], max(e for _, e in spans)
    busy = sum(e - s for s, e in spans)
    return {
        "label": label,
        "wall_s": round(wall, 1),
        "first_task_start_to_last_end_s": round(last - first, 1),
        "tasks": len(tis),
        "task_seconds_sum": round(busy, 1),
        "recount_hosts": sorted({t["hostname"] for t in shards}),
        "shard_task_s": sorted(round(t["duration"], 1) for t in shards),
        "shard_own_recount_s": sorted(round(x["seconds"], 1) for x in own),
        "shard_loaded": sorted({h for x in own for h in x["loaded"].values()}),
        "durations": durations,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=40_000)
    ap.add_argument("--shard-records", type=int, default=10_000)
    args = ap.parse_args()
    from sample_traffic import write_config

    with tempfile.TemporaryDirectory() as tmp, temp_database("llmtally_bench_celery") as db:
        root = Path(tmp)
        logs = _write_day(root, args.records)
        dsn = f"postgresql://postgres@127.0.0.1:5432/{db}"
        env = {
            "AIRFLOW_CONN_LLM_USAGE_DB": dsn,
            "AIRFLOW_VAR_LLM_USAGE_LOG_DIRS": str(logs / "*"),
            "LLMTALLY_CONFIG": str(write_config(root / "llmtally.toml", SHARED)),
            "LLMTALLY_REPORT_DIR": str(root / "reports"),
            "LLMTALLY_STAGING_DIR": str(root / "staging"),
            "LLMTALLY_SHARD_RECORDS": str(args.shard_records),
            "LLMTALLY_START_DATE": DAY.isoformat(),
            "LLMTALLY_CATCHUP": "false",
        }
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
              f"load average {os.getloadavg()}; {args.records:,} records, shards of {args.shard_records:,}")  # fmt: skip
        results, tables = [], []
        with celery_topology(root / "airflow", env) as topo:
            topo.start("airflow-worker", [*WORKER, "--queues", "default", "-H", "airflow-worker"])
            gpus = ["airflow-worker-gpu"]
            topo.start(gpus[0], [*WORKER, "--queues", "gpu", "--concurrency", "1", "-H", gpus[0]],
                       LLMTALLY_PRELOAD_MODELS=PRELOAD)  # fmt: skip
            topo.wait_for_workers(["airflow-worker", *gpus])
            topo.server.wait_for_dag(DAG)
            assert topo.server.api("PATCH", f"/dags/{DAG}", json={"is_paused": False}).status_code == 200
            results.append(_one_run(topo, "1 gpu worker, first run (cold processes)"))
            tables.append(_rows(dsn))
            results.append(_one_run(topo, "1 gpu worker"))
            tables.append(_rows(dsn))
            gpus.append("airflow-worker-gpu-2")
            topo.start(gpus[1], [*WORKER, "--queues", "gpu", "--concurrency", "1", "-H", gpus[1]],
                       LLMTALLY_PRELOAD_MODELS=PRELOAD)  # fmt: skip
            topo.wait_for_workers(gpus)
            results.append(_one_run(topo, "2 gpu workers"))
            tables.append(_rows(dsn))
        for r in results:
            print(
                f"{r['label']}: run {r['wall_s']} s from trigger to success ({r['tasks']} tasks, "
                f"{r['task_seconds_sum']} task-seconds); shards ran on {r['recount_hosts']}: task "
                f"{r['shard_task_s']} s, their own recount {r['shard_own_recount_s']} s, engines "
                f"{r['shard_loaded']}"
            )
        print(
            f"tables identical: {all(t == tables[0] for t in tables)} ({len(tables[0]):,} usage_hourly rows)"
        )
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
