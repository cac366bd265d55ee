"""One intraday run (``llm_usage_hourly``'s steps) over an hour of a busy service, and the next hour.

    python bench/bench_intraday.py [--per-hour 100000] [--dsn "host=127.0.0.1 port=5432 user=postgres dbname=test"]

The logs: ``examples/sample_traffic.generate`` writes a day of the sample's traffic with the real
``UsageLogger`` (qwen3-8b with thinking and tool calls, deepseek-chat, gpt-4o-mini with a tool, a few
legacy lines); its records (about a fifth of an hour's) are then repeated with fresh ids and timestamps spread over 10:00–11:00
until the hour holds ``--per-hour`` records, and over 11:00–12:00 for the next hour (appended to
the same files, as a service would).  Each run executes the DAG's task functions in order, in this
process (``intraday.plan``, ``daily.collect``, ``parse``, ``recount``, ``reconcile``, ``load``) into a
scratch PostgreSQL database (dropped at the end), timed per step:

1. the 11:00 run: the first hour, nothing cached;
2. the 12:00 run: the second hour appended; the recount reuses the first run's counts;
3. baseline, same run: the 12:00 cut processed without the day's recount cache (what re-processing
   the whole day so far costs at each run, i.e. the daily run's path on a partial day).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import secrets
import sys
import tempfile
import time
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("LLMTALLY_SHARED", ROOT.parent / "shared")).resolve()
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED / "tiktoken"))
sys.path.insert(0, str(ROOT / "examples"))

DAY = date(2026, 11, 20)
TZ = "Asia/Shanghai"


def _hour_of(lines: list[str], n: int, hour: int, rng: random.Random) -> list[str]:
    """``n`` records made of ``lines`` (JSON records), fresh ids, spread over local ``hour``."""
    start = datetime(DAY.year, DAY.month, DAY.day, hour, tzinfo=ZoneInfo(TZ))
    out = []
    for i in range(n):
        rec = json.loads(lines[i % len(lines)])
        rec["id"] = uuid.UUID(int=rng.getrandbits(128)).hex
        rec["ts"] = (start + timedelta(seconds=3600 * i / n)).isoformat()
        out.append(json.dumps(rec, ensure_ascii=False) + "\n")
    return out


def _write_logs(root: Path, per_hour: int) -> tuple[Path, dict[str, list[list[str]]]]:
    from sample_traffic import generate

    base = root / "base"
    generate(base, days=1, per_day=max(2_000, per_hour // 5), shared=SHARED, end=DAY)
    rng = random.Random(5)
    hours: dict[str, list[list[str]]] = {}
    files = [p for p in sorted(base.rglob("*.jsonl"))]
    share = per_hour // len(files)
    for path in files:
        lines = [ln for ln in path.read_text("utf-8").splitlines() if ln.startswith('{"v"')]
        hours[path.parent.name] = [_hour_of(lines, share, h, rng) for h in (10, 11)]
    return root / "logs", hours


def _grow(logs: Path, hours: dict[str, list[list[str]]], k: int) -> int:
    n = 0
    for service, parts in hours.items():
        folder = logs / service
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "usage.jsonl", "a", encoding="utf-8") as fh:
            fh.writelines(parts[k])
        n += len(parts[k])
    return n


def _run(cut_hour: int, run_id: str, *, cache: bool) -> dict[str, Any]:
    from llmtally.jobs import daily, intraday

    steps: dict[str, float] = {}
    t = time.perf_counter()
    until = datetime(DAY.year, DAY.month, DAY.day, cut_hour, tzinfo=ZoneInfo(TZ))
    p = intraday.plan({"alerts": False}, run_id=run_id, until=until)
    if not cache:
        p["cache"] = None
    steps["plan"] = time.perf_counter() - t
    out: dict[str, Any] = {}
    for name, fn, args in (
        ("collect", daily.collect, ()),
        ("parse", daily.parse, ("collect",)),
        ("recount", daily.recount, ()),  # every shard, one after another, in this process
        ("reconcile", daily.reconcile, ("recount",)),
        ("load", daily.load, ("reconcile",)),
    ):
        t = time.perf_counter()
        out[name] = fn(p, *(out[a] for a in args))
        steps[name] = time.perf_counter() - t
    steps["total"] = sum(steps.values())
    return {"steps": steps, "records": out["parse"]["records"], "recounted": out["recount"]["records"],
            "reused": out["recount"]["reused"], "loaded": out["load"]["loaded"]}  # fmt: skip


def _show(title: str, r: dict[str, Any]) -> None:
    s = r["steps"]
    print(
        f"{title}: {s['total']:.2f} s for {r['records']:,} records so far ({r['recounted']:,} recounted, "
        f"{r['reused']:,} reused) — collect {s['collect']:.2f}, parse {s['parse']:.2f}, "
        f"recount {s['recount']:.2f}, reconcile {s['reconcile']:.2f}, load {s['load']:.2f}"
    )


def main() -> None:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from sample_traffic import write_config

    ap = argparse.ArgumentParser()
    ap.add_argument("--per-hour", type=int, default=100_000)
    ap.add_argument("--dsn", default="host=127.0.0.1 port=5432 user=postgres dbname=test")
    args = ap.parse_args()
    name = f"llmtally_bench_intraday_{secrets.token_hex(3)}"
    admin = psycopg.connect(args.dsn, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(args.dsn)
    params["dbname"] = name
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            t = time.perf_counter()
            logs, hours = _write_logs(root, args.per_hour)
            os.environ.update(
                AIRFLOW_CONN_LLM_USAGE_DB=make_conninfo("", **params),
                LLMTALLY_LOG_DIRS=str(logs / "*"),
                LLMTALLY_CONFIG=str(write_config(root / "llmtally.toml", SHARED)),
                LLMTALLY_STAGING_DIR=str(root / "staging"),
                LLMTALLY_TIMEZONE=TZ,
            )
            print(
                f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
            )
            n1 = _grow(logs, hours, 0)
            print(f"logs: {n1:,} records in 10:00-11:00 written in {time.perf_counter() - t:.1f} s")
            first = _run(11, "scheduled__11", cache=True)
            _show("run at 11:00 (the first hour, cold)", first)
            n2 = _grow(logs, hours, 1)
            second = _run(12, "scheduled__12", cache=True)
            _show(f"run at 12:00 (+{n2:,} records in 11:00-12:00)", second)
            baseline = _run(12, "baseline__12", cache=False)
            _show("baseline: the 12:00 cut without the recount cache", baseline)
            ratio = baseline["steps"]["total"] / second["steps"]["total"]
            rec = baseline["steps"]["recount"] / max(second["steps"]["recount"], 1e-9)
            print(f"the 12:00 run vs the baseline: {ratio:.2f}x faster overall, recount {rec:.2f}x")
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


if __name__ == "__main__":
    main()
