"""Usage logger: ``log()`` latency against the common recipe it replaces, and records/s written.

    python bench/bench_logger.py [--n 200000] [--recipe-n 300] [--dsn "host=127.0.0.1 dbname=test user=postgres"]

The recipe, per request, on the request path (what services do today):
``len(tokenizer.encode(prompt))`` and ``len(tokenizer.encode(response))`` with the Qwen3 tokenizer
(``tokenizers``), ``logging.info(str(dict))`` to a file, and a PostgreSQL connection per record
(connect, INSERT, commit, close).  llmtally: ``UsageLogger.log()`` of the same request (messages,
completion, reported usage, tags), writing JSON Lines files on its own thread.  Both run in this
process, on the same chats, in the same run.

The logger runs at the defaults a user gets (queue of 65,536, ``on_full="write"``: a burst of
``--n`` records overflows the queue and the caller builds the overflow itself, ``built_by_callers``),
with orjson where installed, and again with the writer forced to stdlib json (the base install); the
same burst
again with ``on_full="drop"`` for comparison: ``log()`` p50/p99/max over every call of the burst,
records/s from the first ``log()`` to the last record on disk (``close()`` returned), what was lost
and what the loss markers on disk say.  Both for multi-turn (~1.7 kB) and single-turn records.
Automatic GC stays on, with the pre-built request arguments frozen out of it (``gc.freeze``).
Non-default, named in the output: the writer's drain rate from a queue holding the whole burst, and
an asyncio loop's turnaround while the writer serialises (``MemorySink``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import platform
import shutil
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
from llmtally.logging import _build

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


def bench_burst(items: list[dict[str, Any]], n: int, directory: Path, on_full: str) -> dict[str, Any]:
    """An ``n``-record burst at the defaults (but ``on_full``): every ``log()`` timed, then records/s
    from the first call until ``close()`` has written everything."""
    logger = llmtally.UsageLogger(directory, service=f"burst-{on_full}", on_full=on_full)
    assert logger.max_queue_size == 65536 and logger.max_batch_size == 2048  # the defaults
    args = [_log_args(items[i % len(items)]) for i in range(n)]
    times = []
    perf = time.perf_counter
    log = logger.log
    gc.collect()
    gc.freeze()  # the pre-built requests are the bench's, not the host's: keep GC from scanning them
    start = perf()
    for a in args:
        t0 = perf()
        log(**a)
        times.append(perf() - t0)
    logged = perf()
    assert logger.close(300)
    end = perf()
    gc.unfreeze()
    stats = dict(logger.stats())
    marked = records = 0
    size = 0
    for path in directory.glob(f"usage-burst_{on_full}-*.jsonl"):
        data = path.read_bytes()
        size += len(data)
        for line in data.splitlines():
            if b'"kind":"loss"' in line:
                marked += json.loads(line)["records"]
            else:
                records += 1
    assert records == stats["written"] and marked == stats["dropped"]
    return {
        "on_full": on_full,
        "log_us": {"p50": _pct(times, 0.5) * 1e6, "p99": _pct(times, 0.99) * 1e6, "max": max(times) * 1e6},
        "records_per_s": stats["written"] / (end - start),
        "logging_s": logged - start,
        "to_disk_s": end - start,
        "written": stats["written"],
        "dropped": stats["dropped"],
        "in_loss_markers": marked,
        "built_by_callers": logger._spilled,
        "bytes_per_record": size / max(records, 1),
    }


def bench_drain(items: list[dict[str, Any]], n: int, directory: Path) -> float:
    """Records/s the writer drains from a queue holding the whole burst (non-default queue: n + 1)."""
    logger = llmtally.UsageLogger(directory, service="drain", max_queue_size=n + 1, schedule_delay=3600)
    for i in range(n):
        logger.log(**_log_args(items[i % len(items)]))
    t0 = time.perf_counter()
    assert logger.flush(None)
    drain = n / (time.perf_counter() - t0)
    logger.close()
    return drain


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
    for name in ("LLMTALLY_LOG_MAX_QUEUE", "LLMTALLY_LOG_ON_FULL"):  # the defaults a user gets
        os.environ.pop(name, None)
    items = _items(chats(2000, seed=11))
    short = _items(chats(2000, seed=12, turns=(1, 1)))
    bursts: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        recipe = bench_recipe(items, args.recipe_n, args.dsn, tmpdir / "recipe.log")
        for kind, corpus in (("multi_turn", items), ("single_turn", short)):
            for on_full in ("write", "drop"):
                folder = tmpdir / f"{kind}-{on_full}"
                folder.mkdir()
                bursts[f"{kind}/{on_full}"] = bench_burst(corpus, args.n, folder, on_full)
                shutil.rmtree(folder)
            if _build.use_orjson:  # the base install (no llmtally[fast]): stdlib json, same burst
                _build.use_orjson = False
                folder = tmpdir / f"{kind}-stdlib"
                folder.mkdir()
                try:
                    bursts[f"{kind}/write, stdlib json (base install)"] = bench_burst(
                        corpus, args.n, folder, "write"
                    )
                finally:
                    _build.use_orjson = True
                shutil.rmtree(folder)
        (tmpdir / "drain").mkdir()
        drain = bench_drain(items, args.n, tmpdir / "drain")
    loop = bench_loop(items, 40_000)
    default = bursts["multi_turn/write"]
    r50 = statistics.median(recipe)
    result = {
        "encoder": "orjson (llmtally[fast])" if _build.use_orjson else "stdlib json",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average": os.getloadavg(),
        "recipe_us": {"p50": r50 * 1e6, "p99": _pct(recipe, 0.99) * 1e6, "n": len(recipe)},
        "burst": bursts,
        "speedup_p50_default": r50 / (default["log_us"]["p50"] / 1e6),
        "non_default": {
            "writer_drain_per_s (max_queue_size=n+1, multi-turn)": drain,
            "event_loop_turnaround (MemorySink, max_queue_size=n+1)": loop,
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
