"""Budget status in the daily report (HTML, text, JSON summary) and on the usage page."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from llmtally._time import zone
from llmtally.budgets import Budget, budget_findings, evaluate
from llmtally.pricing import ExchangeRate, ExchangeRates
from llmtally.report import ReportSettings, make_report
from tests.budgets.days import Use, load

TZ = "Asia/Shanghai"
DAY = date(2026, 12, 9)
FX = ExchangeRates("CNY", (ExchangeRate(date(2026, 11, 1), "USD", "CNY", Decimal("7")),))
MONTHLY = Budget("monthly", Decimal(10000), "CNY", match=(("feature", ("chat",)),))
WEEKLY = Budget("weekly-tokens", Decimal(50_000), "tokens", period="week")


def _fill(store: Any) -> None:
    # 1,000 CNY and 1,100 tokens a day in chat, 1-9 December; search is priced in SGD (no rate)
    load(store, TZ, {
        date(2026, 12, d): [Use(600, 400, "700", "CNY"), Use(100, 0, "300", "CNY", user="u2"),
                            Use(50, 50, "5", "SGD", feature="search")]
        for d in range(1, 10)
    })  # fmt: skip


def _claim(store: Any) -> None:
    now = datetime(2026, 12, 9, 12, tzinfo=zone(TZ))
    budget_findings(evaluate(store, [MONTHLY], now=now, tz=TZ, rates=FX), store, now=now)


def test_the_report_shows_each_budget(store: Any) -> None:
    _fill(store)
    _claim(store)  # 8,500 of 10,000 at noon on the 9th: 80% fired
    settings = ReportSettings(lang="en", fx=FX, budgets=(MONTHLY, WEEKLY))
    report = make_report(store, DAY, timezone=TZ, settings=settings)
    monthly, weekly = report.summary["budgets"]
    assert monthly["name"] == "monthly" and monthly["spend"] == 9000.0 and monthly["share"] == 0.9
    assert monthly["period_start"] == "2026-12-01" and monthly["through"] == "2026-12-10T00:00:00+08:00"
    assert [f["threshold"] for f in monthly["fired"]] == [0.8]
    assert monthly["words"] == {
        "covers": "feature=chat",
        "period": "month 2026-12-01 – 2026-12-31",
        "spent": "¥9,000.00 / ¥10,000.00",
        "share": "90.0%",
        "projection": "at this rate the month's ¥10,000.00 runs out on 11 December",
        "fired": "80%",
        "notes": [],
    }
    assert weekly["spend"] == 3 * 1200 and weekly["words"]["fired"] == "none"
    assert weekly["words"]["covers"] == "all usage"
    html = report.html_file
    assert 'data-budget="monthly"' in html and "runs out on 11 December" in html and ">Budgets<" in html
    assert "Budgets: monthly: ¥9,000.00 / ¥10,000.00 (90.0%)" in report.text
    zh = make_report(store, DAY, timezone=TZ, settings=ReportSettings(lang="zh", fx=FX, budgets=(MONTHLY,)))
    assert "按当前速度，本月 ¥10,000.00 的预算将在 12月11日 用完" in zh.html_email
    assert ">预算<" in zh.html_email and "已触发阈值" in zh.html_email


def test_a_report_without_budgets_has_none(store: Any) -> None:
    _fill(store)
    report = make_report(store, DAY, timezone=TZ, settings=ReportSettings(lang="en"))
    assert report.summary["budgets"] == [] and 'id="budgets"' not in report.html_file


@contextmanager
def _opener(store: Any) -> Iterator[Any]:
    yield store


def test_the_usage_page_shows_each_budget(store: Any) -> None:
    from fastapi.testclient import TestClient

    from llmtally.web import create_app

    _fill(store)
    _claim(store)
    app = create_app(
        lambda: _opener(store),
        timezone=TZ,
        settings=ReportSettings(lang="en", budgets=(MONTHLY, WEEKLY)),
        today=lambda: date(2026, 12, 10),
    )
    with TestClient(app) as client:
        html = client.get(f"/?day={DAY}&lang=en").text
        assert 'data-budget="monthly"' in html and 'data-budget="weekly-tokens"' in html
        assert "3,600 tokens / 50,000 tokens" in html and ">80%<" in html
        assert "¥9,000.00 / ¥10,000.00" in html
        zh = client.get(f"/?day={DAY}&lang=zh").text
        assert "已用 / 额度" in zh and "按当前速度" in zh
        plain = create_app(lambda: _opener(store), timezone=TZ, settings=ReportSettings(), today=lambda: DAY)
        with TestClient(plain) as other:
            assert "data-budget" not in other.get(f"/?day={DAY}").text
