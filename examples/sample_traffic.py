"""Generate realistic sample usage logs with the real :class:`llmtally.UsageLogger`.

Several services on several hosts, each writing into its own folder (as each inference container
writes to its own ``./logs`` volume), over ``--days`` days ending yesterday (Asia/Shanghai):

* ``chat-api`` on two GPU hosts serving ``qwen3-8b``: ``gpu-a`` is vLLM-style (the server reports
  exact usage), ``gpu-b`` a transformers server that reports none (billed from the exact recount);
  the service's own estimate is the old ``len(text)`` habit.  A few of its calls fail: rate
  limited (HTTP 429, billed nothing), timed out or abandoned mid-stream (partial completions);
* ``support-bot`` calling ``deepseek-chat`` with a server whose reported prompt counts are off by a
  few tokens (a planted tokenizer drift);
* ``rag-worker`` calling ``gpt-4o-mini`` with tools (usage reported as the API reports it);
* ``legacy-service`` writing the common recipe's ``<asctime> - {dict}`` lines, plus one malformed
  line and a trailing partial line.

Reported usage is computed with the models' real tokenizers (``--shared`` points at the tokenizer
folders), so reconciliation has true numbers to find.  Deterministic for a given ``--seed``.

    python examples/sample_traffic.py --out var/service-logs --days 14
"""

from __future__ import annotations

import argparse
import json
import os
import random
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import llmtally
from llmtally.tokens import load_hf_folder, load_tiktoken

TZ = ZoneInfo("Asia/Shanghai")
FEATURES = {
    "chat-api": ["客服问答", "writing", "translate"],
    "support-bot": ["工单分类", "客服问答"],
    "rag-worker": ["search", "summarize"],
}
USERS = [f"u{n:03d}" for n in range(40)]
TENANTS = ["acme", "globex", "initech"]
ZH = [
    "我的订单什么时候发货？订单号 {n}。",
    "请帮我把这段话翻译成英文：今天的会议改到下午三点。",
    "用三句话总结一下这篇关于新能源汽车销量的报道。",
    "帮我写一封给客户的道歉邮件，包装破损的问题我们会补发。",
    "解释一下什么是大语言模型的分词器。",
]
EN = [
    "Where is my order {n}? It was supposed to arrive yesterday.",
    "Summarize the attached quarterly report in three bullet points.",
    "Translate to Chinese: the meeting moved to 3 pm.",
    "Write a short apology email about a damaged package.",
]
REPLIES = [
    "您好，您的订单已于今天发货，预计两天内送达。",
    "Sure — here is a concise summary of the key points.",
    "The meeting has been moved to 3 pm today.",
    "非常抱歉给您带来不便，我们会尽快为您补发。",
]
THOUGHTS = [
    "用户想知道订单状态，我先确认一下发货信息。",
    "The user wants a summary; keep it short and list the key points first.",
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search_docs",
            "description": "Search the knowledge base",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string", "description": "what to look for"}},
                "required": ["query"],
            },
        },
    }
]


def _hourly_weight(hour: int) -> float:
    # office-hours profile in Shanghai
    return 0.2 + (1.0 if 9 <= hour <= 18 else 0.3 if 7 <= hour <= 22 else 0.0)


def _chat(rng: random.Random) -> tuple[list[dict[str, str]], str]:
    pool = ZH if rng.random() < 0.65 else EN
    msgs = [{"role": "system", "content": "你是一个乐于助人的助手。"}] if rng.random() < 0.5 else []
    for _ in range(rng.randint(1, 3)):
        msgs.append({"role": "user", "content": rng.choice(pool).format(n=rng.randint(10**7, 10**8))})
        msgs.append({"role": "assistant", "content": rng.choice(REPLIES)})
    msgs.pop()
    return msgs, rng.choice(REPLIES) * rng.randint(1, 3)


def _call(rng: random.Random) -> dict[str, Any]:
    query = rng.choice(["退货政策", "shipping times", "发票"])
    args = json.dumps({"query": query}, ensure_ascii=False)
    return {
        "id": f"call_{rng.getrandbits(32):08x}",
        "type": "function",
        "function": {"name": "search_docs", "arguments": args},
    }


def generate(
    out: Path, days: int, per_day: int, shared: Path, seed: int = 7, end: date | None = None
) -> dict[str, int]:
    """Write sample logs under ``out``; returns records written per service."""
    rng = random.Random(seed)
    outcomes = random.Random(seed + 1)  # a stream of its own: the rest of the traffic stays the same
    thinking = random.Random(seed + 2)  # which self-served replies think or call a tool (ditto)
    qwen = load_hf_folder(shared / "tokenizers" / "qwen3")
    deepseek = load_hf_folder(shared / "tokenizers" / "deepseek_v3")
    gpt = load_tiktoken("gpt-4o-mini")
    last = end or (datetime.now(TZ).date() - timedelta(days=1))
    loggers = {
        ("chat-api", "gpu-a"): llmtally.UsageLogger(out / "chat-api-gpu-a", service="chat-api"),
        ("chat-api", "gpu-b"): llmtally.UsageLogger(out / "chat-api-gpu-b", service="chat-api"),
        ("support-bot", "app-1"): llmtally.UsageLogger(out / "support-bot", service="support-bot"),
        ("rag-worker", "app-2"): llmtally.UsageLogger(out / "rag-worker", service="rag-worker"),
    }
    written = {"chat-api": 0, "support-bot": 0, "rag-worker": 0, "legacy-service": 0}
    legacy_dir = out / "legacy-service"
    legacy_dir.mkdir(parents=True, exist_ok=True)
    legacy_lines: list[str] = []
    for offset in range(days - 1, -1, -1):
        day = last - timedelta(days=offset)
        for hour in range(24):
            n = int(per_day * _hourly_weight(hour) / 14)
            for _ in range(n):
                ts = datetime(
                    day.year, day.month, day.day, hour, rng.randint(0, 59), rng.randint(0, 59), tzinfo=TZ
                )
                (service, host), logger = rng.choice(list(loggers.items()))
                messages, completion = _chat(rng)
                tags = {
                    "feature": rng.choice(FEATURES[service]),
                    "user": rng.choice(USERS),
                    "tenant": rng.choice(TENANTS),
                    "host": host,
                }
                if service == "chat-api":
                    model, counter, tools = "qwen3-8b", qwen, None
                elif service == "support-bot":
                    model, counter, tools = "deepseek-chat", deepseek, None
                else:
                    model, counter, tools = "gpt-4o-mini", gpt, TOOLS
                prompt_tokens = counter.count_messages(messages, tools=tools)
                completion_tokens = counter.count(completion) + (1 if counter is not gpt else 0)
                if service == "support-bot" and rng.random() < 0.3:
                    prompt_tokens += rng.choice([-2, 3, 5])  # the drifted server
                usage: dict[str, Any] | None = {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                }
                if model == "gpt-4o-mini" and rng.random() < 0.4:
                    usage["prompt_tokens_details"] = {"cached_tokens": min(prompt_tokens, 64)}
                text_len = sum(len(m["content"]) for m in messages)
                estimate = {"prompt_tokens": text_len, "completion_tokens": len(completion)}
                status, extra = "ok", {"finish_reason": "stop"}
                reply: str | None = completion
                if service == "chat-api":
                    if host == "gpu-b":
                        usage = None  # no usage reported: the recount bills it
                    roll = outcomes.random()
                    if roll < 0.06:
                        status, reply, extra = "error", None, {"http_status": 429, "error": "RateLimitError"}
                    elif roll < 0.09:
                        status, reply, extra = "timeout", completion[: len(completion) // 2], {}
                    elif roll < 0.13:
                        status, reply, extra = "abandoned", completion[: len(completion) // 3], {}
                    if status != "ok":
                        usage = None
                    else:  # a reasoning parser splits the thinking out; a tool parser the calls
                        roll = thinking.random()
                        if roll < 0.25:
                            extra["reasoning"] = thinking.choice(THOUGHTS)
                        elif roll < 0.35:
                            tools, reply = TOOLS, None
                            extra = {"finish_reason": "tool_calls", "tool_calls": [_call(thinking)]}
                        if roll < 0.35:
                            prompt_tokens = counter.count_messages(messages, tools=tools)
                            generated = qwen.generated_text(
                                messages,
                                content=reply,
                                reasoning=extra.get("reasoning"),
                                tool_calls=extra.get("tool_calls"),
                                tools=tools,
                            )
                            completion_tokens = counter.count(generated) + 1
                            if usage is not None:
                                usage = {
                                    "prompt_tokens": prompt_tokens,
                                    "completion_tokens": completion_tokens,
                                    "total_tokens": prompt_tokens + completion_tokens,
                                }
                logger.log(
                    model=model,
                    messages=messages,
                    completion=reply,
                    tools=tools,
                    usage=usage,
                    estimate=estimate,
                    tags=tags,
                    ts=ts,
                    latency_ms=rng.uniform(150, 2500),
                    status=status,
                    **extra,
                )
                written[service] += 1
            if rng.random() < 0.5:
                ts = datetime(day.year, day.month, day.day, hour, 5, tzinfo=TZ)
                text = rng.choice(ZH)
                p, c = len(text) * 2, rng.randint(20, 200)
                rec = {
                    "prompt": text[:50],
                    "prompt_tokens": p,
                    "completion_tokens": c,
                    "total_tokens": p + c,
                    "timestamp": ts.timestamp(),
                }
                legacy_lines.append(f"{ts.strftime('%Y-%m-%d %H:%M:%S')},123 - {rec!r}\n")
                written["legacy-service"] += 1
    for logger in loggers.values():
        logger.close(timeout=30)
    with open(legacy_dir / "app.log", "w", encoding="utf-8") as fh:
        fh.writelines(legacy_lines[: len(legacy_lines) // 2])
        fh.write("2026-01-01 00:00:00,000 - this line is not a usage record\n")
        fh.writelines(legacy_lines[len(legacy_lines) // 2 :])
        fh.write("2026-01-01 00:00:00,000 - {'prompt': 'cut off mid-wri")  # a crash mid-write
    return written


def write_config(path: Path, shared: Path) -> Path:
    """An llmtally.toml mapping the sample models (and their repo ids) to the shared tokenizer folders."""
    tok = shared / "tokenizers"
    path.write_text(
        'timezone = "Asia/Shanghai"\n\n'
        f'[models."qwen3-8b"]\ntokenizer = "{tok / "qwen3"}"\n\n'
        f'[models."Qwen/Qwen3-8B"]\ntokenizer = "{tok / "qwen3"}"\n\n'
        f'[models."deepseek-ai/DeepSeek-V3"]\ntokenizer = "{tok / "deepseek_v3"}"\n\n'
        f'[models."meta-llama/Llama-3.1-8B-Instruct"]\ntokenizer = "{tok / "llama3_1"}"\n',
        encoding="utf-8",
    )
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("var/service-logs"))
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--per-day", type=int, default=300, help="approximate requests per day")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--shared",
        type=Path,
        default=Path(os.environ.get("LLMTALLY_SHARED", Path(__file__).resolve().parents[2] / "shared")),
    )
    args = ap.parse_args()
    counts = generate(args.out, args.days, args.per_day, args.shared, args.seed)
    print(json.dumps({"out": str(args.out), "records": counts}))


if __name__ == "__main__":
    main()
