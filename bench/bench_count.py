"""Batch chat-counting throughput: llmtally vs raw ``tokenizers`` and transformers, same inputs, same run.

    python bench/bench_count.py [--n 4000] [--family qwen3]

Baselines:
* raw ``tokenizers.Tokenizer.encode_batch`` over the already-rendered prompt strings (an upper bound:
  it skips template rendering entirely);
* transformers ``apply_chat_template(tokenize=True)`` over the same chats (the usual exact path).
llmtally's ``count_batch`` renders each template and encodes; counts are checked equal to transformers'.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _corpus import chats, logged_requests
from llmtally.tokens import load_hf_folder

SHARED = Path(os.environ.get("LLMTALLY_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def best_of(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--family", default="qwen3")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--corpus", choices=["chats", "logged"], default="logged")
    args = ap.parse_args()
    folder = SHARED / "tokenizers" / args.family
    corpus = chats(args.n) if args.corpus == "chats" else logged_requests(args.n)
    ours = load_hf_folder(folder)
    rendered = [ours.render(c["messages"]) for c in corpus]
    mb = sum(len(r.encode()) for r in rendered) / 1e6

    import transformers

    ref = transformers.AutoTokenizer.from_pretrained(str(folder))
    raw = ours.backend

    counts = ours.count_batch(corpus)
    tokens = sum(counts)
    t_ours = best_of(lambda: ours.count_batch(corpus), args.repeat)  # warm segment cache
    t_cold = best_of(lambda: load_hf_folder(folder).count_batch(corpus), args.repeat)  # incl. load
    t_load = best_of(lambda: load_hf_folder(folder), args.repeat)
    t_cold -= t_load
    t_nocache = (
        best_of(lambda: load_hf_folder(folder, segment_cache=False).count_batch(corpus), args.repeat) - t_load
    )
    t_raw = best_of(lambda: raw.encode_batch(rendered, add_special_tokens=False), args.repeat)
    t_raw_fast = best_of(lambda: raw.encode_batch_fast(rendered, add_special_tokens=False), args.repeat)

    def hf() -> list[int]:
        return [
            len(
                ref.apply_chat_template(
                    c["messages"], add_generation_prompt=True, tokenize=True, return_dict=False
                )
            )
            for c in corpus
        ]

    hf_counts = hf()
    assert hf_counts == counts, "llmtally and transformers disagree"
    t_hf = best_of(hf, 1)
    t_render = best_of(lambda: [ours.render(c["messages"]) for c in corpus], args.repeat)

    print(
        f"# {args.family}, {args.corpus}: {len(corpus)} chats, {mb:.2f} MB rendered, {tokens} tokens, {os.cpu_count()} cores"
    )
    print("| path | s | MB/s | tokens/s | vs raw encode_batch |")
    print("|---|---|---|---|---|")
    for name, t in [
        ("raw tokenizers encode_batch (pre-rendered)", t_raw),
        ("raw tokenizers encode_batch_fast (pre-rendered)", t_raw_fast),
        ("llmtally count_batch, cold segment cache", t_cold),
        ("llmtally count_batch, warm segment cache", t_ours),
        ("llmtally count_batch, segment cache off", t_nocache),
        ("transformers apply_chat_template", t_hf),
        ("(template rendering alone)", t_render),
    ]:
        print(f"| {name} | {t:.3f} | {mb / t:.2f} | {tokens / t:,.0f} | {t_raw / t:.2f}x |")
    print(f"\nllmtally vs transformers: {t_hf / t_ours:.1f}x faster; counts identical: {hf_counts == counts}")
    _ = statistics


if __name__ == "__main__":
    main()
