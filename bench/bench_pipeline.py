"""The daily pipeline on one generated day of logs: parse, recount (1 core, all cores, vs transformers),
reconcile, load into PostgreSQL.

    python bench/bench_pipeline.py [--records 20000] [--dsn "host=127.0.0.1 port=5432 user=postgres dbname=test"]

One day (2026-11-20, Asia/Shanghai) of logs is written by ``examples/sample_traffic.generate`` with the
real ``UsageLogger``: ``chat-api`` on two hosts (``qwen3-8b``), ``support-bot`` (``deepseek-chat``, a
drifted server), ``rag-worker`` (``gpt-4o-mini`` with a tool), a few legacy recipe lines.  A temporary
``llmtally.toml`` (``LLMTALLY_CONFIG``, written by ``sample_traffic.write_config``) maps the Qwen3 and
DeepSeek-V3 names to ``$LLMTALLY_SHARED/tokenizers``.

1. ``collect`` + ``parse_day``: median of 3; MB are the bytes of the lines read.
2. ``llmtally.pipeline.recount`` with ``load_tokenizer``, per model, cold, each in a fresh process that
   parses the day first (median of 3 processes) (as an Airflow task does; tokenizer load timed apart): all cores; then one core,
   in a process pinned to one CPU with ``RAYON_NUM_THREADS=1`` and ``TOKENIZERS_PARALLELISM=false``
   (set before ``tokenizers`` starts its pool), which also times template rendering alone.  Baseline,
   single-threaded in the same pinned process: transformers
   ``AutoTokenizer.from_pretrained(folder).apply_chat_template(tokenize=True)`` per prompt + ``encode``
   per completion (+1 stop token where a stop was generated, as open-model engines bill it; a reply
   with reasoning or tool calls: the template's assistant turn after the prompt, up to and including
   its end-of-turn token) for the HF models; for gpt-4o-mini tiktoken with the cookbook's message
   accounting and the tools block written out as docs/openai-tools.md describes it.  Every record's prompt and
   completion counts must be identical on all three paths.  MB are the UTF-8 bytes of message contents
   and completions (template scaffolding and tool schemas not included).
3. ``reconcile`` (with the shipped price table): median of 3.
4. ``PostgresStore.load_day`` of the day's ``DayLoad`` into a scratch database (dropped at the end):
   the first load, then the median of 3 re-loads of the same day (each replaces it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("LLMTALLY_SHARED", ROOT.parent / "shared")).resolve()
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED / "tiktoken"))
sys.path.insert(0, str(ROOT / "examples"))

DAY = date(2026, 11, 20)
TZ = "Asia/Shanghai"
HF_FOLDERS = {"qwen3-8b": "qwen3", "deepseek-chat": "deepseek_v3"}
MODELS = ("qwen3-8b", "deepseek-chat", "gpt-4o-mini")


def _median_time(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _parse(logs: Path) -> Any:
    from llmtally.pipeline import collect, parse_day

    return parse_day(collect([str(logs / "*")], day=DAY, tz=TZ).paths, DAY, TZ)


def _text_bytes(rec: Any) -> int:
    n = len(rec.completion.encode()) if rec.completion else 0
    for m in rec.messages or ():
        c = m.get("content") if isinstance(m, dict) else None
        if isinstance(c, str):
            n += len(c.encode())
    return n


def _by_model(records: Sequence[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {m: [] for m in MODELS}
    for r in records:
        if r.model in out:
            out[r.model].append(r)
    return out


def _recount_models(by_model: dict[str, list[Any]]) -> dict[str, Any]:
    """Cold recount per model: tokenizer load, then ``recount`` (which uses the loaded counter)."""
    from llmtally import load_tokenizer
    from llmtally.pipeline import recount

    out: dict[str, Any] = {}
    for model, recs in by_model.items():
        t0 = time.perf_counter()
        load_tokenizer(model)
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        counts = recount(recs, load_tokenizer)
        t = time.perf_counter() - t0
        bad = {rc.status for rc in counts.values()} - {"ok"}
        assert not bad, f"{model}: recount statuses {bad}"
        out[model] = {
            "load_s": t_load,
            "s": t,
            "counts": {rid: [rc.prompt_tokens, rc.completion_tokens] for rid, rc in counts.items()},
        }
    return out


# --------------------------------------------------------------------------- baselines (one thread)


def _hf_baseline(folder: Path, recs: Sequence[Any]) -> dict[str, Any]:
    from transformers import AutoTokenizer

    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(str(folder))
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    counts: dict[str, list[int | None]] = {}
    for r in recs:
        ids = tok.apply_chat_template(
            list(r.messages),
            tools=list(r.tools) if r.tools else None,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=False,
            **dict(r.template_kwargs or {}),
        )
        c = None
        if r.reasoning or r.tool_calls:  # the assistant turn after the prompt, up to its end-of-turn
            reply = {"role": "assistant", "content": r.completion or "", "tool_calls": r.tool_calls}
            if r.reasoning:
                reply["reasoning_content"] = r.reasoning
            full = tok.apply_chat_template(
                [*r.messages, reply],
                tools=list(r.tools) if r.tools else None,
                tokenize=True,
                return_dict=False,
                **dict(r.template_kwargs or {}),
            )
            c = full[len(ids) :].index(tok.convert_tokens_to_ids(tok.eos_token)) + 1
        elif r.completion is not None:
            stopped = (r.status or "ok") == "ok" and r.finish_reason in (None, "stop")  # the billing rule
            c = len(tok.encode(r.completion, add_special_tokens=False)) + stopped
        counts[r.id] = [len(ids), c]
    return {"load_s": t_load, "s": time.perf_counter() - t0, "counts": counts}


def _tools_block(tools: Sequence[Any]) -> str:
    """The ``namespace functions`` block the API writes for flat function schemas (the sample's
    tools are flat), as docs/openai-tools.md describes it; written out here apart from the counter."""
    lines = ["namespace functions {", ""]
    for tool in tools:
        fn = tool["function"]
        if fn.get("description"):
            lines.append(f"// {fn['description']}")
        params = fn.get("parameters", {})
        required = set(params.get("required", []))
        lines.append(f"type {fn['name']} = (_: {{")
        for key, prop in params.get("properties", {}).items():
            if prop.get("description"):
                lines.append(f"// {prop['description']}")
            kind = " | ".join(json.dumps(v) for v in prop["enum"]) if "enum" in prop else prop["type"]
            lines.append(f"{key}{'' if key in required else '?'}: {kind},")
        lines += ["}) => any;", ""]
    return "\n".join([*lines, "} // namespace functions"])


def _tiktoken_baseline(model: str, recs: Sequence[Any]) -> dict[str, Any]:
    import tiktoken

    t0 = time.perf_counter()
    enc = tiktoken.encoding_for_model(model)
    t_load = time.perf_counter() - t0

    def n(text: str) -> int:
        return len(enc.encode(text))

    t0 = time.perf_counter()
    counts: dict[str, list[int | None]] = {}
    for r in recs:
        p = 3  # every reply is primed with <|start|>assistant<|message|>
        joined = False  # tools join the first system message (+ a newline and 5), else their own (+9)
        for msg in r.messages:
            p += 3
            pad = bool(r.tools) and not joined and msg["role"] == "system"
            for key, value in msg.items():
                p += n(value + "\n" if pad and key == "content" else value)
                p += key == "name"
            joined = joined or pad
        if r.tools:
            p += n(_tools_block(r.tools)) + (5 if joined else 9)
        counts[r.id] = [p, n(r.completion) if r.completion is not None else None]
    return {"load_s": t_load, "s": time.perf_counter() - t0, "counts": counts}


def _render_alone(by_model: dict[str, list[Any]]) -> dict[str, list[float]]:
    """Per HF model: [seconds, MB] to render its chat templates alone (one thread), the serial part."""
    from llmtally import load_tokenizer

    out = {}
    for model in HF_FOLDERS:
        counter: Any = load_tokenizer(model)
        items = [
            {"messages": r.messages, "tools": r.tools, "template_kwargs": r.template_kwargs}
            for r in by_model[model]
        ]
        t0 = time.perf_counter()
        rendered = [counter.render_item(x) for x in items]
        out[model] = [time.perf_counter() - t0, sum(len(x.encode()) for x in rendered) / 1e6]
    return out


def child(spec_json: str) -> None:
    """A fresh process: llmtally recount (cold); when pinned, also rendering alone and the baselines."""
    spec = json.loads(spec_json)
    if spec["cpu"] is not None:
        os.sched_setaffinity(0, {spec["cpu"]})  # before tokenizers (imported below) starts a thread
    parsed = _parse(Path(spec["logs"]))
    by_model = _by_model(parsed.records)
    out: dict[str, Any] = {"cpus": sorted(os.sched_getaffinity(0)), "ours": _recount_models(by_model)}
    if spec["baseline"]:
        out["render"] = _render_alone(by_model)
        out["baseline"] = {
            model: _hf_baseline(SHARED / "tokenizers" / HF_FOLDERS[model], recs)
            if model in HF_FOLDERS
            else _tiktoken_baseline(model, recs)
            for model, recs in by_model.items()
        }
    print(json.dumps(out))


def _child(logs: Path, one_core: bool, baseline: bool) -> dict[str, Any]:
    env = dict(os.environ)
    if one_core:  # rayon reads these when its pool starts: they must be set before the process starts
        env.update(RAYON_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    spec = {
        "logs": str(logs),
        "cpu": min(os.sched_getaffinity(0)) if one_core else None,
        "baseline": baseline,
    }
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- main


def _median_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {m: {k: statistics.median(r[m][k] for r in runs) for k in ("s", "load_s")} for m in runs[0]}


def _load_db(dsn_admin: str, day_load: Any, runs: int) -> dict[str, float]:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from llmtally.store import open_store

    name = f"llmtally_bench_pipeline_{secrets.token_hex(3)}"
    admin = psycopg.connect(dsn_admin, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(dsn_admin)
    params["dbname"] = name
    try:
        t0 = time.perf_counter()
        store = open_store(make_conninfo("", **params), schema="llmtally")
        t_migrate = time.perf_counter() - t0
        with store:
            t0 = time.perf_counter()
            store.load_day(day_load)
            t_first = time.perf_counter() - t0
            t_reload, _ = _median_time(lambda: store.load_day(day_load), runs)
            rows = len(store.hourly_rows(DAY))
        assert rows == len(day_load.hourly), (rows, len(day_load.hourly))
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
    return {"migrate_s": t_migrate, "first_s": t_first, "reload_s": t_reload}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=20_000, help="approximate records in the day")
    ap.add_argument("--dsn", default="host=127.0.0.1 port=5432 user=postgres dbname=test")
    ap.add_argument("--runs", type=int, default=3, help="repeats of each step (medians are reported)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child)

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        from sample_traffic import _hourly_weight, generate, write_config

        os.environ["LLMTALLY_CONFIG"] = str(write_config(Path(tmp) / "llmtally.toml", SHARED))

        logs = Path(tmp) / "logs"
        per_day = math.ceil(args.records * 14 / sum(_hourly_weight(h) for h in range(24)))
        t0 = time.perf_counter()
        written = generate(logs, 1, per_day, SHARED, end=DAY)
        t_gen = time.perf_counter() - t0

        # 1. parse
        t_parse, parsed = _median_time(lambda: _parse(logs), args.runs)
        tracemalloc.start()
        held = _parse(logs)  # memory of one parse (slower under tracemalloc, so not timed)
        mem_kept, mem_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del held
        st = parsed.stats
        records = parsed.records
        by_model = _by_model(records)
        n_models = {m: len(r) for m, r in by_model.items()}
        text_mb = {m: sum(map(_text_bytes, r)) / 1e6 for m, r in by_model.items()}
        texts = [x["content"] for r in records for x in r.messages or ()] + [r.completion for r in records]
        distinct = len(set(texts)) / len(texts)

        # 2. recount, each in a fresh process (as each Airflow task is): all cores, then one core
        # (median of `runs` fresh processes each; the baselines run once, in the first pinned one)
        runs_all = [_child(logs, one_core=False, baseline=False)["ours"] for _ in range(args.runs)]
        one = _child(logs, one_core=True, baseline=True)
        runs_one = [one["ours"]] + [
            _child(logs, one_core=True, baseline=False)["ours"] for _ in range(args.runs - 1)
        ]
        base, t_render = one["baseline"], one["render"]
        mismatches = {m: 0 for m in MODELS}
        for m in MODELS:
            ref = base[m]["counts"]
            for run in runs_all + runs_one:
                mismatches[m] += sum(run[m]["counts"][rid] != ref[rid] for rid in ref)
        ours_all, ours_one = _median_runs(runs_all), _median_runs(runs_one)
        tokens = {m: sum(p + (c or 0) for p, c in base[m]["counts"].values()) for m in MODELS}

        # 3. reconcile
        from llmtally import load_tokenizer
        from llmtally._config import load_config
        from llmtally.pipeline import reconcile, recount
        from llmtally.pricing import load_prices

        counts = recount(records, load_tokenizer)  # the whole day, legacy lines included
        prices = load_prices(load_config())

        def rec() -> Any:
            return reconcile(
                records, counts, day=DAY, tz=TZ, prices=prices, stats=st, quarantine=parsed.quarantine
            )

        t_recon, day_load = _median_time(rec, args.runs)

        # 4. load
        db = _load_db(args.dsn, day_load, args.runs)

    n = len(records)
    n_rc = sum(n_models.values())
    mb_rc = sum(text_mb.values())
    q = day_load.quality
    print(
        f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"child pinned to CPU {one['cpus']}; day {DAY} ({TZ})"
    )
    print(
        f"# generated {sum(written.values()):,} records ({written}) in {t_gen:.1f} s; "
        f"{st.files} files, {st.bytes / 1e6:.1f} MB, {st.lines:,} lines -> {st.records:,} records "
        f"({st.legacy_records} legacy), {st.quarantined} quarantined, {st.partial_lines} partial"
    )
    print(
        f"# recounted: {n_rc:,} records, {mb_rc:.2f} MB of text, {sum(tokens.values()):,} tokens; "
        f"reconcile: {len(day_load.hourly):,} hourly rows, {len(day_load.reconciliation)} reconciliation "
        f"rows, {len(day_load.top_requests)} top requests, {len(day_load.digests)} digest rows; "
        f"{q.drift_records:,} drift records"
    )
    print(f"# distinct texts (message contents + completions): {distinct:.1%} of {len(texts):,}")
    print(
        f"# parse_day memory (tracemalloc): {mem_kept / 1e6:.0f} MB held by the records "
        f"({mem_kept / n:,.0f} B/record), peak {mem_peak / 1e6:.0f} MB"
    )
    print()
    print("| step | records | MB | s | records/s | MB/s |")
    print("|---|---|---|---|---|---|")
    print(
        f"| parse (collect + parse_day, 1 core) | {n:,} | {st.bytes / 1e6:.1f} | {t_parse:.2f} | {n / t_parse:,.0f} | {st.bytes / 1e6 / t_parse:.1f} |"
    )
    print()
    print(
        "| recount | model | records | MB text | tokens | s | records/s | MB/s | × transformers | tokenizer load s | identical |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows: list[tuple[str, dict[str, Any]]] = [
        ("transformers / tiktoken, 1 thread (baseline)", base),
        ("llmtally recount, 1 core", ours_one),
        ("llmtally recount, all cores", ours_all),
    ]
    for label, res in rows:
        for m in (*MODELS, "all"):
            s = sum(res[x]["s"] for x in MODELS) if m == "all" else res[m]["s"]
            sb = sum(base[x]["s"] for x in MODELS) if m == "all" else base[m]["s"]
            k = n_rc if m == "all" else n_models[m]
            mb = mb_rc if m == "all" else text_mb[m]
            tk = sum(tokens.values()) if m == "all" else tokens[m]
            ld = sum(res[x]["load_s"] for x in MODELS) if m == "all" else res[m]["load_s"]
            same = sum(mismatches.values()) == 0 if m == "all" else mismatches[m] == 0
            name = f"**{m}**" if m == "all" else m
            print(
                f"| {label} | {name} | {k:,} | {mb:.2f} | {tk:,} | {s:.2f} | {k / s:,.0f} | {mb / s:.2f} | "
                f"{sb / s:.2f} | {ld:.2f} | {'yes' if same else 'NO'} |"
            )
    print()
    for m, (t, mb) in t_render.items():
        print(
            f"# {m}: chat-template rendering alone (1 core): {t:.2f} s = {n_models[m] / t:,.0f} records/s "
            f"({mb:.2f} MB rendered prompts, {mb / t:.1f} MB/s)"
        )
    print()
    print("| step | records | s | records/s |")
    print("|---|---|---|---|")
    print(f"| reconcile (with prices) | {n:,} | {t_recon:.2f} | {n / t_recon:,.0f} |")
    print(
        f"| PostgresStore.load_day, first load ({len(day_load.hourly):,} hourly rows) | {n:,} | {db['first_s']:.2f} | {n / db['first_s']:,.0f} |"
    )
    print(
        f"| PostgresStore.load_day, re-load (replaces the day) | {n:,} | {db['reload_s']:.2f} | {n / db['reload_s']:,.0f} |"
    )
    print(f"| (open_store + migrations on an empty database) | – | {db['migrate_s']:.2f} | – |")
    print()
    print(f"counts identical on all paths: {sum(mismatches.values()) == 0} ({mismatches})")
    assert sum(mismatches.values()) == 0, f"recount differs from the baseline: {mismatches}"


if __name__ == "__main__":
    main()
