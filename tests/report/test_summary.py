"""Every number of the JSON summary equals a recomputation from the generated usage_hourly rows."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from llmtally.pricing import ExchangeRate, ExchangeRates
from llmtally.report import ReportSettings, make_report
from tests.report import gen
from tests.report.gen import DAY, Row, on

# USD→CNY changes inside the last 7 days, so each day must use its own rate
USD_CNY = ((date(2026, 11, 1), Decimal("7.0")), (date(2026, 11, 24), Decimal("7.2")))
FX = ExchangeRates("CNY", tuple(ExchangeRate(d, "USD", "CNY", r) for d, r in USD_CNY))


def pct(cur: int, prev: int) -> float | None:
    return round((cur - prev) * 100.0 / prev, 2) if prev else None


def money(rows: list[Row]) -> dict[str, float]:
    acc: dict[str, Decimal] = defaultdict(Decimal)
    for r in rows:
        if r.cost is not None and r.currency:
            acc[r.currency] += r.cost
    return {c: float(round(acc[c], 6)) for c in sorted(acc)}


def usd_cny(day: date) -> Decimal:
    return max((d, r) for d, r in USD_CNY if d <= day)[1]


def cny(rows: list[Row]) -> Decimal:
    """The rows' cost in CNY, each row at the USD rate of its own day (recomputed independently)."""
    return sum(
        (r.cost * (usd_cny(r.day) if r.currency == "USD" else 1) for r in rows if r.cost is not None),
        Decimal(0),
    )


def tokens(rows: list[Row]) -> int:
    return sum(r.prompt_tokens + r.completion_tokens for r in rows)


def top(rows: list[Row], attr: str, total: int) -> list[dict[str, Any]]:
    groups: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        groups[getattr(r, attr)].append(r)
    ranked = sorted(groups, key=lambda k: (-tokens(groups[k]), k))[:10]
    return [
        {
            "name": k,
            "total_tokens": tokens(groups[k]),
            "cost": money(groups[k]),
            "converted_cost": {
                "currency": "CNY",
                "amount": float(round(cny(groups[k]), 6)) if money(groups[k]) else None,
                "complete": True,
                "parts": money(groups[k]),
                "unconverted": {},
                "rates": [{"from": "USD", "to": "CNY", "rate": 7.2, "date": "2026-11-24"}]
                if "USD" in money(groups[k])
                else [],
            },
            "share": round(tokens(groups[k]) / total, 4),
        }
        for k in ranked
    ]


@pytest.fixture(scope="module")
def summary(request: pytest.FixtureRequest, steady_schema: str, pg_dsn: str) -> dict[str, Any]:
    mp = pytest.MonkeyPatch()
    request.addfinalizer(mp.undo)
    mp.setenv("LLMTALLY_DB_SCHEMA", steady_schema)
    settings = ReportSettings(lang="en", fx=FX)
    return dict(make_report(pg_dsn, DAY, timezone=gen.TZ, settings=settings).summary)


def test_totals_equal_recomputation(summary: dict[str, Any], steady_data: gen.Dataset) -> None:
    today = on(steady_data.rows, DAY)
    assert summary["day"] == "2026-11-26"
    assert summary["timezone"] == "Asia/Shanghai"
    assert summary["requests"] == sum(r.requests for r in today)
    assert summary["prompt_tokens"] == sum(r.prompt_tokens for r in today)
    assert summary["completion_tokens"] == sum(r.completion_tokens for r in today)
    assert summary["cached_tokens"] == sum(r.cached_tokens for r in today)
    assert summary["reasoning_tokens"] == sum(r.reasoning_tokens for r in today)
    assert summary["total_tokens"] == tokens(today)
    assert summary["cost"] == money(today)
    assert set(summary["cost"]) == {"CNY", "USD"}
    assert summary["unpriced_requests"] == sum(r.requests for r in today if r.cost is None) > 0


def test_changes_equal_recomputation(summary: dict[str, Any], steady_data: gen.Dataset) -> None:
    t = tokens(on(steady_data.rows, DAY))
    prev = tokens(on(steady_data.rows, DAY - timedelta(days=1)))
    week = tokens(on(steady_data.rows, DAY - timedelta(days=7)))
    last7 = sum(tokens(on(steady_data.rows, DAY - timedelta(days=i))) for i in range(7))
    prev7 = sum(tokens(on(steady_data.rows, DAY - timedelta(days=i))) for i in range(7, 14))
    assert summary["previous_day"].items() >= {"total_tokens": prev, "change_pct": pct(t, prev)}.items()
    assert summary["same_day_last_week"].items() >= {"total_tokens": week, "change_pct": pct(t, week)}.items()
    want = {"total_tokens": last7, "previous_total_tokens": prev7, "change_pct": pct(last7, prev7)}
    assert summary["last_7_days"].items() >= want.items()


def test_costs_in_the_reporting_currency(summary: dict[str, Any], steady_data: gen.Dataset) -> None:
    """One CNY number per day, each day at the USD rate in force on it, with the parts beside it."""
    rows = steady_data.rows

    def span(end: date, days: int) -> list[Row]:
        return [r for i in range(days) for r in on(rows, end - timedelta(days=i))]

    def close(got: float | None, want: Decimal) -> bool:
        return got is not None and abs(Decimal(str(got)) - want) < Decimal("0.000001")

    today = on(rows, DAY)
    cc = summary["converted_cost"]
    assert summary["report_currency"] == "CNY" and cc["currency"] == "CNY" and cc["complete"]
    assert cc["parts"] == summary["cost"] and set(cc["parts"]) == {"CNY", "USD"}
    assert close(cc["amount"], cny(today))
    assert cc["amount"] != round(summary["cost"]["CNY"] + summary["cost"]["USD"] * 7.0, 6)  # not the old rate
    assert cc["rates"] == [{"from": "USD", "to": "CNY", "rate": 7.2, "date": "2026-11-24"}]
    prev = summary["previous_day"]["converted_cost"]
    assert close(prev["amount"], cny(on(rows, DAY - timedelta(days=1))))
    week = summary["same_day_last_week"]["converted_cost"]  # 19 November: the 7.0 rate
    assert close(week["amount"], cny(on(rows, DAY - timedelta(days=7))))
    assert week["rates"] == [{"from": "USD", "to": "CNY", "rate": 7.0, "date": "2026-11-01"}]
    last7 = summary["last_7_days"]
    assert close(last7["converted_cost"]["amount"], cny(span(DAY, 7)))  # both rates in this span
    assert len(last7["converted_cost"]["rates"]) == 2
    assert close(last7["previous_converted_cost"]["amount"], cny(span(DAY - timedelta(days=7), 7)))
    now, before = cny(span(DAY, 7)), cny(span(DAY - timedelta(days=7), 7))
    assert last7["cost_change_pct"] == round(float((now - before) * 100 / before), 2)


def test_top_and_hourly_equal_recomputation(summary: dict[str, Any], steady_data: gen.Dataset) -> None:
    today = on(steady_data.rows, DAY)
    total = tokens(today)
    for dim, attr in (
        ("feature", "feature"),
        ("model", "model"),
        ("user", "user_id"),
        ("service", "service"),
    ):
        assert summary["top"][dim] == top(today, attr, total), dim
    shanghai = [(r.hour + timedelta(hours=8)).hour for r in today]
    for h in range(24):
        rows = [r for r, lh in zip(today, shanghai, strict=True) if lh == h]
        assert summary["hourly"][h]["total_tokens"] == tokens(rows)
        assert summary["hourly"][h]["requests"] == sum(r.requests for r in rows)
    week = on(steady_data.rows, DAY - timedelta(days=7))
    assert sum(h["same_day_last_week_total_tokens"] for h in summary["hourly"]) == tokens(week)
    assert [d["total_tokens"] for d in summary["daily"]] == [
        tokens(on(steady_data.rows, DAY - timedelta(days=27 - i))) for i in range(28)
    ]


def test_reconciliation_and_top_requests(summary: dict[str, Any], steady_data: gen.Dataset) -> None:
    rc = summary["reconciliation"]
    assert rc["records"] == sum(r["records"] for r in steady_data.recon) == 2490
    assert rc["recounted"] == 2390
    assert rc["unknown_model"] == 90 and rc["unknown_models"] == ["mystery-model"]
    assert rc["estimate_error_pct"] == {"cs-bot": 5.0, "writer": 12.3}
    assert rc["estimate_bias_pct"] == {"cs-bot": 2.0, "writer": -10.0}
    assert [(d["model"], d["drift_records"]) for d in rc["drift"]] == [("gpt-4o", 12)]
    assert rc["tokenizer_changes"] == []  # no earlier recounts in this data set
    assert [t["total_tokens"] for t in summary["top_requests"]] == sorted(
        (t["total_tokens"] for t in steady_data.top), reverse=True
    )
    assert all(
        set(t) >= {"prompt_sha256", "tags", "cost"} and "text" not in t for t in summary["top_requests"]
    )


def test_day_and_week_boundaries_in_shanghai(pg_dsn: str, use_schema: Any) -> None:
    """Rows one UTC hour apart across local midnight land on different days."""
    import secrets

    import psycopg

    def at(utc: datetime, n: int) -> Row:
        local = utc.astimezone(gen.ZoneInfo(gen.TZ))
        return Row(day=local.date(), hour=utc, model="gpt-4o", feature="f", user_id="u", tenant="t",
                   service="s", requests=1, prompt_tokens=n, completion_tokens=0)  # fmt: skip

    u = lambda *a: datetime(*a, tzinfo=UTC)  # noqa: E731
    rows = [
        at(u(2026, 11, 25, 15), 1_000),  # 25th 23:00 local: previous day
        at(u(2026, 11, 25, 16), 2_000),  # 26th 00:00 local: the day
        at(u(2026, 11, 26, 15), 4_000),  # 26th 23:00 local: the day
        at(u(2026, 11, 26, 16), 8_000),  # 27th 00:00 local: not reported
        at(u(2026, 11, 18, 15), 16_000),  # 18th 23:00 local: D-8
        at(u(2026, 11, 18, 16), 32_000),  # 19th 00:00 local: same weekday last week (D-7)
        at(u(2026, 11, 19, 16), 64_000),  # 20th 00:00 local: D-6, inside the last 7 days
        at(u(2026, 11, 12, 16), 128_000),  # 13th 00:00 local: D-13, inside the 7 before
        at(u(2026, 11, 12, 15), 256_000),  # 12th 23:00 local: D-14, outside both
    ]
    schema = f"report_b_{secrets.token_hex(3)}"
    gen.load(pg_dsn, schema, gen.Dataset(rows=rows))
    try:
        use_schema(schema)
        s = make_report(pg_dsn, date(2026, 11, 26), lang="en", timezone=gen.TZ).summary
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    assert s["total_tokens"] == 6_000
    assert s["previous_day"].items() >= {"total_tokens": 1_000, "change_pct": 500.0}.items()
    assert s["same_day_last_week"].items() >= {"total_tokens": 32_000, "change_pct": -81.25}.items()
    want = {"total_tokens": 71_000, "previous_total_tokens": 176_000, "change_pct": -59.66}
    assert s["last_7_days"].items() >= want.items()
    assert s["hourly"][0]["total_tokens"] == 2_000 and s["hourly"][23]["total_tokens"] == 4_000
    assert s["anomalies"] == []


def test_tokenizer_fingerprint_change_is_reported() -> None:
    from datetime import date

    from llmtally.report._compute import _reconciliation

    today = [gen.recon("qwen-plus", "cs-bot", "fp-new", records=10, recounted=10),
             gen.recon("gpt-4o", "writer", "fp-o200k", records=5, recounted=5),
             gen.recon("mystery", "lab", "", records=3)]  # fmt: skip
    earlier = [("qwen-plus", "cs-bot", date(2026, 11, 18), "fp-old"),
               ("qwen-plus", "cs-bot", date(2026, 11, 24), "fp-old"),
               ("qwen-plus", "cs-bot", date(2026, 11, 24), "fp-other"),
               ("gpt-4o", "writer", date(2026, 11, 25), "fp-o200k")]  # fmt: skip
    changes = _reconciliation(today, earlier)["tokenizer_changes"]
    assert changes == [
        {"model": "qwen-plus", "service": "cs-bot", "since": "2026-11-24", "before": ["fp-old", "fp-other"],
         "after": "fp-new"}
    ]  # fmt: skip
