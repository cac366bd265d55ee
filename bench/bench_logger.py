"""Usage logger: ``log()`` latency against the common recipe it replaces, and records/s written.

    python bench/bench_logger.py [--n 200000] [--recipe-n 300] [--dsn "host=127.0.0.1 dbname=test user=postgres"]

The recipe, per request, on the request path (what services do today):
``len(tokenizer.encode(prompt))`` and ``len(tokenizer.encode(response))`` with the Qwen3 tokenizer
(``tokenizers``), ``logging.info(str(dict))`` to a file, and a PostgreSQL connection per record
(connect, INSERT, commit, close).  llmtally: ``UsageLogger.log()`` of the same request (messages,
completion, reported usage, tags), writing JSON Lines files on its own thread.  Both run in this
process, on the same chats, in the same run.  Also measured: how long an asyncio loop waits on a
turn while the writer serialises (the loop's worst turnaround).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from tokenizers import Tokenizer

import llmtally
from _corpus import chats

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("LLMTALLY_SHARED", REPO.parent / "shared"))


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def bench_recipe(items: list[dict[str, Any]], n: int, dsn: str, log_path: Path) -> list[float]:
    tokenizer = Tokenizer.from_file(str(SHARED / "tokenizers" / "qwen3" / "tokenizer.json"))
    log = logging.getLogger("recipe")
    log.propagate = False
    handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s - %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_recipe_usage (ts double precision, prompt text, "
            "prompt_tokens int, completion_tokens int, total_tokens int)"
        )
    times = []
    try:
        for i in range(n):
            item = items[i % len(items)]
            prompt, response = item["prompt"], item["completion"]
            t0 = time.perf_counter()
            # --- the recipe -------------------------------------------------------------------
            p = len(tokenizer.encode(prompt).ids)
            c = len(tokenizer.encode(response).ids)
            record = {"prompt": prompt[:50], "prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c,
                      "timestamp": time.time()}  # fmt: skip
            log.info(str(record))
            with psycopg.connect(dsn) as conn:
                conn.execute(
                    "INSERT INTO bench_recipe_usage VALUES (%s, %s, %s, %s, %s)",
                    (record["timestamp"], record["prompt"], p, c, p + c),
                )
            # -----------------------------------------------------------------------------------
            times.append(time.perf_counter() - t0)
    finally:
        log.removeHandler(handler)
        handler.close()
        with psycopg.connect(dsn) as conn:
            conn.execute("DROP TABLE IF EXISTS bench_recipe_usage")
    return times


def _log_args(item: dict[str, Any]) -> dict[str, Any]:
    return {"model": "qwen3-8b", "messages": item["messages"], "completion": item["completion"],
            "usage": item["usage"], "latency_ms": 420.0, "tags": {"feature": "chat", "user": "u001"}}  # fmt: skip


def bench_log_latency(
    items: list[dict[str, Any]], n: int, directory: Path
) -> tuple[list[float], dict[str, int]]:
    logger = llmtally.UsageLogger(directory, service="bench", max_queue_size=n + 1)
    args = [_log_args(items[i % len(items)]) for i in range(n)]
    times = []
    perf = time.perf_counter
    log = logger.log
    for a in args:
        t0 = perf()
        log(**a)
        times.append(perf() - t0)
    logger.close(120)
    return times, dict(logger.stats())


def bench_written(items: list[dict[str, Any]], n: int, directory: Path) -> tuple[float, float, int]:
    """(records/s the writer drains from a full queue, records/s sustained end to end, bytes)."""
    logger = llmtally.UsageLogger(directory, service="drain", max_queue_size=n + 1, schedule_delay=3600)
    args = [_log_args(items[i % len(items)]) for i in range(n)]
    for a in args:
        logger.log(**a)
    t0 = time.perf_counter()
    assert logger.flush(None)
    drain = n / (time.perf_counter() - t0)
    logger.close()
    sustained_logger = llmtally.UsageLogger(directory, service="sustained", max_queue_size=n + 1)
    t0 = time.perf_counter()
    for a in args:
        sustained_logger.log(**a)
    assert sustained_logger.flush(None)
    sustained = n / (time.perf_counter() - t0)
    sustained_logger.close()
    assert sustained_logger.stats()["written"] == n
    size = sum(p.stat().st_size for p in directory.glob("usage-drain-*"))
    return drain, sustained, size


def bench_loop(items: list[dict[str, Any]], n: int) -> dict[str, float]:
    logger = llmtally.UsageLogger(service="loop", sink=llmtally.logging.MemorySink(), max_queue_size=n + 1)
    gaps: list[float] = []

    async def handler(k: int, offset: int) -> None:
        for i in range(k):
            logger.log(**_log_args(items[(offset + i) % len(items)]))
            await asyncio.sleep(0)

    async def ticker(stop: asyncio.Event) -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    async def main() -> None:
        stop = asyncio.Event()
        tick = asyncio.create_task(ticker(stop))
        await asyncio.gather(*(handler(n // 4, j) for j in range(4)))
        stop.set()
        await tick

    gc.collect()
    gc.disable()  # a full collection pauses every thread; it is the host's, reported separately
    try:
        asyncio.run(main())
    finally:
        gc.enable()
    logger.close(60)
    return {"turns": len(gaps), "p99_us": _pct(gaps, 0.99) * 1e6, "p999_us": _pct(gaps, 0.999) * 1e6,
            "max_us": max(gaps) * 1e6, "over_1ms": sum(g >= 1e-3 for g in gaps)}  # fmt: skip


def _items(corpus: list[dict[str, Any]]) -> list[dict[str, Any]]:
    items = []
    for i, chat in enumerate(corpus):
        messages = chat["messages"]
        prompt = "\n".join(str(m.get("content") or "") for m in messages)
        completion = f"好的，这是第 {i} 个回答：会议改到下午三点，请注意查收邮件。"
        usage = {"prompt_tokens": 20 + i % 300, "completion_tokens": 20, "total_tokens": 40 + i % 300}
        items.append({"messages": messages, "prompt": prompt, "completion": completion, "usage": usage})
    return items


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--recipe-n", type=int, default=300)
    ap.add_argument(
        "--dsn", default=os.environ.get("BENCH_DSN", "host=127.0.0.1 port=5432 dbname=test user=postgres")
    )
    args = ap.parse_args()
    items = _items(chats(2000, seed=11))
    short = _items(chats(2000, seed=12, turns=(1, 1)))
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        recipe = bench_recipe(items, args.recipe_n, args.dsn, tmpdir / "recipe.log")
        (tmpdir / "lat").mkdir()
        ours, stats = bench_log_latency(items, args.n, tmpdir / "lat")
        (tmpdir / "w").mkdir()
        drain, sustained, size = bench_written(items, args.n, tmpdir / "w")
        (tmpdir / "s").mkdir()
        s_drain, s_sustained, s_size = bench_written(short, args.n, tmpdir / "s")
    loop = bench_loop(items, 40_000)
    r50, o50 = statistics.median(recipe), statistics.median(ours)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "recipe_us": {"p50": r50 * 1e6, "p99": _pct(recipe, 0.99) * 1e6, "n": len(recipe)},
        "log_us": {"p50": o50 * 1e6, "p99": _pct(ours, 0.99) * 1e6, "n": len(ours)},
        "speedup_p50": r50 / o50,
        "written_per_s": {"drain": drain, "sustained": sustained, "bytes_per_record": size / args.n},
        "written_per_s_single_turn": {
            "drain": s_drain,
            "sustained": s_sustained,
            "bytes_per_record": s_size / args.n,
        },
        "logger_stats": stats,
        "event_loop_turnaround": loop,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
