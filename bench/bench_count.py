"""Batch chat-counting throughput: llmtally vs raw ``tokenizers`` and transformers, same inputs, same run.

    python bench/bench_count.py [--n 4000] [--family qwen3] [--corpus logged|chats]
        [--engines tokenizers,cached,fast] [--renderers sandbox,minijinja] [--repeat 3]

Baselines:
* raw ``tokenizers.Tokenizer.encode_batch`` over the already-rendered prompt strings (an upper bound:
  it skips template rendering entirely);
* transformers ``apply_chat_template(tokenize=True)`` over the same chats (the usual exact path).
llmtally's ``count_batch`` renders each template and encodes; counts are checked equal to transformers'.

A second table puts the recount engines side by side in the same run, on the same inputs: every
``--engines`` entry (``tokenizers``, ``cached``, ``fast``) x every ``--renderers`` entry (the Jinja2
``sandbox``, ``minijinja``), each from a fresh counter (``cached`` with an empty on-disk cache), timed
cold (first ``count_batch``: empty segment cache, engine load excluded, the template's compile and
self-check included) and warm (the same call again).  Each round times raw ``encode_batch`` and then
every row once (best of ``--repeat``), so the ratios in that table are same-round; every row's
counts are asserted equal to transformers'.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _corpus import chats, logged_requests
from llmtally.tokens import load_engine, load_hf_folder

SHARED = Path(os.environ.get("LLMTALLY_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def best_of(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _engine_counter(folder: Path, engine: str, renderer: str, cache_dir: str):  # type: ignore[no-untyped-def]
    os.environ["LLMTALLY_TEMPLATE_RENDERER"] = renderer  # read when the chat template is built
    try:
        eng = load_engine(load_hf_folder(folder), engine, "cpu", cache_dir=cache_dir)
    finally:
        os.environ.pop("LLMTALLY_TEMPLATE_RENDERER", None)
    return eng


def engines_side_by_side(
    folder: Path,
    corpus: list[dict[str, Any]],
    want: list[int],
    engines: list[str],
    renderers: list[str],
    repeat: int,
    raw: Callable[[], object],
) -> tuple[float, list[tuple[str, float, float, str]]]:
    """Best ``raw()`` time, and (label, best cold s, best warm s, engine actually used) per engine x
    renderer; each round times ``raw`` and then every row once, so load changes hit all alike."""
    combos = [(e, r) for e in engines for r in renderers]
    cold = [float("inf")] * len(combos)
    warm = [float("inf")] * len(combos)
    used = [""] * len(combos)
    t_raw = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        raw()
        t_raw = min(t_raw, time.perf_counter() - t0)
        for i, (engine, renderer) in enumerate(combos):
            with tempfile.TemporaryDirectory() as cache_dir:  # a cold on-disk cache for ``cached``
                eng = _engine_counter(folder, engine, renderer, cache_dir)
                for j in range(2):
                    t0 = time.perf_counter()
                    got = eng.count_batch(corpus)
                    t = time.perf_counter() - t0
                    assert got == want, f"engine {engine}, renderer {renderer}: counts differ"
                    if j == 0:
                        cold[i] = min(cold[i], t)
                    else:
                        warm[i] = min(warm[i], t)
                used[i] = eng.engine + (f" (fell back: {eng.fallback})" if eng.fallback else "")
    return t_raw, [
        (f"engine {e}, renderer {r}", cold[i], warm[i], used[i]) for i, (e, r) in enumerate(combos)
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--family", default="qwen3")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--corpus", choices=["chats", "logged"], default="logged")
    ap.add_argument("--engines", default="tokenizers,cached,fast", help="comma-separated; empty: skip")
    ap.add_argument("--renderers", default="sandbox,minijinja")
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
    engines = [e for e in args.engines.split(",") if e]
    if engines:
        t_raw_rounds, rows = engines_side_by_side(
            folder,
            corpus,
            hf_counts,
            engines,
            args.renderers.split(","),
            args.repeat,
            lambda: raw.encode_batch(rendered, add_special_tokens=False),
        )
        print(f"\n## engines side by side (interleaved, best of {args.repeat}; counts == transformers)\n")
        print("| path | cold s | cold MB/s | warm s | warm MB/s | cold vs raw encode_batch | engine used |")
        print("|---|---|---|---|---|---|---|")
        r = t_raw_rounds
        print(
            f"| raw tokenizers encode_batch (pre-rendered), same rounds | {r:.3f} | {mb / r:.2f} | | | 1.00x | |"
        )
        for label, tc, tw, used in rows:
            print(
                f"| {label} | {tc:.3f} | {mb / tc:.2f} | {tw:.3f} | {mb / tw:.2f} | {r / tc:.2f}x | {used} |"
            )
    _ = statistics


if __name__ == "__main__":
    main()
