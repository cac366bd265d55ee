"""What the parser pays to derive ``prompt_sha256`` and ``prompt_chars`` of full-text records.

    python bench/bench_parse_derived.py [--n 100000] [--repeat 5]

The logger leaves both keys out of its full-text records (``llmtally._record``); the parser derives
them from the record's text.  One file of ``--n`` records as the logger writes them now (multi-turn
chats of ``bench/_corpus``, the same arguments as ``bench_logger.py``), and the same records with
both keys written in, as the logger wrote them before; ``DayParser`` over each, interleaved, best of
``--repeat``.  The difference is the derivation's cost per record.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import llmtally
from _corpus import chats
from bench_logger import _items, _log_args
from llmtally._record import prompt_chars, prompt_digest
from llmtally.pipeline import DayParser


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    items = _items(chats(2000, seed=11))
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp) / "logs"
        with llmtally.UsageLogger(
            logs, service="parse", max_queue_size=args.n + 1, max_file_bytes=2**40
        ) as lg:
            for i in range(args.n):
                lg.log(**_log_args(items[i % len(items)]))
        (lean,) = logs.iterdir()
        with_keys = Path(tmp) / "with-keys.jsonl"
        with lean.open("rb") as src, with_keys.open("wb") as dst:
            for line in src:
                rec = json.loads(line)
                rec["prompt_sha256"] = prompt_digest(rec["messages"], None, None)
                rec["prompt_chars"] = prompt_chars(rec["messages"])
                dst.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
        day = datetime.now(UTC).date()
        best = {"derived": float("inf"), "written": float("inf")}
        for _ in range(args.repeat):
            for name, path in (("derived", lean), ("written", with_keys)):
                parser = DayParser(day, "UTC")
                t0 = time.perf_counter()
                n = sum(1 for _ in parser.parse([path]))
                best[name] = min(best[name], (time.perf_counter() - t0) / n)
                assert n == args.n, n
    out = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "load_average": os.getloadavg(),
        "records": args.n,
        "parse_us_per_record": {k: round(v * 1e6, 2) for k, v in best.items()},
        "derivation_us_per_record": round((best["derived"] - best["written"]) * 1e6, 2),
        "records_per_s": {k: round(1 / v) for k, v in best.items()},
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
