"""evaluate(): the spend of each budget's current period (report time zone, the store's ``day``
column), converted currencies, the linear projection and the day the limit runs out."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from llmtally import ConfigError
from llmtally._time import zone
from llmtally.budgets import Budget, evaluate, parse_budgets, period_of, projection, spend_line
from llmtally.budgets._words import notes
from llmtally.pricing import ExchangeRate, ExchangeRates
from tests.budgets.days import Use, load

SH, KOL = "Asia/Shanghai", "Asia/Kolkata"


def tokens(name: str, limit: int, period: str = "month", **kw: Any) -> Budget:
    return Budget(name, Decimal(limit), "tokens", period=period, **kw)


def local(tz: str, *args: int) -> datetime:
    return datetime(*args, tzinfo=zone(tz))  # type: ignore[misc]


# Days 28 November (Saturday) to 8 December 2026, each with its own power of two of tokens, so a
# sum names exactly the days it covers.
DAYS = [date(2026, 11, 28) + timedelta(days=i) for i in range(11)]


def day_sum(*days: date) -> int:
    return sum(2 ** DAYS.index(d) for d in days)


def span(first: date, last: date) -> list[date]:
    return [d for d in DAYS if first <= d <= last]


@pytest.mark.parametrize("tz", [SH, KOL])
@pytest.mark.parametrize(
    ("moment", "period", "first", "last", "days"),
    [
        # local midnight ends the day before: Monday 30 November's day, week and November
        ((2026, 12, 1), "day", date(2026, 11, 30), date(2026, 11, 30), [date(2026, 11, 30)]),
        ((2026, 12, 1), "week", date(2026, 11, 30), date(2026, 12, 6), [date(2026, 11, 30)]),
        ((2026, 12, 1), "month", date(2026, 11, 1), date(2026, 11, 30), span(DAYS[0], date(2026, 11, 30))),
        # a second later it is 1 December
        ((2026, 12, 1, 0, 0, 1), "day", date(2026, 12, 1), date(2026, 12, 1), [date(2026, 12, 1)]),
        ((2026, 12, 1, 0, 0, 1), "week", date(2026, 11, 30), date(2026, 12, 6), span(date(2026, 11, 30), date(2026, 12, 1))),
        ((2026, 12, 1, 0, 0, 1), "month", date(2026, 12, 1), date(2026, 12, 31), [date(2026, 12, 1)]),
        # Sunday night is still the week of Monday 30 November; Monday 7 December starts the next
        ((2026, 12, 6, 23, 59), "week", date(2026, 11, 30), date(2026, 12, 6), span(date(2026, 11, 30), date(2026, 12, 6))),
        ((2026, 12, 7, 12), "week", date(2026, 12, 7), date(2026, 12, 13), [date(2026, 12, 7)]),
        ((2026, 12, 7, 12), "month", date(2026, 12, 1), date(2026, 12, 31), span(date(2026, 12, 1), date(2026, 12, 7))),
    ],
)  # fmt: skip
def test_period_boundaries_in_the_report_time_zone(
    store: Any, tz: str, moment: tuple[int, ...], period: str, first: date, last: date, days: list[date]
) -> None:
    load(store, tz, {d: [Use(2**i, 0)] for i, d in enumerate(DAYS)})
    now = local(tz, *moment)
    (status,) = evaluate(store, [tokens("b", 10**6, period)], now=now, tz=tz)
    assert (status.period.first, status.period.last) == (first, last)
    assert status.spend == day_sum(*days), "spend counts the period's days up to now, no later day"
    assert status.period.start == datetime(first.year, first.month, first.day, tzinfo=zone(tz))
    assert status.through == now and status.timezone == tz


def test_the_same_instant_is_another_period_in_another_zone() -> None:
    instant = datetime(2026, 11, 30, 17, 0, tzinfo=UTC)  # Shanghai 1 Dec 01:00, Kolkata 30 Nov 22:30
    assert period_of("month", instant, SH).first == date(2026, 12, 1)
    assert period_of("month", instant, KOL).first == date(2026, 11, 1)
    assert period_of("day", instant, KOL).first == date(2026, 11, 30)
    month = period_of("month", instant, KOL)
    assert month.start == datetime(2026, 10, 31, 18, 30, tzinfo=UTC) and month.seconds == 30 * 86400


def test_match_selects_tenant_feature_user_model_and_service(store: Any) -> None:
    d = date(2026, 12, 3)
    load(store, SH, {d: [
        Use(100, 10),                                   # chat / acme / u1: in
        Use(200, 20, tenant="globex"),                  # in (a listed tenant)
        Use(400, 40, tenant="initech"),                 # another tenant
        Use(800, 80, feature="search"),                 # another feature
        Use(1600, 160, user="u2"),                      # another user
        Use(3200, 320, model="gpt-4o"),                 # in for "all", out for the model budget
        Use(6400, 640, service="batch"),                # another service
    ]})  # fmt: skip
    budgets = parse_budgets([
        {"name": "combo", "limit": 10**6, "unit": "tokens",
         "match": {"feature": "chat", "tenant": ["acme", "globex"], "user": "u1", "service": "api"}},
        {"name": "model", "limit": 10**6, "unit": "tokens", "match": {"model": "qwen-plus"}},
        {"name": "all", "limit": 10**6, "unit": "tokens"},
    ])  # fmt: skip
    combo, model, everything = evaluate(store, budgets, now=local(SH, 2026, 12, 4), tz=SH)
    assert combo.spend == 110 + 220 + 3520
    assert model.spend == sum((100 + 200 + 400 + 800 + 1600 + 6400) * k for k in (1, 0.1)) == 10450
    assert everything.spend == 12700 * 11 // 10


def test_currency_limits_convert_each_day_at_its_rate_and_list_what_cannot(store: Any) -> None:
    rates = ExchangeRates("CNY", (
        ExchangeRate(date(2026, 11, 1), "USD", "CNY", Decimal("7.1")),
        ExchangeRate(date(2026, 12, 2), "USD", "CNY", Decimal("7.2")),
    ))  # fmt: skip
    load(store, SH, {
        date(2026, 12, 1): [Use(10, 1, "10", "USD"), Use(10, 1, "5", "CNY", tenant="globex")],
        date(2026, 12, 2): [Use(10, 1, "10", "USD"), Use(10, 1, "3", "SGD"), Use(10, 1, None, tenant="x")],
    })  # fmt: skip
    cny = Budget("cny", Decimal(1000), "CNY")
    usd = Budget("usd", Decimal(1000), "USD")
    a, b = evaluate(store, [cny, usd], now=local(SH, 2026, 12, 3), tz=SH, rates=rates)
    assert a.spend == Decimal("71.0") + 5 + Decimal("72.0")
    assert a.unconverted == {"SGD": Decimal("3")} and not a.complete
    assert a.unpriced_requests == 1
    assert b.spend == 10 + Decimal(5) / Decimal("7.1") + 10
    assert a.as_dict()["unconverted"] == {"SGD": 3.0} and a.as_dict()["complete"] is False
    en, zh = notes(a, "en"), notes(a, "zh")
    assert en == [
        "3.00 SGD not counted: no SGD→CNY exchange rate in force ([[currency.rates]])",
        "1 requests without a price are not in the spend",
    ]
    assert zh[0].startswith("3.00 SGD 未计入") and "SGD→CNY" in zh[0] and "1 个没有价格的请求未计入" in zh[1]


def test_without_rates_only_the_budgets_own_currency_counts(store: Any) -> None:
    load(store, SH, {date(2026, 12, 1): [Use(1, 1, "10", "USD"), Use(1, 1, "7", "CNY")]})
    (s,) = evaluate(store, [Budget("cny", Decimal(100), "CNY")], now=local(SH, 2026, 12, 2), tz=SH)
    assert s.spend == 7 and s.unconverted == {"USD": Decimal("10")}


def _month_of_1000_a_day(store: Any) -> None:
    load(store, SH, {date(2026, 12, d): [Use(600, 400, "1000", "CNY")] for d in range(1, 10)})


def test_projection_and_the_day_the_limit_runs_out(store: Any) -> None:
    _month_of_1000_a_day(store)
    now = local(SH, 2026, 12, 10)  # nine whole days of December: 9,000 at 1,000 a day
    runs, lasts, spent, idle = evaluate(store, [
        Budget("runs", Decimal(20500), "CNY"),
        Budget("lasts", Decimal(40000), "CNY"),
        Budget("spent", Decimal(9000), "CNY"),
        Budget("idle", Decimal(5000), "CNY", match=(("tenant", ("nobody",)),)),
    ], now=now, tz=SH)  # fmt: skip
    assert runs.spend == 9000 and runs.projected == 31000 and runs.share == pytest.approx(9000 / 20500)
    assert runs.runs_out_at == local(SH, 2026, 12, 21, 12) and runs.runs_out == date(2026, 12, 21)
    assert projection(runs, "en") == "at this rate the month's ¥20,500.00 runs out on 21 December"
    assert projection(runs, "zh") == "按当前速度，本月 ¥20,500.00 的预算将在 12月21日 用完"
    assert spend_line(runs, "en") == "¥9,000.00 of ¥20,500.00 spent this month (43.9%)"
    assert spend_line(runs, "zh") == "本月已用 ¥9,000.00 / ¥20,500.00（43.9%）"
    assert runs.as_dict()["runs_out"] == "2026-12-21" and runs.as_dict()["projected"] == 31000.0
    assert lasts.runs_out is None and lasts.projected == 31000
    assert projection(lasts, "en") == "at this rate the month ends at ¥31,000.00 (77.5% of ¥40,000.00)"
    assert projection(lasts, "zh") == "按当前速度，本月预计用到 ¥31,000.00（¥40,000.00 的 77.5%）"
    assert spent.exhausted and spent.runs_out is None and spent.crossed == (0.8, 0.95, 1.0)
    assert projection(spent, "en") == "the month's ¥9,000.00 is used up"
    assert projection(spent, "zh") == "本月 ¥9,000.00 的预算已用完"
    assert idle.spend == 0 and idle.projected is None and idle.runs_out is None
    assert (
        projection(idle, "en") == "nothing spent yet this month" and projection(idle, "zh") == "本月尚无用量"
    )


def test_a_week_and_a_day_project_over_their_own_length(store: Any) -> None:
    _month_of_1000_a_day(store)
    week = Budget("week", Decimal(5500), "CNY", period="week")  # Monday 7 to Sunday 13 December
    (w,) = evaluate(store, [week], now=local(SH, 2026, 12, 10), tz=SH)
    assert (w.period.first, w.spend, w.projected) == (date(2026, 12, 7), 3000, 7000)
    assert w.runs_out == date(2026, 12, 12)
    assert projection(w, "en") == "at this rate the week's ¥5,500.00 runs out on 12 December"
    day = Budget("day", Decimal(1500), "CNY", period="day")
    (d,) = evaluate(store, [day], now=local(SH, 2026, 12, 9, 12), tz=SH)  # 1,000 by noon
    assert d.projected == 2000 and d.runs_out_at == local(SH, 2026, 12, 9, 18)
    assert projection(d, "en") == "at this rate the day's ¥1,500.00 runs out at about 18:00"
    assert projection(d, "zh") == "按当前速度，当天 ¥1,500.00 的预算将在 18:00 左右用完"


def test_tokens_are_billed_prompt_plus_completion(store: Any) -> None:
    _month_of_1000_a_day(store)
    (s,) = evaluate(store, [tokens("t", 40_000)], now=local(SH, 2026, 12, 10), tz=SH)
    assert s.spend == 9000 and s.as_dict()["spend"] == 9000 and s.as_dict()["limit"] == 40_000
    assert spend_line(s, "en") == "9,000 tokens of 40,000 tokens spent this month (22.5%)"


def test_now_must_be_aware(store: Any) -> None:
    with pytest.raises(ConfigError, match="aware"):
        evaluate(store, [tokens("t", 5)], now=datetime(2026, 12, 1), tz=SH)
    with pytest.raises(ConfigError, match="unknown time zone"):
        evaluate(store, [tokens("t", 5)], now=datetime(2026, 12, 1, tzinfo=UTC), tz="Mars/Base")
