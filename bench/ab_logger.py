"""The default burst of ``bench_logger.py``, this tree against an older commit, interleaved in one run.

    python bench/ab_logger.py [--base 0b80647] [--n 200000] [--rounds 2] [--encoder orjson|json]

The older commit's ``include/`` and ``bench/`` are exported with ``git archive`` into a temporary
folder; each round runs, for multi-turn and single-turn records, that tree's own
``bench_logger.bench_burst`` (defaults: queue 65,536, ``on_full="write"``, orjson where installed;
``--encoder json``: the writer forced to stdlib json, the base install) and then this tree's, each in a fresh interpreter, so both meet the machine in the same minutes.
Prints one JSON object: every burst's records/s, ``log()`` p50/p99, records on disk, and the load
average and a pure-Python calibration loop (ns per iteration: the machine's speed at that moment).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

BURST = """
import json, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, {bench!r})
import bench_logger as b
from _corpus import chats
from llmtally.logging import _build
_build.use_orjson = _build.use_orjson and {orjson!r}
t0 = time.perf_counter()
x = 0
for i in range(3_000_000):
    x += i
calib = (time.perf_counter() - t0) / 3_000_000 * 1e9
turns = (1, 4) if {kind!r} == "multi_turn" else (1, 1)
items = b._items(chats(2000, seed=11 if {kind!r} == "multi_turn" else 12, turns=turns))
with tempfile.TemporaryDirectory() as tmp:
    r = b.bench_burst(items, {n}, Path(tmp), "write")
print(json.dumps({{"records_per_s": round(r["records_per_s"]), "p50_us": round(r["log_us"]["p50"], 1),
                  "p99_us": round(r["log_us"]["p99"], 1), "written": r["written"], "dropped": r["dropped"],
                  "calibration_ns": round(calib, 1)}}))
"""


def run(tree: Path, kind: str, n: int, orjson: bool) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(tree / "include")}
    env.pop("LLMTALLY_LOG_MAX_QUEUE", None)
    env.pop("LLMTALLY_LOG_ON_FULL", None)
    code = BURST.format(bench=str(tree / "bench"), kind=kind, n=n, orjson=orjson)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    result["load_1min"] = round(os.getloadavg()[0], 2)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="0b80647")
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--encoder", choices=("orjson", "json"), default="orjson", help="json: the base install")
    args = ap.parse_args()
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", args.base, "include", "bench"],
            capture_output=True,
            check=True,
        )
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive.stdout, check=True)
        for rnd in range(args.rounds):
            for kind in ("multi_turn", "single_turn"):
                for name, tree in ((args.base, base), ("this tree", REPO)):
                    burst = run(tree, kind, args.n, args.encoder == "orjson")
                    rows.append({"round": rnd + 1, "kind": kind, "tree": name, **burst})
                    print(json.dumps(rows[-1]), file=sys.stderr)
    print(json.dumps({"n": args.n, "encoder": args.encoder, "bursts": rows}, indent=1))


if __name__ == "__main__":
    main()
