"""The billing rule by outcome: failed calls bill nothing, abandoned and timed-out streams bill what
was delivered (no stop token), and every outcome is a dimension of the day's rows."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from llmtally import load_tokenizer
from llmtally.pipeline import Recount, UsageRecord, billed, parse_day, reconcile, recount
from llmtally.pipeline.billing import outcome, stop_generated
from llmtally.pricing import load_prices
from llmtally.tokens import TokenCounter
from tests.support import tokenizer_source

DAY = date(2026, 11, 20)
TS = datetime(2026, 11, 20, 2, 15, tzinfo=UTC)
MSGS = [{"role": "user", "content": "请把这段话翻译成英文：今天的会议改到下午三点。"}]
REPLY = "The meeting has been moved to 3 pm today."
USAGE = {"prompt_tokens": 40, "completion_tokens": 12}
EST = {"prompt_tokens": 25, "completion_tokens": 30}


def R(rid: str, status: str | None = "ok", **kw: object) -> UsageRecord:
    kw.setdefault("model", "qwen3-8b")
    kw.setdefault("messages", MSGS)
    return UsageRecord(rid, TS, service="svc", status=status, tags={"feature": "f"}, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def qwen() -> TokenCounter:
    return load_tokenizer(tokenizer_source("qwen3"))


@pytest.mark.parametrize(
    ("status", "http", "want"),
    [
        (None, None, "ok"),
        ("", None, "ok"),
        (None, 429, "error"),
        (None, 200, "ok"),
        ("ok", None, "ok"),
        ("error", 503, "error"),
        ("FAILED", None, "error"),
        ("timeout", None, "timeout"),
        ("abandoned", None, "abandoned"),
        ("cancelled", None, "abandoned"),
        ("mystery", None, "other"),
        ("rate_limited", 429, "error"),
        ("mystery", 503, "error"),
        ("timed_out", None, "timeout"),
    ],
)
def test_outcome_of_a_status(status: str | None, http: int | None, want: str) -> None:
    assert outcome(status, http) == want


def test_each_outcome_bills_by_the_rule() -> None:
    rc = Recount("ok", 41, 13, "fp")
    prices = load_prices()
    # ok: reported, else recount, else estimate
    b = billed(R("ok", usage=USAGE, estimate=EST), rc, prices)
    assert (b.prompt_tokens, b.completion_tokens, b.prompt_source, b.outcome, b.uncertain) == (
        40, 12, "reported", "ok", False,
    )  # fmt: skip
    b = billed(R("ok2", estimate=EST), rc)
    assert (b.prompt_tokens, b.completion_tokens, b.completion_source) == (41, 13, "recount")
    # a rate-limited call that carries its messages: recountable, but billed nothing, at cost 0
    b = billed(R("429", status="error", http_status=429, estimate=EST), rc, prices)
    assert (b.prompt_tokens, b.completion_tokens, b.prompt_source, b.completion_source) == (
        0, 0, "not_billed", "not_billed",
    )  # fmt: skip
    assert b.cost is not None and b.cost.amount == Decimal(0)
    b = billed(R("429b", status=None, http_status=429), rc)  # no status, but HTTP says it failed
    assert (b.prompt_tokens, b.outcome) == (0, "error")
    # a failed call whose server did report usage was billed by the server: bill that
    b = billed(R("5xx", status="error", usage=USAGE), rc)
    assert (b.prompt_tokens, b.completion_tokens, b.prompt_source) == (40, 12, "reported")
    # a timeout without usage: the recount, flagged uncertain
    b = billed(R("slow", status="timeout"), rc)
    assert (b.prompt_tokens, b.completion_tokens, b.prompt_source, b.uncertain) == (41, 13, "recount", True)
    assert not billed(R("slow2", status="timeout", usage=USAGE), rc).uncertain
    # an abandoned stream: the prompt and the delivered completion, not uncertain
    b = billed(R("gone", status="abandoned"), rc)
    assert (b.prompt_tokens, b.completion_tokens, b.uncertain, b.outcome) == (41, 13, False, "abandoned")


def test_stop_token_only_where_a_stop_was_generated(qwen: TokenCounter) -> None:
    text = qwen.count(REPLY)
    prompt = qwen.count_messages(MSGS)
    recs = [
        R("stop", completion=REPLY, finish_reason="stop"),
        R("nofinish", completion=REPLY),  # a completed call without finish_reason (transformers helper)
        R("length", completion=REPLY, finish_reason="length"),
        R("abandoned", status="abandoned", completion=REPLY),
        R("abandoned-stop", status="abandoned", completion=REPLY, finish_reason="stop"),
        R("timeout", status="timeout", completion=REPLY),
        R("aborted", completion=REPLY, finish_reason="abort"),
        R("completed", completion=REPLY, finish_reason="completed"),  # the Responses API's word
        R("eos", completion=REPLY, finish_reason="EOS_TOKEN"),
        R("error", status="error", http_status=500, completion=None),
    ]
    counts = recount(recs, {"qwen3-8b": qwen}.__getitem__)
    got = {rid: (rc.status, rc.prompt_tokens, rc.completion_tokens) for rid, rc in counts.items()}
    assert got == {
        "stop": ("ok", prompt, text + 1),
        "nofinish": ("ok", prompt, text + 1),
        "length": ("ok", prompt, text),
        "abandoned": ("ok", prompt, text),
        "abandoned-stop": ("ok", prompt, text),
        "timeout": ("ok", prompt, text),
        "aborted": ("ok", prompt, text),
        "completed": ("ok", prompt, text + 1),
        "eos": ("ok", prompt, text + 1),
        "error": ("ok", prompt, None),
    }
    assert [r.id for r in recs if stop_generated(r)] == ["stop", "nofinish", "completed", "eos"]


CALL_AS_GENERATED = '<think>\n\n</think>\n\n<tool_call>\n{"name": "x", "arguments": {}}\n</tool_call>'


def test_failed_calls_are_requests_by_status_with_zero_tokens(qwen: TokenCounter) -> None:
    recs = [
        R("a", completion=REPLY, finish_reason="stop"),
        R("b", status="error", http_status=429, estimate=EST),
        R("c", status="error", http_status=429, estimate=EST),
        R("d", status="error", http_status=503),
        R("e", status="timeout", completion=REPLY[:10]),
        R("f", status="abandoned", completion=REPLY[:5]),
        R(
            "g", tool_calls=[{"function": {"name": "x", "arguments": "{}"}}]
        ),  # billed as the template writes it
        R("h", tool_calls=[{"function": {"arguments": "{}"}}]),  # no name: completion not recountable
    ]
    counts = recount(recs, {"qwen3-8b": qwen}.__getitem__)
    load = reconcile(recs, counts, day=DAY, tz="UTC", prices=load_prices())
    by_status: dict[tuple[str, int], tuple[int, int, int, int]] = {}
    for h in load.hourly:
        k = (h.status, h.http_status)
        r, p, c, u = by_status.get(k, (0, 0, 0, 0))
        by_status[k] = (
            r + h.requests,
            p + h.prompt_tokens,
            c + h.completion_tokens,
            u + h.uncertain_requests,
        )
    prompt = qwen.count_messages(MSGS)
    assert by_status == {
        ("ok", 0): (3, 3 * prompt, qwen.count(REPLY) + 1 + qwen.count(CALL_AS_GENERATED) + 1, 0),
        ("error", 429): (2, 0, 0, 0),
        ("error", 503): (1, 0, 0, 0),
        ("timeout", 0): (1, prompt, qwen.count(REPLY[:10]), 1),
        ("abandoned", 0): (1, prompt, qwen.count(REPLY[:5]), 0),
    }
    for h in load.hourly:
        if h.status == "error":
            assert h.cost == Decimal(0) and h.unpriced_requests == 0  # qwen3-8b is priced at 0 cost
    q = load.quality
    assert (q.records, q.status_error, q.status_timeout, q.status_abandoned) == (8, 3, 1, 1)
    assert (q.not_billed, q.uncertain, q.completion_missing, q.prompt_recount) == (3, 1, 1, 5)
    assert q.completion_recount == 4
    assert q.prompt_tokens == sum(h.prompt_tokens for h in load.hourly)
    (row,) = load.reconciliation
    assert (row.not_billed, row.completion_missing, row.prompt_recount, row.uncertain) == (3, 1, 5, 1)


@pytest.mark.parametrize(("raw", "want"), [(429, 429), ("503", 503), (200.0, 200), (-1, None), ("x", None),
                                          (True, None), (1000, None), (None, None)])  # fmt: skip
def test_a_bad_http_status_never_costs_a_record(raw: object, want: int | None, tmp_path: Path) -> None:
    line = {"v": 1, "id": "a" * 32, "ts": TS.isoformat(), "model": "m", "http_status": raw, "status": "ok",
            "usage": {"prompt_tokens": 5, "completion_tokens": 2}}  # fmt: skip
    f = tmp_path / "u.jsonl"
    f.write_text(json.dumps(line) + "\n", encoding="utf-8")
    parsed = parse_day([f], DAY, "UTC")
    assert parsed.stats.quarantined == 0 and [r.http_status for r in parsed.records] == [want]
