"""Billed numbers and the day's aggregates from explicit recount numbers."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from llmtally.pipeline import ParseStats, Recount, UsageRecord, billed, reconcile
from llmtally.pricing import load_prices
from llmtally.store import FoldEntry

DAY = date(2026, 11, 20)
T0 = datetime(2026, 11, 20, 2, 15, tzinfo=UTC)
T1 = datetime(2026, 11, 20, 3, 5, tzinfo=UTC)
TAGS = {"feature": "chat", "user": "u1", "tenant": "acme"}


def R(rid: str, ts: datetime = T0, model: str = "gpt-4o-mini", **kw: object) -> UsageRecord:
    return UsageRecord(rid, ts, service="svc", model=model, tags=TAGS, prompt_sha256="d" * 64, **kw)  # type: ignore[arg-type]


def test_billed_prefers_reported_then_recount_then_estimate() -> None:
    est = {"prompt_tokens": 50, "completion_tokens": 60}
    rec = R("a", usage={"prompt_tokens": 10, "completion_tokens": None}, estimate=est)
    b = billed(rec, Recount("ok", 11, 21, "fp"))
    assert (b.prompt_tokens, b.prompt_source, b.completion_tokens, b.completion_source) == (
        10,
        "reported",
        21,
        "recount",
    )
    b = billed(R("b", estimate=est), Recount("unknown_model"))
    assert (b.prompt_tokens, b.completion_tokens, b.prompt_source) == (50, 60, "estimate")
    b = billed(R("c"), None)
    assert (b.prompt_tokens, b.completion_tokens, b.prompt_source) == (0, 0, "missing")
    prices = load_prices()
    b = billed(
        R("d", usage={"prompt_tokens": 1000, "completion_tokens": 1000, "cached_tokens": 400}), None, prices
    )
    assert b.cost is not None
    # (600 uncached * 0.15 + 400 cached * 0.075 + 1000 * 0.60) per 1M tokens, in gpt-4o-mini's currency
    assert (b.cost.amount, b.cost.currency) == (Decimal("0.00072"), "USD")
    assert (
        billed(
            R("e", model="my-own-model", usage={"prompt_tokens": 1, "completion_tokens": 1}), None, prices
        ).cost
        is None
    )


def test_aggregates_drift_and_estimate_error() -> None:
    u = lambda p, c: {"prompt_tokens": p, "completion_tokens": c}  # noqa: E731
    recs = [
        R("r1", usage=u(100, 20), estimate=u(90, 30)),  # recount agrees
        R("r2", usage=u(103, 20), estimate=u(100, 20)),  # drift +3 on the prompt
        R("r3", T1, estimate=u(10, 10)),  # billed from the recount
        R("r4", T1, model="mystery", usage=u(7, 7)),  # unknown model
        UsageRecord("r5", T1, service="legacy", estimate=u(5, 6), legacy=True, text="legacy"),
    ]
    rcs = {
        "r1": Recount("ok", 100, 20, "fp1"),
        "r2": Recount("ok", 100, 20, "fp1"),
        "r3": Recount("ok", 12, 8, "fp1"),
        "r4": Recount("unknown_model"),
        "r5": Recount("not_recountable"),
    }
    load = reconcile(
        recs, rcs, day=DAY, prices=load_prices(), stats=ParseStats(records=5), top_n=2, run_id="run-1"
    )
    rows = {(h.hour.hour, h.model): h for h in load.hourly}
    h2 = rows[(2, "gpt-4o-mini")]
    assert (h2.requests, h2.prompt_tokens, h2.completion_tokens, h2.recounted_prompt_tokens) == (
        2,
        203,
        40,
        200,
    )
    assert (h2.estimated_prompt_tokens, h2.estimated_completion_tokens, h2.unpriced_requests) == (190, 50, 0)
    assert h2.cost == Decimal("203") * Decimal("0.15") / 10**6 + Decimal("40") * Decimal("0.60") / 10**6
    h3 = rows[(3, "gpt-4o-mini")]
    assert (h3.prompt_tokens, h3.completion_tokens, h3.estimated_prompt_tokens) == (12, 8, 10)
    assert rows[(3, "mystery")].cost is None and rows[(3, "mystery")].unpriced_requests == 1
    legacy = rows[(3, "")]
    assert (legacy.prompt_tokens, legacy.completion_tokens, legacy.service) == (5, 6, "legacy")
    recon = {(r.model, r.fingerprint): r for r in load.reconciliation}
    g = recon[("gpt-4o-mini", "fp1")]
    assert (g.records, g.recounted, g.drift_records, g.prompt_drift_tokens, g.prompt_drift_abs_tokens) == (
        3,
        3,
        1,
        3,
        3,
    )
    assert g.estimated == 3
    errs = [(120 - 120) / 120, (120 - 123) / 123, (20 - 20) / 20]
    assert abs(g.estimate_ape_sum - sum(abs(e) for e in errs)) < 1e-12
    assert (
        g.estimate_mape_pct is not None
        and abs(g.estimate_mape_pct - 100 * sum(abs(e) for e in errs) / 3) < 1e-9
    )
    assert recon[("mystery", "")].unknown_model == 1 and recon[("", "")].not_recountable == 1
    q = load.quality
    assert (q.records, q.prompt_tokens, q.completion_tokens) == (5, 227, 61)
    assert (q.prompt_reported, q.prompt_recount, q.prompt_estimate, q.drift_records, q.legacy_records) == (
        3,
        1,
        1,
        1,
        1,
    )
    assert [t.record_id for t in load.top_requests] == ["r2", "r1"]
    assert load.top_requests[0].total_tokens == 123 and load.top_requests[0].tags == TAGS
    assert [(d.requests, d.total_tokens) for d in load.digests] == [(4, 123 + 120 + 20 + 14)]
    assert load.ledger is not None and load.ledger.run_id == "run-1" and load.ledger.records == 5


def test_loss_markers_merge_into_episodes_and_count_in_quality() -> None:
    from datetime import timedelta

    from llmtally.pipeline.reconcile import merge_losses
    from llmtally.store import LossEntry

    def L(
        start: datetime, minutes: float, records: int, reason: str = "queue full", host: str = "h"
    ) -> LossEntry:
        return LossEntry(DAY, "svc", host, records, start, start + timedelta(minutes=minutes), reason)

    markers = [
        L(T0, 1, 10),
        L(T0 + timedelta(minutes=5), 1, 5),  # 4 minutes after the first ended: the same episode
        L(T0 + timedelta(minutes=20), 0, 1),  # 14 minutes later: a new one
        L(T0, 0, 7, reason="disk full"),
        L(T0, 0, 2, host="h2"),
    ]
    merged = merge_losses(markers)
    assert [(e.host, e.reason, e.records, e.first_ts, e.last_ts) for e in merged] == [
        ("h", "disk full", 7, T0, T0),
        ("h", "queue full", 15, T0, T0 + timedelta(minutes=6)),
        ("h", "queue full", 1, T0 + timedelta(minutes=20), T0 + timedelta(minutes=20)),
        ("h2", "queue full", 2, T0, T0),
    ]
    load = reconcile(
        [R("a", usage={"prompt_tokens": 1, "completion_tokens": 1})], {}, day=DAY, losses=markers
    )
    assert load.quality.lost_records == 25 and load.quality.loss_markers == 5
    assert list(load.losses) == merged
    assert load.quality.records == 1  # losses never enter the totals
    stats = ParseStats(records=1, loss_markers=9, lost_records=99)  # the parser counts beyond what it keeps
    load = reconcile([R("a", usage={"prompt_tokens": 1, "completion_tokens": 1})], {}, day=DAY, stats=stats)
    assert (load.quality.lost_records, load.quality.loss_markers) == (99, 9)


def test_users_and_tenants_over_the_limit_fold_into_other_with_exact_totals() -> None:
    """A burst of random user ids cannot blow up usage_hourly: the limit's top spenders stay."""
    prices = load_prices()
    recs = []
    for i in range(40):  # user u00 bills most; ids u00..u39 in one service; tenant per 10 users
        usage = {"prompt_tokens": 1000 - 10 * i, "completion_tokens": 5}
        tags = {"feature": "chat", "user": f"u{i:02d}", "tenant": f"t{i // 10}"}
        recs.append(UsageRecord(f"r{i}", T0, service="svc", model="gpt-4o-mini", tags=tags, usage=usage))
        recs.append(UsageRecord(f"s{i}", T1, service="svc", model="gpt-4o-mini", tags=tags, usage=usage))
    recs.append(
        UsageRecord(
            "anon", T0, service="svc", model="gpt-4o-mini", usage={"prompt_tokens": 1, "completion_tokens": 1}
        )
    )
    recs += [
        UsageRecord(
            f"o{i}",
            T0,
            service="other",
            model="gpt-4o-mini",
            tags={"user": f"x{i}"},
            usage={"prompt_tokens": 1, "completion_tokens": 1},
        )
        for i in range(8)
    ]
    plain = reconcile(recs, {}, day=DAY, tz="UTC", prices=prices, max_distinct={})
    load = reconcile(recs, {}, day=DAY, tz="UTC", prices=prices, max_distinct={"user_id": 10, "tenant": 3})
    users = {h.user_id for h in load.hourly if h.service == "svc"}
    assert users == {f"u{i:02d}" for i in range(10)} | {"(other)", ""}
    assert {h.user_id for h in load.hourly if h.service == "other"} == {f"x{i}" for i in range(8)}
    assert {h.tenant for h in load.hourly if h.service == "svc"} == {"t0", "t1", "t2", "(other)", ""}
    for col in ("requests", "prompt_tokens", "completion_tokens"):
        assert sum(getattr(h, col) for h in load.hourly) == sum(getattr(h, col) for h in plain.hourly)
    assert sum(h.cost for h in load.hourly if h.cost) == sum(h.cost for h in plain.hourly if h.cost)
    other = [h for h in load.hourly if h.user_id == "(other)"]
    assert sum(h.requests for h in other) == 60 and len({h.hour for h in other}) == 2
    tail = sum(2 * (1000 - 10 * i + 5) for i in range(10, 40))
    assert load.folds == [
        FoldEntry(
            DAY,
            "svc",
            "tenant",
            3,
            4,
            1,
            requests=20,
            tokens=sum(2 * (1000 - 10 * i + 5) for i in range(30, 40)),
        ),
        FoldEntry(DAY, "svc", "user_id", 10, 40, 30, requests=60, tokens=tail),
    ]
    assert (load.quality.folded_values, load.quality.folded_requests) == (31, 80)
    assert plain.folds == [] and plain.quality.folded_values == 0
    # the default limit (100,000 per service and day) leaves an ordinary day alone
    assert reconcile(recs, {}, day=DAY, tz="UTC", prices=prices).folds == []
