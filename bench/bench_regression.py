"""This tree's pipeline steps against a baseline checkout of llmtally, on the same day of logs, A/B
interleaved in one run (a noisy machine slows both sides alike).

    git worktree add /tmp/llmtally-base <commit>
    python bench/bench_regression.py --baseline /tmp/llmtally-base [--records 20000] [--rounds 5]

One day of logs is written once by this tree's ``examples/sample_traffic.generate`` (real
``UsageLogger``).  Each round runs, in a fresh process per side (``PYTHONPATH=<tree>/include``):
``collect`` + ``parse_day``; ``reconcile`` with the shipped prices and no recounts (the recount is
measured by ``bench_pipeline.py``); ``PostgresStore.load_day`` into a scratch schema (first load,
then a re-load).  Parse and reconcile are timed in CPU seconds of the process (``process_time``:
less sensitive to other load on a shared machine), the loads in wall seconds (the server works
too).  Reported: the median over the rounds per side and the ratio this / baseline (> 1: this
tree is slower).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("LLMTALLY_SHARED", ROOT.parent / "shared")).resolve()
DAY = date(2026, 11, 20)
TZ = "Asia/Shanghai"

CHILD = r"""
import json, sys, time
from datetime import date
from llmtally.pipeline import collect, parse_day, reconcile
from llmtally.pricing import load_prices
from llmtally.store import PostgresStore
logs, dsn, schema = sys.argv[1:4]
day = date(2026, 11, 20)
t = time.process_time(); files = collect([logs + "/*"], day=day, tz="Asia/Shanghai")
parsed = parse_day(files.paths, day, "Asia/Shanghai"); t_parse = time.process_time() - t
prices = load_prices()
t = time.process_time()
load = reconcile(parsed.records, {}, day=day, tz="Asia/Shanghai", prices=prices, stats=parsed.stats,
                 quarantine=parsed.quarantine)
t_rec = time.process_time() - t
with PostgresStore(dsn, schema=schema) as store:
    t = time.perf_counter(); store.load_day(load); t_first = time.perf_counter() - t
    t = time.perf_counter(); store.load_day(load); t_reload = time.perf_counter() - t
    store._conn.execute(f"DROP SCHEMA {schema} CASCADE")
print(json.dumps({"records": parsed.stats.records, "parse": t_parse, "reconcile": t_rec,
                  "first load": t_first, "re-load": t_reload, "hourly rows": len(load.hourly)}))
"""


def _side(tree: Path, logs: Path, dsn: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree / "include")}
    schema = f"bench_{secrets.token_hex(4)}"
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(logs), dsn, schema],
        env=env, cwd=tree, capture_output=True, text=True, check=True,
    )  # fmt: skip
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", type=Path, required=True, help="a checkout of the baseline commit")
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dsn", default="host=127.0.0.1 port=5432 user=postgres dbname=test")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "examples"))
    from sample_traffic import _hourly_weight, generate

    with tempfile.TemporaryDirectory(prefix="bench-regression-") as tmp:
        logs = Path(tmp) / "logs"
        per_day = math.ceil(args.records * 14 / sum(_hourly_weight(h) for h in range(24)))
        generate(logs, 1, per_day, SHARED, end=DAY)
        runs: dict[str, list[dict[str, float]]] = {"baseline": [], "this": []}
        for _ in range(args.rounds):
            runs["baseline"].append(_side(args.baseline.resolve(), logs, args.dsn))
            runs["this"].append(_side(ROOT, logs, args.dsn))
    steps = ["parse", "reconcile", "first load", "re-load"]
    med = {side: {s: statistics.median(r[s] for r in rs) for s in steps} for side, rs in runs.items()}
    n = int(runs["this"][0]["records"])
    rows = (int(runs["baseline"][0]["hourly rows"]), int(runs["this"][0]["hourly rows"]))
    print(
        f"{n:,} records; hourly rows baseline {rows[0]:,}, this {rows[1]:,}; {args.rounds} rounds, A/B interleaved"
    )
    print("| step (parse, reconcile: CPU s; loads: wall s) | baseline s | this s | this / baseline |")
    print("|---|---|---|---|")
    for s in steps:
        print(
            f"| {s} | {med['baseline'][s]:.3f} | {med['this'][s]:.3f} | {med['this'][s] / med['baseline'][s]:.2f} |"
        )


if __name__ == "__main__":
    main()
