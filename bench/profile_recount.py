"""Where CPU recount time goes: template rendering, normalisation, pre-tokenisation, BPE, Python.

    python bench/profile_recount.py [--n 3000] [--family qwen3]

Runs on ONE core (``TOKENIZERS_PARALLELISM=false`` before ``tokenizers`` is imported) so the stage
times add up; an all-core line is printed for reference.  Each Rust stage is timed by encoding the
same rendered prompts with auxiliary tokenizers built from the model's own ``tokenizer.json`` that
stop after a stage (a one-entry WordLevel model maps every pre-token to ``<unk>`` so the merges are
skipped); a stage's cost is the difference to the previous one.  The corpus is
``_corpus.day_of_logs`` (re-sent chat requests + code/tool chats, Chinese and English).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ONE_CORE = "--all-cores" not in sys.argv
if ONE_CORE:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "tiktoken"))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tokenizers import Tokenizer  # noqa: E402  (after TOKENIZERS_PARALLELISM is set)

from _corpus import day_of_logs  # noqa: E402
from llmtally.tokens import load_hf_folder  # noqa: E402

SHARED = Path(os.environ.get("LLMTALLY_SHARED", Path(__file__).resolve().parents[2] / "shared"))
UNK = "\x00llmtally-unk"


def best_of(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def aux_tokenizer(spec: dict[str, Any], *, normalizer: bool, pre: str) -> Tokenizer:
    """The model's tokenizer.json with the BPE model replaced by a one-word WordLevel (no merges).

    ``pre``: ``none`` (no pre-tokeniser), ``split`` (its regex Split steps only) or ``full``.
    """
    s = json.loads(json.dumps(spec))
    s["model"] = {"type": "WordLevel", "vocab": {UNK: 0}, "unk_token": UNK}
    s["post_processor"] = None
    s["decoder"] = None
    if not normalizer:
        s["normalizer"] = None
    pt = s.get("pre_tokenizer")
    if pre == "none":
        s["pre_tokenizer"] = None
    elif pre == "split" and pt and pt.get("type") == "Sequence":
        pt["pretokenizers"] = [p for p in pt["pretokenizers"] if p.get("type") != "ByteLevel"]
    # added tokens keep their ids; WordLevel does not know them, so the vocabulary gets them
    s["model"]["vocab"].update({t["content"]: t["id"] for t in s["added_tokens"]})
    return Tokenizer.from_str(json.dumps(s))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--family", default="qwen3")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--all-cores", action="store_true", help="(internal) print the all-core line only")
    args = ap.parse_args()
    folder = SHARED / "tokenizers" / args.family
    corpus = day_of_logs(args.n)
    counter = load_hf_folder(folder, segment_cache=False)
    tok = counter.backend
    spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))

    def render() -> list[str]:
        return [counter.render(c["messages"], tools=c.get("tools")) for c in corpus]

    rendered = render()
    mb = sum(len(r.encode()) for r in rendered) / 1e6

    def enc(t: Tokenizer) -> Callable[[], object]:
        return lambda: t.encode_batch_fast(rendered, add_special_tokens=False)

    if args.all_cores:
        t_all = best_of(enc(tok), args.repeat)
        print(json.dumps({"encode_batch_fast_all_cores": t_all, "mb": mb}))
        return

    t_render = best_of(render, args.repeat)
    t_null = best_of(enc(aux_tokenizer(spec, normalizer=False, pre="none")), args.repeat)
    t_norm = best_of(enc(aux_tokenizer(spec, normalizer=True, pre="none")), args.repeat)
    t_split = best_of(enc(aux_tokenizer(spec, normalizer=True, pre="split")), args.repeat)
    t_pre = best_of(enc(aux_tokenizer(spec, normalizer=True, pre="full")), args.repeat)
    t_full = best_of(enc(tok), args.repeat)  # BPE with the library's own word cache (10,000 words)
    tok.model._resize_cache(0)
    t_nocache = best_of(enc(tok), args.repeat)
    tok.model._resize_cache(10_000)
    # rendering then encoding, one after the other (count_batch overlaps them on two threads)
    t_seq = best_of(lambda: counter._lengths(render()), args.repeat)
    t_batch = best_of(lambda: counter.count_batch(corpus), args.repeat)  # segment cache off
    seg = load_hf_folder(folder)
    t_seg = best_of(lambda: load_hf_folder(folder).count_batch(corpus), args.repeat) - best_of(
        lambda: load_hf_folder(folder), args.repeat
    )
    assert seg.count_batch(corpus) == counter.count_batch(corpus)
    pretokens = [
        p
        for r in rendered
        for p, _ in tok.pre_tokenizer.pre_tokenize_str(
            tok.normalizer.normalize_str(r) if tok.normalizer else r
        )
    ]
    distinct = len(set(pretokens))
    t_py = t_seq - t_render - t_full
    all_cores = json.loads(
        subprocess.run(
            [sys.executable, __file__, "--all-cores", "--n", str(args.n), "--family", args.family],
            capture_output=True,
            text=True,
            check=True,
            env={k: v for k, v in os.environ.items() if k != "TOKENIZERS_PARALLELISM"},
        ).stdout
    )["encode_batch_fast_all_cores"]

    print(
        f"# {args.family}, day_of_logs({args.n}): {len(corpus)} requests, {mb:.2f} MB rendered, "
        f"{len(pretokens):,} pre-tokens ({distinct:,} distinct), one core of {os.cpu_count()}"
    )
    rows = [
        ("template rendering (Jinja2, Python)", t_render),
        ("added-token split + encoding overhead (Rust)", t_null),
        ("normalisation", t_norm - t_null),
        ("pre-tokenisation: regex split", t_split - t_norm),
        ("pre-tokenisation: byte-level mapping", t_pre - t_split),
        ("BPE merges (library word cache on)", t_full - t_pre),
        ("Python glue (Encoding objects, id lists, len)", t_py),
    ]
    total = sum(t for _, t in rows)
    print("| stage | s | share |")
    print("|---|---|---|")
    for name, t in rows:
        print(f"| {name} | {t:.3f} | {100 * t / total:.0f} % |")
    print(f"| **sum = render, then encode, one core, segment cache off** | {total:.3f} | 100 % |")
    print()
    print(f"count_batch, segment cache off (rendering overlaps encoding on a second thread): {t_batch:.3f} s")
    print(f"BPE merges with the library's word cache off: {t_nocache - t_pre:.3f} s")
    print(f"count_batch with segment cache (one core): {t_seg:.3f} s = {mb / t_seg:.2f} MB/s")
    print(
        f"raw encode_batch_fast one core: {t_full:.3f} s = {mb / t_full:.2f} MB/s; all cores: {all_cores:.3f} s = {mb / all_cores:.2f} MB/s"
    )


if __name__ == "__main__":
    main()
