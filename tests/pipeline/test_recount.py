"""The recount seam over real counters: exact prompt and completion counts, statuses, fingerprints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from llmtally import TemplateError, load_tokenizer
from llmtally.pipeline import Recount, UsageRecord, recount
from llmtally.tokens import BatchItem, TokenCounter
from tests.pipeline.logs import TOOLS, counter_for
from tests.support import tokenizer_source

TS = datetime(2026, 11, 20, 2, tzinfo=UTC)
MSGS = [{"role": "system", "content": "你是助手。"}, {"role": "user", "content": "你好，介绍一下分词器。"}]


@pytest.fixture(scope="module")
def table() -> dict[str, TokenCounter]:
    return {
        "qwen3-8b": load_tokenizer(tokenizer_source("qwen3")),
        "gpt-4o-mini": load_tokenizer("gpt-4o-mini"),
    }


def test_exact_counts_and_statuses(table: dict[str, TokenCounter]) -> None:
    qwen, gpt = table["qwen3-8b"], table["gpt-4o-mini"]
    recs = [
        UsageRecord("c1", TS, model="qwen3-8b", messages=MSGS, completion="好的。", finish_reason="stop"),
        UsageRecord(
            "c2",
            TS,
            model="qwen3-8b",
            messages=MSGS,
            completion="好的。",
            finish_reason="length",
            template_kwargs={"enable_thinking": False},
        ),
        UsageRecord(
            "c3",
            TS,
            model="gpt-4o-mini",
            messages=MSGS,
            tools=TOOLS,
            completion="Sure.",
            finish_reason="stop",
        ),
        UsageRecord(
            "c4", TS, model="qwen3-8b", prompt="Once upon a time", completion=" there", finish_reason="stop"
        ),
        UsageRecord("c5", TS, model="qwen3-8b", text="hash", prompt_sha256="a" * 64),
        UsageRecord("c6", TS, model="who-knows", messages=MSGS),
        UsageRecord("c7", TS, model="qwen3-8b", messages=MSGS, completion="x", reasoning="thinking..."),
        UsageRecord("c9", TS, model="gpt-4o-mini", messages=MSGS, completion="x", reasoning="thinking..."),
        UsageRecord(
            "c8", TS, estimate={"prompt_tokens": 3, "completion_tokens": 4}, legacy=True, text="legacy"
        ),
    ]
    got = recount(recs, counter_for(table), batch_size=3)
    assert got["c1"] == Recount("ok", qwen.count_messages(MSGS), qwen.count("好的。") + 1, qwen.fingerprint)
    assert got["c2"] == Recount(
        "ok", qwen.count_messages(MSGS, enable_thinking=False), qwen.count("好的。"), qwen.fingerprint
    )
    assert got["c3"] == Recount(
        "ok", gpt.count_messages(MSGS, tools=TOOLS), gpt.count("Sure."), gpt.fingerprint
    )
    assert got["c4"].prompt_tokens == qwen.count("Once upon a time", add_special_tokens=True)
    assert got["c5"] == Recount("not_recountable", None, None, qwen.fingerprint)
    assert got["c6"] == Recount("unknown_model")
    # the thinking as the Qwen3 template writes it, then the stop token
    want = qwen.count("<think>\nthinking...\n</think>\n\nx") + 1
    assert got["c7"] == Recount("ok", qwen.count_messages(MSGS), want, qwen.fingerprint)
    # OpenAI bills hidden reasoning it never returns as text: no recount of that completion
    assert got["c9"] == Recount("ok", gpt.count_messages(MSGS), None, gpt.fingerprint)
    assert got["c8"].status == "not_recountable"
    assert Recount.from_json(got["c1"].to_json()) == got["c1"]


class Picky:
    """A counter whose template fails on one marked chat (to drive the per-item fallback)."""

    name = "picky"
    fingerprint = "0123456789abcdef"
    counts_stop_token = True

    def count(self, text: str, *, add_special_tokens: bool = False) -> int:
        return len(text)

    def count_messages(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Any = None,
        tool_choice: Any = None,
        add_generation_prompt: bool = True,
        **kw: Any,
    ) -> int:
        if any(m.get("content") == "BOOM" for m in messages):
            raise TemplateError("template raised")
        return sum(len(m["content"]) for m in messages)

    def count_batch(self, items: Sequence[BatchItem]) -> list[int]:
        return [self.count(i) if isinstance(i, str) else self.count_messages(i["messages"]) for i in items]


def test_one_bad_template_does_not_spoil_the_batch() -> None:
    recs = [
        UsageRecord("ok", TS, model="m", messages=[{"role": "user", "content": "abc"}], completion="de"),
        UsageRecord("bad", TS, model="m", messages=[{"role": "user", "content": "BOOM"}], completion="de"),
    ]
    got = recount(recs, lambda _m: Picky())
    assert got["ok"] == Recount("ok", 3, 3, Picky.fingerprint)  # completion + 1 stop token
    assert got["bad"] == Recount("error", None, None, Picky.fingerprint)


def test_every_choice_and_every_input_is_counted(table: dict[str, TokenCounter]) -> None:
    qwen = table["qwen3-8b"]
    choices = [
        {"index": 0, "completion": "好的。", "finish_reason": "stop"},
        {"index": 1, "completion": "当然可以，", "finish_reason": "length"},  # no stop token generated
        {"index": 2, "completion": "", "finish_reason": "stop"},
    ]
    recs = [
        UsageRecord("n3", TS, model="qwen3-8b", messages=MSGS, completion="好的。", choices=choices),
        UsageRecord(
            "tc", TS, model="qwen3-8b", messages=MSGS, choices=[*choices, {"index": 3, "tool_calls": [{}]}]
        ),
        UsageRecord("in", TS, model="qwen3-8b", endpoint="completions", inputs=["第一个提示", [1, 2, 3, 4]]),
    ]
    got = recount(recs, counter_for(table))
    want = qwen.count("好的。") + 1 + qwen.count("当然可以，") + 0 + 1
    assert got["n3"] == Recount("ok", qwen.count_messages(MSGS), want, qwen.fingerprint)
    assert got["tc"].completion_tokens is None and got["tc"].prompt_tokens == qwen.count_messages(MSGS)
    assert got["in"].prompt_tokens == qwen.count("第一个提示", add_special_tokens=True) + 4
    assert got["in"].completion_tokens is None


def test_a_choice_without_finish_reason_does_not_take_choice_0s(table: dict[str, TokenCounter]) -> None:
    qwen = table["qwen3-8b"]
    choices = [
        {"index": 0, "completion": "好的。", "finish_reason": "length"},
        {"index": 1, "completion": "好的。"},
    ]
    rec = UsageRecord(
        "n2",
        TS,
        model="qwen3-8b",
        messages=MSGS,
        completion="好的。",
        finish_reason="length",
        choices=choices,
    )
    # choice 0 hit the length limit (no stop token); choice 1 reported nothing: a normal end (stop token)
    assert recount([rec], counter_for(table))["n2"].completion_tokens == 2 * qwen.count("好的。") + 1
