"""Scale out: a day recounted in shards by 1 and by 2 workers; records/s and CPU-seconds per million.

    python bench/bench_scale.py [--records 500000] [--workers 1,2] [--dsn "host=127.0.0.1 port=5432 user=postgres dbname=test"]

The day: ``examples/sample_traffic.generate`` writes a day of the sample's traffic with the real
``UsageLogger`` (qwen3-8b with thinking and tool calls, deepseek-chat, gpt-4o-mini with a tool, a
few legacy lines); its records are repeated with fresh ids, times spread over the day and the last
user message made unique (so no prompt repeats whole: the recount's caches see what real traffic
gives them; the records keep the original's reported usage, so most show drift: speed, not
accounting, is measured), into one file per service folder and hour, ``--records`` in all.

Each worker count runs the DAG's task functions as Airflow runs them on Celery, without the
scheduler: ``plan``, ``collect``, ``parse`` (one task, this process); then the recount shards
(``[recount] shard_records`` at its default) spread over ``W`` worker processes, each of which, like
a Celery pool process with ``LLMTALLY_PRELOAD_MODELS``, loads the engines once and runs every shard
in a fork of itself (Airflow 3 runs each task in a fork); then ``reconcile`` and ``load`` (one task
each, this process) into a scratch PostgreSQL database.  Measured per step: wall seconds and CPU
seconds (this process, the workers, every child of theirs), so CPU-seconds per million records
extrapolates to any size.  The tables of every worker count are compared row for row.

Not measured here: Airflow's own cost per task (scheduling, the fork, the DAG file parse, XCom),
which ``tests/e2e/test_celery_real.py``'s real topology pays; see BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import secrets
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import date, datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("LLMTALLY_SHARED", ROOT.parent / "shared")).resolve()
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED / "tiktoken"))
sys.path.insert(0, str(ROOT / "examples"))

DAY = date(2026, 11, 20)
TZ = "Asia/Shanghai"


def _cpu() -> float:
    """CPU seconds of this process and of its children that ended (and theirs)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _write_day(root: Path, n: int) -> Path:
    """``n`` records of the sample traffic, fresh ids, spread over the day, last user message unique."""
    from sample_traffic import generate

    base = root / "base"
    generate(base, days=1, per_day=4_000, shared=SHARED, end=DAY)
    rng = random.Random(11)
    start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=ZoneInfo(TZ))
    pools: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(base.rglob("*.jsonl")):
        lines = [json.loads(x) for x in path.read_text("utf-8").splitlines() if x.startswith('{"v"')]
        pools.setdefault(path.parent.name, []).extend(lines)
    logs = root / "logs"
    services = sorted(pools)
    files: dict[tuple[str, int], Any] = {}
    with ExitStack() as stack:
        for i in range(n):
            service = services[i % len(services)]
            pool = pools[service]
            rec = dict(pool[rng.randrange(len(pool))])
            rec["id"] = uuid.UUID(int=rng.getrandbits(128)).hex
            ts = start + timedelta(seconds=86_400 * i / n)
            rec["ts"] = ts.isoformat()
            messages = rec.get("messages")
            if messages:
                messages = [dict(m) for m in messages]
                for m in reversed(messages):
                    if m.get("role") == "user" and isinstance(m.get("content"), str):
                        m["content"] += f" (#{i})"
                        break
                rec["messages"] = messages
            key = (service, ts.hour)
            if key not in files:
                (logs / service).mkdir(parents=True, exist_ok=True)
                path = logs / service / f"usage-{service}-{ts.hour:02d}.jsonl"
                files[key] = stack.enter_context(open(path, "w", encoding="utf-8"))
            files[key].write(json.dumps(rec, ensure_ascii=False) + "\n")
    return logs


def _worker(p: dict[str, Any], shards: Any, results: Any) -> None:
    """A Celery pool process: preload once, then each shard in a fork of itself (as Airflow 3 does)."""
    from llmtally.jobs import daily
    from llmtally.jobs._engines import preload, preload_models

    t, c = time.perf_counter(), _cpu()
    preload([*preload_models("*"), "deepseek-chat", "gpt-4o-mini"])
    loaded_s, loaded_cpu = time.perf_counter() - t, _cpu() - c
    results.put({"worker_ready": os.getpid()})
    while (k := shards.get()) is not None:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            out = daily.recount(p, k)
            os.write(write, json.dumps(out).encode())
            os._exit(0)
        os.close(write)
        with os.fdopen(read, "rb") as fh:
            body = fh.read()
        os.waitpid(pid, 0)
        results.put(json.loads(body))
    results.put({"worker_done": os.getpid(), "preload_s": loaded_s, "preload_cpu_s": loaded_cpu})


def _run(workers: int, run_id: str) -> dict[str, Any]:
    from llmtally.jobs import daily

    steps: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def timed(name: str, fn: Any, *args: Any) -> Any:
        t, c = time.perf_counter(), _cpu()
        out = fn(*args)
        steps[name], cpu[name] = time.perf_counter() - t, _cpu() - c
        return out

    p = daily.plan({"day": DAY.isoformat()}, run_id=run_id, variable=lambda key: None)
    files = timed("collect", daily.collect, p)
    parsed = timed("parse", daily.parse, p, files)
    ctx = get_context("fork")
    shards, results = ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(p, shards, results)) for _ in range(workers)]
    for proc in procs:
        proc.start()
    for _ in procs:  # the pool processes start with the worker, before any day: not the day's time
        assert "worker_ready" in results.get()
    ready_cpu = _cpu()
    t = time.perf_counter()
    for k in parsed["shards"]:
        shards.put(k)
    for _ in procs:
        shards.put(None)
    parts, done = [], []
    while len(done) < workers:
        msg = results.get()
        (done if "worker_done" in msg else parts).append(msg)
    steps["recount"] = time.perf_counter() - t
    for proc in procs:
        proc.join()
    preload_cpu = sum(w["preload_cpu_s"] for w in done)
    cpu["recount"] = _cpu() - ready_cpu - preload_cpu  # the workers' CPU once they were ready
    preload_s = max(w["preload_s"] for w in done)
    counted = timed("reconcile", daily.reconcile, p, parts)
    loaded = timed("load", daily.load, p, counted)
    daily.cleanup(p)
    assert loaded["loaded"]
    assert sum(x["records"] for x in parts) == parsed["records"]
    return {
        "workers": workers,
        "records": parsed["records"],
        "shards": len(parsed["shards"]),
        "steps_s": steps,
        "cpu_s": cpu,
        "preload_cpu_s": preload_cpu,
        "preload_s": preload_s,
        "shard_seconds": sorted(x["seconds"] for x in parts),
    }


def _rows(dsn: str) -> list[str]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT t::text FROM llmtally.usage_hourly t ORDER BY 1")]


def _table_size(dsn: str) -> dict[str, float]:
    """Bytes per usage_hourly row on disk (heap and indexes, every partition) and rows per day."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT count(*) FROM llmtally.usage_hourly").fetchone()[0]  # type: ignore[index]
        heap, index = conn.execute(
            "SELECT sum(pg_table_size(c.oid)), sum(pg_indexes_size(c.oid)) FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'llmtally.usage_hourly'::regclass"
        ).fetchone()  # type: ignore[misc]
        daily = conn.execute("SELECT count(*) FROM llmtally.usage_daily").fetchone()[0]  # type: ignore[index]
    return {"rows": rows, "heap_bytes_per_row": float(heap) / rows, "index_bytes_per_row": float(index) / rows,
            "usage_daily_rows": daily}  # fmt: skip


def main() -> None:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from sample_traffic import write_config

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=500_000)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--dsn", default="host=127.0.0.1 port=5432 user=postgres dbname=test")
    args = ap.parse_args()
    for name in ("LLMTALLY_SHARD_RECORDS", "LLMTALLY_PRELOAD_MODELS"):  # the defaults a user gets
        os.environ.pop(name, None)
    db = f"llmtally_bench_scale_{secrets.token_hex(3)}"
    admin = psycopg.connect(args.dsn, autocommit=True)
    admin.execute(f'CREATE DATABASE "{db}"')
    dsn = make_conninfo("", **{**conninfo_to_dict(args.dsn), "dbname": db})
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            t = time.perf_counter()
            logs = _write_day(root, args.records)
            size = sum(f.stat().st_size for f in logs.rglob("*.jsonl"))
            os.environ.update(
                AIRFLOW_CONN_LLM_USAGE_DB=dsn,
                LLMTALLY_LOG_DIRS=str(logs / "*"),
                LLMTALLY_CONFIG=str(write_config(root / "llmtally.toml", SHARED)),
                LLMTALLY_STAGING_DIR=str(root / "staging"),
                LLMTALLY_TIMEZONE=TZ,
            )
            print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
                  f"load average {os.getloadavg()}")  # fmt: skip
            print(f"day: {args.records:,} records, {size / 1e6:.0f} MB in {len(list(logs.rglob('*.jsonl')))} files, "
                  f"written in {time.perf_counter() - t:.0f} s")  # fmt: skip
            results, tables = [], {}
            for w in (int(x) for x in args.workers.split(",")):
                r = _run(w, f"bench_w{w}_{secrets.token_hex(2)}")
                results.append(r)
                tables[w] = _rows(dsn)
                s, c, n = r["steps_s"], r["cpu_s"], r["records"] / 1e6
                wall = sum(s.values())
                print(
                    f"{w} worker(s), {r['shards']} shards: recount {s['recount']:.1f} s = "
                    f"{r['records'] / s['recount']:,.0f} records/s ({c['recount'] / n:.0f} CPU-s per million); "
                    f"whole day {wall:.1f} s = {r['records'] / wall:,.0f} records/s "
                    f"({sum(c.values()) / n:.0f} CPU-s per million: parse {c['parse'] / n:.0f}, "
                    f"reconcile {c['reconcile'] / n:.0f}, load {c['load'] / n:.0f}); "
                    f"engines preloaded once per worker in {r['preload_s']:.1f} s; shards took {r['shard_seconds']} s"
                )  # fmt: skip
            first = next(iter(tables.values()))
            same = all(t == first for t in tables.values())
            print(f"usage_hourly identical across worker counts: {same} ({len(first):,} rows)")
            sizes = _table_size(dsn)
            print(f"usage_hourly on disk: {sizes['heap_bytes_per_row']:.0f} B/row heap + "
                  f"{sizes['index_bytes_per_row']:.0f} B/row indexes; {sizes['rows']:,} rows for the day, "
                  f"usage_daily {sizes['usage_daily_rows']:,} rows")  # fmt: skip
            print(json.dumps({"results": results, "identical": same, "table": sizes}, indent=1))
            assert same
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        admin.close()


if __name__ == "__main__":
    main()
