"""Deterministic chat corpora for benchmarks (Chinese and English; no network)."""

from __future__ import annotations

import itertools
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


_SYLLABLES = [
    "ka",
    "to",
    "ri",
    "mon",
    "ex",
    "str",
    "ing",
    "al",
    "de",
    "vel",
    "pro",
    "cess",
    "data",
    "tion",
    "er",
]
_HANZI = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处理府研质信"
_IDENT = ["user_id", "order", "items", "total", "config", "handler", "records", "session", "payload", "retry"]


def _zipf_words(rng: random.Random, lexicon: list[str], k: int) -> list[str]:
    """``k`` words drawn with P(rank r) proportional to 1/r (Zipf's law)."""
    weights = _ZIPF.get(len(lexicon))
    if weights is None:
        weights = _ZIPF[len(lexicon)] = list(itertools.accumulate(1 / r for r in range(1, len(lexicon) + 1)))
    return rng.choices(lexicon, cum_weights=weights, k=k)


_ZIPF: dict[int, list[float]] = {}


def _lexicons(seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    en = sorted({"".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(30000)})
    rng.shuffle(en)
    zh = sorted({"".join(rng.choice(_HANZI) for _ in range(rng.randint(1, 3))) for _ in range(30000)})
    rng.shuffle(zh)
    return en, zh


def _code_snippet(rng: random.Random) -> str:
    name = rng.choice(_IDENT) + "_" + str(rng.randint(0, 999))
    field = rng.choice(_IDENT)
    return (
        f"```python\ndef {name}(event: dict) -> int:\n"
        f"    {field} = event.get('{field}', [])  # {rng.randint(0, 10**6)}\n"
        f"    if len({field}) > {rng.randint(1, 500)}:\n"
        f'        raise ValueError(f"too many {field}: {{len({field})}}")\n'
        f"    return sum(x['{rng.choice(_IDENT)}'] for x in {field})\n```"
    )


def tool_code_chats(n: int, seed: int = 23) -> list[dict[str, Any]]:
    """``n`` chats with code, tool definitions and Zipf-distributed vocabulary (many distinct words)."""
    rng = random.Random(seed)
    en, zh = _lexicons(seed)
    tools = [
        {
            "type": "function",
            "function": {
                "name": f"lookup_{rng.choice(_IDENT)}",
                "description": "Look up a record by id and return its fields as JSON.",
                "parameters": {
                    "type": "object",
                    "properties": {"id": {"type": "string"}, "fields": {"type": "array"}},
                    "required": ["id"],
                },
            },
        }
        for _ in range(3)
    ]
    out: list[dict[str, Any]] = []
    for _ in range(n):
        lex = zh if rng.random() < 0.5 else en
        sep = "" if lex is zh else " "
        msgs: list[dict[str, str]] = [
            {"role": "system", "content": rng.choice(SYSTEM) or "You are a coding assistant."}
        ]
        for _t in range(rng.randint(1, 3)):
            ask = sep.join(_zipf_words(rng, lex, rng.randint(5, 60)))
            if rng.random() < 0.5:
                ask += "\n\n" + _code_snippet(rng)
            msgs.append({"role": "user", "content": ask})
            reply = sep.join(_zipf_words(rng, lex, rng.randint(10, 120)))
            if rng.random() < 0.4:
                reply += "\n" + _code_snippet(rng)
            msgs.append({"role": "assistant", "content": reply})
        msgs.append({"role": "user", "content": sep.join(_zipf_words(rng, lex, rng.randint(3, 30)))})
        chat: dict[str, Any] = {"messages": msgs}
        if rng.random() < 0.3:
            chat["tools"] = tools[: rng.randint(1, 3)]
        out.append(chat)
    return out


def day_of_logs(n: int, seed: int = 31) -> list[dict[str, Any]]:
    """A realistic day: 70 % re-sent chat-service requests, 30 % code/tool chats, interleaved."""
    k = int(n * 0.3)
    mixed = logged_requests(n - k, seed) + tool_code_chats(k, seed + 1)
    random.Random(seed).shuffle(mixed)
    return mixed
