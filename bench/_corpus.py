"""Deterministic chat corpora for benchmarks (Chinese and English; no network)."""

from __future__ import annotations

import random
from typing import Any

_ZH = [
    "请帮我总结一下这份季度报告的要点，重点关注营收增长和成本控制。",
    "我的订单号是20261120，为什么还没有发货？能帮我查一下物流信息吗？",
    "用通俗易懂的语言解释一下什么是大语言模型的分词器，以及为什么中文的token数量和字数不一样。",
    "写一段Python代码，读取CSV文件并按日期统计每天的销售额，然后画出折线图。",
    "客户反馈：产品质量很好，但是包装有些破损，希望以后能改进。请帮我写一封回复邮件。",
    "请写一篇3000字的文章，主题是人工智能对教育的影响。",
    "北京今天的空气质量怎么样？适合户外运动吗？",
]
_EN = [
    "Summarize the key points of this quarterly report, focusing on revenue growth and cost control.",
    "Why hasn't my order shipped yet? The order number is 20261120. Can you check the tracking?",
    "Explain in plain words what a tokenizer is and why token counts differ from word counts.",
    "Write a Python function that reads a CSV file and plots daily sales as a line chart.",
    "def handler(event, context):\n    records = event.get('Records', [])\n    return {'count': len(records)}\n",
    "Draft a polite reply to a customer who received a damaged package.",
]
SYSTEM = ["你是一个专业的客服助手，请用简洁礼貌的中文回答。", "You are a helpful assistant.", None]


def chats(n: int, seed: int = 7, turns: tuple[int, int] = (1, 4)) -> list[dict[str, Any]]:
    """``n`` chats mixing Chinese and English, 1-4 turns, some with a system prompt."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for _ in range(n):
        pool = _ZH if rng.random() < 0.6 else _EN
        msgs: list[dict[str, str]] = []
        sys_prompt = rng.choice(SYSTEM)
        if sys_prompt:
            msgs.append({"role": "system", "content": sys_prompt})
        for t in range(rng.randint(*turns)):
            user = " ".join(rng.choice(pool) for _ in range(rng.randint(1, 4)))
            msgs.append({"role": "user", "content": user})
            if t < turns[1] - 1 and rng.random() < 0.7:
                msgs.append(
                    {
                        "role": "assistant",
                        "content": " ".join(rng.choice(pool) for _ in range(rng.randint(1, 3))),
                    }
                )
        if msgs[-1]["role"] != "user":
            msgs.append({"role": "user", "content": rng.choice(pool)})
        out.append({"messages": msgs})
    return out


def logged_requests(n: int, seed: int = 11) -> list[dict[str, Any]]:
    """``n`` requests as a chat service logs them: each follow-up re-sends the conversation so far."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    while len(out) < n:
        pool = _ZH if rng.random() < 0.6 else _EN
        history: list[dict[str, str]] = []
        sys_prompt = rng.choice(SYSTEM)
        if sys_prompt:
            history.append({"role": "system", "content": sys_prompt})
        for _ in range(rng.randint(1, 6)):
            history.append(
                {"role": "user", "content": " ".join(rng.choice(pool) for _ in range(rng.randint(1, 3)))}
            )
            out.append({"messages": list(history)})
            reply = " ".join(rng.choice(pool) for _ in range(rng.randint(1, 4)))
            history.append({"role": "assistant", "content": reply + f" #{rng.randint(0, 10**6)}"})
    return out[:n]
