"""Recount engines on one day of logs: throughput of every path, cold and warm, counts checked identical.

    python bench/bench_engines.py [--n 3000] [--model ../shared/tokenizers/qwen3] [--device auto]

Paths: (a) ``tokenizers`` one core (``encode`` per record, templates rendered), (b) ``tokenizers``
all cores (``count_batch``: segment cache + ``encode_batch_fast``), (c) ``cached`` (pre-token cache,
misses merged by the library on CPU), (d) ``gpu`` (pre-token cache, misses merged by torch) on
``cpu`` and on ``cuda`` when torch sees one, (e) ``fast`` (kitoken or bpe-openai, self-checked; see
``bench_fast.py``).  Chat templates render with the default renderer (minijinja where exact).
"cold": a fresh engine with an empty cache dir; "warm": the same engine again (its caches filled).
MB are UTF-8 bytes of the rendered prompts.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "tiktoken"))
from _corpus import day_of_logs
from llmtally.tokens import HFCounter, load_engine, load_hf_folder, load_tokenizer

SHARED = Path(os.environ.get("LLMTALLY_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--model", default=str(SHARED / "tokenizers" / "qwen3"))
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = ap.parse_args()
    corpus = day_of_logs(args.n)
    base = load_tokenizer(args.model)
    if isinstance(base, HFCounter):
        rendered = [base.render_item(c) for c in corpus]
        mb = sum(len(r.encode()) for r in rendered) / 1e6
        tok = base.backend

        def one_core() -> list[int]:
            return [len(tok.encode(base.render_item(c), add_special_tokens=False).ids) for c in corpus]
    else:
        mb = sum(len(m["content"].encode()) for c in corpus for m in c["messages"]) / 1e6
        enc = base.encoding  # type: ignore[attr-defined]

        def one_core() -> list[int]:  # tiktoken encode_ordinary per text, one thread
            out = []
            for c in corpus:
                tally = base._messages(c["messages"], c.get("tools"), None, True)  # type: ignore[attr-defined]
                out.append(tally.fixed + sum(len(enc.encode_ordinary(t)) for t in tally.texts))
            return out

    expected = base.count_batch(corpus)
    import torch

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and args.device != "cpu" else [])
    card = torch.cuda.get_device_name(0) if "cuda" in devices else "none"
    print(
        f"# {args.model}: day_of_logs({args.n}) {len(corpus)} records, {mb:.2f} MB, {sum(expected):,} tokens"
    )
    print(f"# {os.cpu_count()} CPU cores, GPU: {card}, torch {torch.__version__}")
    print("| path | cold MB/s | cold records/s | warm MB/s | warm records/s | counts identical |")
    print("|---|---|---|---|---|---|")

    t0 = time.perf_counter()
    got = one_core()
    t = time.perf_counter() - t0
    print(
        f"| (a) tokenizers, one core (encode per record) | {mb / t:.2f} | {len(corpus) / t:,.0f} | – | – | {got == expected} |"
    )
    runs = [
        ("(b) tokenizers, all cores (count_batch)", "tokenizers", "cpu"),
        ("(c) cached, CPU", "cached", "cpu"),
    ]
    runs += [(f"(d) gpu engine, torch on {d}", "gpu", d) for d in devices]
    runs += [("(e) fast (kitoken / bpe-openai), all cores", "fast", "cpu")]
    for label, engine, device in runs:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            # a fresh counter: the registry's is the one `expected` warmed (its segment cache)
            fresh = load_hf_folder(args.model) if Path(args.model).is_dir() else args.model
            eng = load_engine(fresh, engine, device, cache_dir=tmp)
            t_load = time.perf_counter() - t0
            t0 = time.perf_counter()
            cold = eng.count_batch(corpus)
            t_cold = time.perf_counter() - t0
            t0 = time.perf_counter()
            warm = eng.count_batch(corpus)
            t_warm = time.perf_counter() - t0
            eng.close()
        if eng.fallback is not None:
            label += f" (fell back: {eng.fallback})"
        same = cold == expected and warm == expected
        print(
            f"| {label} | {mb / t_cold:.2f} | {len(corpus) / t_cold:,.0f} | {mb / t_warm:.2f} | "
            f"{len(corpus) / t_warm:,.0f} | {same} |  (load {t_load:.2f} s)"
        )
        assert same, f"{label}: counts differ"


if __name__ == "__main__":
    main()
