"""Generated raw logs with known truth: several services and hosts over several days.

Every JSON record carries its truth under the generator's own bookkeeping (never in the file):
``billed`` (prompt, completion) and whether its reported prompt was planted off (drift).
Reported usage is computed with the real tokenizers, so the exact recount must agree except where
drift was planted.
"""

from __future__ import annotations

import gzip
import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from llmtally import UnknownModelError, load_tokenizer
from llmtally.tokens import TokenCounter
from tests.support import tokenizer_source

TZ = "Asia/Shanghai"
ZONE = ZoneInfo(TZ)
CANARY = "CANARY-7f3a-秘密文本"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search_docs",
            "description": "Search the knowledge base",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
        },
    }
]
PROMPTS = [
    "我的订单什么时候发货？",
    "Summarize the report in three bullets.",
    "翻译：会议改到下午三点。",
    "Hi!",
]
REPLIES = ["您好，已经发货。", "Sure, here is a summary.", "The meeting moved to 3 pm.", "好的"]
# (service, host, model, text policy)
SERVICES = [
    ("chat-api", "gpu-a", "qwen3-8b", "full"),
    ("chat-api", "gpu-b", "qwen3-8b", "full"),
    ("support-bot", "app-1", "deepseek-chat", "full"),
    ("rag-worker", "app-2", "gpt-4o-mini", "full"),
    ("mystery", "app-3", "mystery-model", "full"),
    ("private", "app-4", "qwen3-8b", "hash"),
]


def counters() -> dict[str, TokenCounter]:
    """Real counters from the real loader, for the generated models."""
    qwen = load_tokenizer(tokenizer_source("qwen3"))
    return {
        "qwen3-8b": qwen,
        "deepseek-chat": load_tokenizer(tokenizer_source("deepseek_v3")),
        "gpt-4o-mini": load_tokenizer("gpt-4o-mini"),
    }


def counter_for(table: dict[str, TokenCounter]) -> Callable[[str], TokenCounter]:
    """``counter_for_model`` over ``table``; other models are unknown."""

    def get(model: str) -> TokenCounter:
        if model not in table:
            raise UnknownModelError(model)
        return table[model]

    return get


@dataclass
class Truth:
    """What was written, per local day."""

    records: dict[date, list[dict[str, Any]]] = field(default_factory=dict)
    drift: dict[date, int] = field(default_factory=dict)
    malformed: int = 0
    partial: int = 0
    duplicates: dict[date, int] = field(default_factory=dict)


def _ts_iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds")


def _record(
    rng: random.Random, ts: datetime, svc: tuple[str, str, str, str], table: dict[str, TokenCounter]
) -> dict[str, Any]:
    service, host, model, policy = svc
    messages = [{"role": "user", "content": rng.choice(PROMPTS) + (CANARY if rng.random() < 0.3 else "")}]
    if rng.random() < 0.4:
        messages.insert(0, {"role": "system", "content": "你是助手。"})
    completion = rng.choice(REPLIES) * rng.randint(1, 3) + (CANARY if rng.random() < 0.2 else "")
    tools = TOOLS if model == "gpt-4o-mini" else None
    finish = "length" if rng.random() < 0.1 else "stop"
    counter = table.get(model) or table["qwen3-8b"]
    prompt_tokens = counter.count_messages(messages, tools=tools)
    completion_tokens = counter.count(completion) + (1 if model != "gpt-4o-mini" and finish == "stop" else 0)
    rec: dict[str, Any] = {
        "v": 1,
        "id": uuid.UUID(int=rng.getrandbits(128)).hex,
        "ts": _ts_iso(ts),
        "service": service,
        "host": host,
        "pid": 100,
        "model": model,
        "endpoint": "chat.completions",
        "text": policy,
        "tags": {
            "feature": rng.choice(["客服问答", "search", "writing"]),
            "user": f"u{rng.randint(1, 5)}",
            "tenant": rng.choice(["acme", "globex"]),
        },
        "status": "ok",
        "finish_reason": finish,
        "estimate": {
            "prompt_tokens": sum(len(m["content"]) for m in messages),
            "completion_tokens": len(completion),
        },
        "prompt_sha256": uuid.UUID(int=rng.getrandbits(128)).hex * 2 if rng.random() < 0.9 else "f" * 64,
    }
    if policy == "full":
        rec["messages"] = messages
        rec["completion"] = completion
        if tools:
            rec["tools"] = tools
    usage: dict[str, Any] | None = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
    drift = service == "support-bot" and rng.random() < 0.4
    if drift:
        assert usage is not None
        usage["prompt_tokens"] = prompt_tokens + rng.choice([-2, 3, 5])
    if model == "gpt-4o-mini" and usage is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": min(prompt_tokens, 10)}
    if service == "chat-api" and host == "gpu-b" and rng.random() < 0.3:
        usage = None  # the server reported nothing: billed from the exact recount
    if usage is not None:
        rec["usage"] = usage
    billed_p = usage["prompt_tokens"] if usage else prompt_tokens
    billed_c = usage["completion_tokens"] if usage else completion_tokens
    rec["_truth"] = {
        "billed": (billed_p, billed_c),
        "drift": drift,
        "cached": min(prompt_tokens, 10) if usage and model == "gpt-4o-mini" else 0,
    }
    return rec


def _line(rec: dict[str, Any]) -> bytes:
    return (json.dumps({k: v for k, v in rec.items() if k != "_truth"}, ensure_ascii=False) + "\n").encode()


def _legacy_line(rng: random.Random, ts: datetime, stamp: str) -> tuple[bytes, dict[str, Any]]:
    p, c = rng.randint(5, 90), rng.randint(1, 50)
    value: Any = ts.timestamp() if stamp == "epoch" else ts.astimezone(ZONE).replace(tzinfo=None).isoformat()
    body = {
        "prompt": (CANARY + "写一篇文章")[:20],
        "prompt_tokens": p,
        "completion_tokens": c,
        "total_tokens": p + c,
    }
    if stamp != "none":
        body["timestamp"] = value
    asctime = ts.astimezone(ZONE).strftime("%Y-%m-%d %H:%M:%S") + f",{ts.microsecond // 1000:03d}"
    return f"{asctime} - {body!r}\n".encode(), {"ts": ts, "billed": (p, c)}


def generate(
    root: Path, days: list[date], per_day: int, table: dict[str, TokenCounter], seed: int = 11
) -> Truth:
    """Write logs for ``days`` under ``root`` (one folder per service host) and return the truth."""
    rng = random.Random(seed)
    truth = Truth()
    files: dict[Path, list[bytes]] = {}
    legacy: list[bytes] = []
    for day in days:
        start = datetime(day.year, day.month, day.day, tzinfo=ZONE)
        stamps = [start + timedelta(seconds=rng.uniform(0, 86399)) for _ in range(per_day)]
        stamps += [
            start + timedelta(microseconds=1000),
            start + timedelta(days=1) - timedelta(milliseconds=1),
        ]
        recs = truth.records.setdefault(day, [])
        for i, ts in enumerate(stamps):
            svc = SERVICES[i % len(SERVICES)]
            rec = _record(rng, ts, svc, table)
            recs.append(rec)
            truth.drift[day] = truth.drift.get(day, 0) + rec["_truth"]["drift"]
            # the file a record lands in is not tied to its day: rotation by size, batching
            part = rng.choice(["a", "b", "c"])
            folder = root / f"{svc[0]}-{svc[2]}-{svc[1]}"
            name = f"usage-{svc[0]}-{svc[1]}-100-{days[0]:%Y%m%d}T000000-{part}.jsonl"
            files.setdefault(folder / name, []).append(_line(rec))
            if rng.random() < 0.03:  # the same record shipped twice (a re-sent batch)
                files.setdefault(folder / f"usage-dup-{part}.jsonl", []).append(_line(rec))
                truth.duplicates[day] = truth.duplicates.get(day, 0) + 1
        for j in range(4):
            ts = start + timedelta(hours=rng.randint(0, 23), seconds=rng.randint(0, 3599), milliseconds=123)
            line, fact = _legacy_line(rng, ts, ["epoch", "iso", "none", "epoch"][j])
            legacy.append(line)
            recs.append(
                {
                    "_legacy": True,
                    "service": "legacy-svc",
                    "ts_dt": fact["ts"],
                    "_truth": {"billed": fact["billed"], "drift": False, "cached": 0},
                }
            )
    for path, lines in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.name.endswith("-a.jsonl"):  # closed files are compressed
            path = path.with_name(path.name + ".gz")
            path.write_bytes(gzip.compress(b"".join(lines)))
        else:
            path.write_bytes(b"".join(lines))
    bad = [
        b"{not json at all " + CANARY.encode() + b"\n",
        b'{"id": "x1", "ts": "yesterday"}\n',
        b'["a", "list"]\n',
        b"2026-11-20 10:00:00,123 - {'prompt': __import__('os').system('echo pwned')}\n",
        b'{"id": "neg1", "ts": "2026-11-20T00:00:00+00:00", "usage": {"prompt_tokens": -5, "completion_tokens": 1}}\n',
    ]
    legacy_dir = root / "legacy-svc"
    legacy_dir.mkdir(parents=True, exist_ok=True)
    half = len(legacy) // 2
    (legacy_dir / "app.log.1").write_bytes(b"".join(legacy[:half]) + bad[0] + bad[1])
    (legacy_dir / "app.log").write_bytes(
        b"".join(legacy[half:])
        + b"".join(bad[2:])
        + b"2026-11-20 10:00:00,000 - {'prompt': 'cut "
        + CANARY.encode()
    )
    truth.malformed = len(bad)
    truth.partial = 1
    return truth
