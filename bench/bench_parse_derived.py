"""What the parser pays to derive ``prompt_sha256`` and ``prompt_chars`` of full-text records.

    python bench/bench_parse_derived.py [--n 100000] [--repeat 5] [--corpus chats|pipeline]

The logger leaves both keys out of its full-text records (``llmtally._record``); the parser derives
them from the record's text.  One file of ``--n`` records as the logger writes them now (multi-turn
chats of ``bench/_corpus``, the same arguments as ``bench_logger.py``: 1.6 kB lines, the larger
records of the two), and the same records with both keys written in, as the logger wrote them
before.  ``DayParser`` over the first with the derivation, over the first with the derivation
switched off, and over the second; interleaved, ``--repeat`` times, CPU time of this process (the
machine is shared), minimum and median per record.  The derivation's cost is the first minus the
second.  ``--corpus pipeline``: the day ``bench_pipeline.py`` parses instead (``--n`` records,
``examples/sample_traffic``: chats, a tool, a few recipe lines; tokenizers from ``$LLMTALLY_SHARED``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import llmtally
from _corpus import chats
from bench_logger import _items, _log_args
from llmtally._record import prompt_chars, prompt_digest
from llmtally.pipeline import DayParser, collect
from llmtally.pipeline import parse as parse_module

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("LLMTALLY_SHARED", REPO.parent / "shared"))
DAY, TZ = date(2026, 11, 20), "Asia/Shanghai"


def _nothing(*args: object, **kwargs: object) -> tuple[None, None]:
    return None, None


def _chat_files(n: int, tmp: Path) -> tuple[list[Path], list[Path] | None, date, str]:
    items = _items(chats(2000, seed=11))
    logs = tmp / "logs"
    with llmtally.UsageLogger(logs, service="parse", max_queue_size=n + 1, max_file_bytes=2**40) as lg:
        for i in range(n):
            lg.log(**_log_args(items[i % len(items)]))
    (lean,) = logs.iterdir()
    with_keys = tmp / "with-keys.jsonl"
    with lean.open("rb") as src, with_keys.open("wb") as dst:
        for line in src:
            rec = json.loads(line)
            rec["prompt_sha256"] = prompt_digest(rec["messages"], None, None)
            rec["prompt_chars"] = prompt_chars(rec["messages"])
            dst.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
    return [lean], [with_keys], datetime.now(UTC).date(), "UTC"


def _pipeline_files(n: int, tmp: Path) -> tuple[list[Path], list[Path] | None, date, str]:
    """The day ``bench_pipeline.py`` parses (``examples/sample_traffic``, ~``n`` records)."""
    sys.path.insert(0, str(REPO / "examples"))
    from sample_traffic import _hourly_weight, generate, write_config

    os.environ["LLMTALLY_CONFIG"] = str(write_config(tmp / "llmtally.toml", SHARED))
    generate(tmp / "logs", 1, math.ceil(n * 14 / sum(_hourly_weight(h) for h in range(24))), SHARED, end=DAY)
    return collect([str(tmp / "logs" / "*")], day=DAY, tz=TZ).paths, None, DAY, TZ


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--corpus", choices=("chats", "pipeline"), default="chats")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        make = _chat_files if args.corpus == "chats" else _pipeline_files
        lean, with_keys, day, tz = make(args.n, Path(tmp))
        runs = [("derived", lean), ("not derived", lean)] + ([("written", with_keys)] if with_keys else [])
        times: dict[str, list[float]] = {name: [] for name, _ in runs}
        real = parse_module.derived_prompt_fields
        for _ in range(args.repeat):
            for name, paths in runs:
                parse_module.derived_prompt_fields = real if name != "not derived" else _nothing
                parser = DayParser(day, tz)
                t0 = time.process_time()
                count = sum(1 for _ in parser.parse(paths))
                times[name].append((time.process_time() - t0) / count)
        parse_module.derived_prompt_fields = real
    us = {
        k: {"min": round(min(v) * 1e6, 2), "median": round(statistics.median(v) * 1e6, 2)}
        for k, v in times.items()
    }
    out = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "load_average": os.getloadavg(),
        "corpus": args.corpus,
        "records": count,
        "parse_cpu_us_per_record": us,
        "derivation_us_per_record": {
            k: round(us["derived"][k] - us["not derived"][k], 2) for k in ("min", "median")
        },
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
