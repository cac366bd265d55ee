"""A day aggregated in parts (recount shards) and merged equals the day aggregated whole, exactly: the
same rows, the same decimals, the same floats, through the staging codec, for any split (hypothesis)."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from llmtally._plain import from_plain, to_plain
from llmtally.pipeline import ParseStats, Recount, UsageRecord, reconcile
from llmtally.pipeline.reconcile import DayAggregator, DayPartial, finish
from llmtally.pricing import load_prices

DAY = date(2026, 11, 20)
TZ = "Asia/Kolkata"
PRICES = load_prices()
MODELS = ("gpt-4o-mini", "qwen-plus", "deepseek-chat", "no-such-model")


def _day(n: int, seed: int) -> tuple[list[UsageRecord], dict[str, Recount]]:
    """``n`` records of every kind the billing rule tells apart, with recounts that drift sometimes."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 19, 18, 30, tzinfo=UTC)  # local midnight in Kolkata
    records, recounts = [], {}
    for i in range(n):
        p, c = rng.randint(1, 3000), rng.randint(0, 800)
        status = rng.choice(["ok", "ok", "ok", "error", "timeout", "abandoned", None])
        usage = {"prompt_tokens": p, "completion_tokens": c} if rng.random() < 0.6 else None
        estimate = (
            {"prompt_tokens": p + rng.randint(-40, 40), "completion_tokens": c}
            if rng.random() < 0.5
            else None
        )
        rid = f"{i:032x}"
        records.append(UsageRecord(
            rid, start + timedelta(seconds=rng.randint(0, 86_399)), source=f"/logs/f{i % 7}.jsonl", line=i + 1,
            service=rng.choice(["chat", "rag", "bot"]), model=rng.choice(MODELS), usage=usage, estimate=estimate,
            tags={"feature": rng.choice(["写作", "chat", ""]), "user": f"u{rng.randint(1, 40)}",
                  "tenant": rng.choice(["acme", "globex"])},
            prompt_sha256=rng.choice(["a" * 64, "b" * 64, f"{i:064x}"]), status=status,
            http_status=rng.choice([None, 429, 500]) if status == "error" else None,
            legacy=rng.random() < 0.05,
        ))  # fmt: skip
        if rng.random() < 0.8:
            recounts[rid] = Recount(rng.choice(["ok", "ok", "ok", "error", "unknown_model", "not_recountable"]),
                                    p + rng.choice([0, 0, 0, 1, -2]), c, f"fp{rng.randint(1, 2)}")  # fmt: skip
    return records, recounts


RECORDS, RECOUNTS = _day(1500, seed=3)


def _whole(records: list[UsageRecord], **kw: Any) -> Any:
    return reconcile(records, RECOUNTS, day=DAY, tz=TZ, prices=PRICES, stats=ParseStats(records=len(records)),
                     run_id="r", **kw)  # fmt: skip


def _parts(records: list[UsageRecord], cuts: list[int], **kw: Any) -> Any:
    parts = []
    bounds = [0, *sorted(cuts), len(records)]
    for a, b in itertools.pairwise(bounds):
        agg = DayAggregator(DAY, TZ, prices=PRICES)
        for chunk_start in range(a, b, 97):  # several add() calls per part, as a shard's slices
            agg.add(records[chunk_start : min(b, chunk_start + 97)], RECOUNTS)
        parts.append(from_plain(DayPartial, to_plain(agg.partial())))  # through the staging codec
    return finish(parts, day=DAY, tz=TZ, stats=ParseStats(records=len(records)), run_id="r", **kw)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=len(RECORDS)), max_size=12), st.none() | st.integers(0, 99)
)
def test_any_split_merges_to_the_whole_day(cuts: list[int], shuffle: int | None) -> None:
    records = list(RECORDS)
    if shuffle is not None:  # shards need not see records in time order
        random.Random(shuffle).shuffle(records)
    whole, merged = _whole(records), _parts(records, cuts)
    assert whole.hourly == merged.hourly
    assert whole.reconciliation == merged.reconciliation  # the estimate errors' float sums included
    assert whole.top_requests == merged.top_requests
    assert whole.digests == merged.digests
    assert whole.quality == merged.quality
    assert whole.ledger.sources == merged.ledger.sources and whole.ledger.records == merged.ledger.records


def test_the_fold_applies_to_the_merged_day() -> None:
    limits = {"user_id": 5, "tenant": 100}
    whole, merged = (
        _whole(RECORDS, max_distinct=limits),
        _parts(RECORDS, [300, 301, 900], max_distinct=limits),
    )
    assert whole.folds and whole.folds == merged.folds
    assert whole.hourly == merged.hourly
    assert sum(r.requests for r in merged.hourly) == len(RECORDS)
    assert sum((r.cost or Decimal(0)) for r in merged.hourly) > 0


def test_the_estimate_error_sums_do_not_depend_on_order() -> None:
    # float addition is not associative: the sums are kept exact, so every order rounds alike
    forward, backward = _whole(RECORDS), _whole(list(reversed(RECORDS)))
    assert [r.estimate_ape_sum for r in forward.reconciliation] == [
        r.estimate_ape_sum for r in backward.reconciliation
    ]
    assert any(r.estimate_ape_sum for r in forward.reconciliation)
