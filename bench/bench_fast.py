"""Faster exact engines (issue 12): kitoken / bpe-openai vs tokenizers / tiktoken, minijinja vs the sandbox.

    python bench/bench_fast.py [--n 3000] [--families qwen3,llama3_1,deepseek_v3] [--openai gpt-4o,gpt-4]

Runs itself twice -- pinned to one CPU (``sched_setaffinity``, so ``tokenizers``' thread pool,
kitoken's threads and everything else get one core) and on all cores -- and prints one table per
run.  Every row counts the same inputs (``day_of_logs(n)``) and the script asserts its counts equal
the baseline's.  Ratios are against row (a), raw ``tokenizers`` ``encode`` per rendered prompt in
the same run (for OpenAI: tiktoken ``encode_ordinary`` per message text), which skips rendering.
Rows run interleaved (round after round, best of ``--repeat``) so load on a shared machine hits all
rows alike.

Rows (HF): (a) raw tokenizers ``encode`` per prompt, (b) raw ``encode_batch_fast``, (c) raw kitoken
``encode_all`` in the calling thread, (d) rendering alone, sandbox and minijinja, (e)-(h)
``count_batch`` end to end (template included, cold segment cache: a fresh counter per repeat) for
engine ``tokenizers`` / ``fast`` x renderer ``sandbox`` / ``minijinja``.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
SHARED = Path(os.environ.get("LLMTALLY_SHARED", Path(__file__).resolve().parents[2] / "shared"))
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED / "tiktoken"))


Job = tuple[str, Callable[[], Any], Callable[[Any], Any]]  # label, setup (untimed), timed step


def interleaved(jobs: list[Job], repeat: int) -> list[tuple[str, float, Any]]:
    """Best time of each job over ``repeat`` rounds; a round runs every job once, in turn, so a load
    change on a shared machine hits all rows alike."""
    best = [float("inf")] * len(jobs)
    outs: list[Any] = [None] * len(jobs)
    for _ in range(repeat):
        for i, (_label, setup, step) in enumerate(jobs):
            arg = setup()
            t0 = time.perf_counter()
            outs[i] = step(arg)
            best[i] = min(best[i], time.perf_counter() - t0)
    return [(label, t, out) for (label, _, _), t, out in zip(jobs, best, outs, strict=True)]


def _fresh_counter(folder: Path, renderer: str, engine: str | None = None) -> Any:
    from llmtally.tokens import load_engine, load_hf_folder

    os.environ["LLMTALLY_TEMPLATE_RENDERER"] = renderer  # read when the chat template is built
    try:
        counter = load_hf_folder(folder)
        return load_engine(counter, engine, "cpu") if engine is not None else counter
    finally:
        os.environ.pop("LLMTALLY_TEMPLATE_RENDERER", None)


def run_family(family: str, corpus: list[dict[str, Any]], repeat: int) -> list[tuple[str, float, float]]:
    from kitoken import Kitoken

    from llmtally.tokens import load_hf_folder

    folder = SHARED / "tokenizers" / family
    base = load_hf_folder(folder)
    rendered = [base.render_item(c) for c in corpus]
    tok = base.backend
    kt = Kitoken.from_tokenizers(tok.to_str().encode())
    want = [len(tok.encode(r, add_special_tokens=False).ids) for r in rendered]
    none: Callable[[], Any] = lambda: None  # noqa: E731
    jobs: list[Job] = [
        (
            "(a) raw tokenizers `encode` per prompt (baseline)",
            none,
            lambda _: [len(tok.encode(r, add_special_tokens=False).ids) for r in rendered],
        ),
        (
            "(b) raw tokenizers `encode_batch_fast`",
            none,
            lambda _: [len(e.ids) for e in tok.encode_batch_fast(rendered, add_special_tokens=False)],
        ),
        (
            "(c) raw kitoken `encode_all` (calling thread)",
            none,
            lambda _: [len(x) for x in kt.encode_all(rendered, True)],
        ),
    ]
    for renderer in ("sandbox", "minijinja"):
        jobs.append(
            (
                f"(d) rendering alone, {renderer}",
                lambda r=renderer: _fresh_counter(folder, r),
                lambda c: [c.render_item(x) for x in corpus],
            )
        )
    for engine in ("tokenizers", "fast"):
        for renderer in ("sandbox", "minijinja"):
            jobs.append(
                (
                    f"(e) `count_batch`, engine {engine}, renderer {renderer}",
                    lambda r=renderer, e=engine: _fresh_counter(folder, r, e),
                    lambda eng: eng.count_batch(corpus),
                )
            )
    rows = interleaved(jobs, repeat)
    for label, _, out in rows:
        expected = rendered if label.startswith("(d)") else want
        assert out == expected, f"{family}: {label} differs"
    mb = sum(len(r.encode()) for r in rendered) / 1e6
    t_a = rows[0][1]
    return [(label, mb / t, t_a / t) for label, t, _ in rows]


def run_openai(model: str, corpus: list[dict[str, Any]], repeat: int) -> list[tuple[str, float, float]]:
    from llmtally.tokens import load_engine, load_tiktoken
    from llmtally.tokens._kitoken import bpe_openai_bindings

    base = load_tiktoken(model)
    enc = base.encoding
    texts = [m["content"] for c in corpus for m in c["messages"]]
    bt = bpe_openai_bindings().tokenizer_for_encoding(enc.name)
    want = [len(enc.encode_ordinary(t)) for t in texts]
    chats = base.count_batch(corpus)
    none: Callable[[], Any] = lambda: None  # noqa: E731
    jobs: list[Job] = [
        (
            "(a) raw tiktoken `encode_ordinary` per text (baseline)",
            none,
            lambda _: [len(enc.encode_ordinary(t)) for t in texts],
        ),
        (
            "(b) raw tiktoken `encode_ordinary_batch`",
            none,
            lambda _: [len(x) for x in enc.encode_ordinary_batch(texts, num_threads=os.cpu_count() or 1)],
        ),
        ("(c) raw bpe-openai `count` per text", none, lambda _: [bt.count(t) for t in texts]),
    ]
    for engine in ("tokenizers", "fast"):
        jobs.append(
            (
                f"(e) `count_batch` (chats), engine {engine}",
                lambda e=engine: load_engine(base, e, "cpu"),
                lambda eng: eng.count_batch(corpus),
            )
        )
    rows = interleaved(jobs, repeat)
    for label, _, out in rows:
        assert out == (chats if label.startswith("(e)") else want), f"{model}: {label} differs"
    mb = sum(len(t.encode()) for t in texts) / 1e6
    t_a = rows[0][1]
    return [(label, mb / t, t_a / t) for label, t, _ in rows]


def child(args: argparse.Namespace) -> None:
    if args.one_core:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    from _corpus import day_of_logs

    corpus = day_of_logs(args.n)
    out: dict[str, Any] = {"cores": len(os.sched_getaffinity(0)), "tables": {}}
    for family in filter(None, args.families.split(",")):
        out["tables"][family] = run_family(family, corpus, args.repeat)
    for model in filter(None, args.openai.split(",")):
        out["tables"][model] = run_openai(model, corpus, args.repeat)
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--families", default="qwen3,llama3_1,deepseek_v3")
    ap.add_argument("--openai", default="gpt-4o,gpt-4")
    ap.add_argument("--one-core", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    print(f"# day_of_logs({args.n}), best of {args.repeat}; ratios vs row (a) of the same run")
    for one_core in (True, False):
        cmd = [sys.executable, __file__, "--child", "--n", str(args.n), "--repeat", str(args.repeat)]
        cmd += ["--families", args.families, "--openai", args.openai] + (["--one-core"] if one_core else [])
        env = {**os.environ, "LLMTALLY_RENDER_PROCESSES": "0"}
        res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout)
        print(f"\n## {'one core' if one_core else 'all cores'} ({res['cores']} CPU)\n")
        for name, rows in res["tables"].items():
            print(f"| {name} | MB/s | × (a) |\n|---|---|---|")
            for label, mbs, ratio in rows:
                print(f"| {label} | {mbs:.2f} | {ratio:.2f} |")
            print()


if __name__ == "__main__":
    main()
