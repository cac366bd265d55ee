"""The usage page over both store backends: every number recomputed from the generated rows."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from llmtally.report import ReportSettings, make_report
from llmtally.store import UsageStore
from tests.report import gen
from tests.web import data
from tests.web.conftest import RATE
from tests.web.page import parse

START = data.DAY - timedelta(days=28)
DIMS = {
    "feature": "feature",
    "user_id": "user_id",
    "tenant": "tenant",
    "model": "model",
    "service": "service",
}


def between(rows: Iterable[gen.Row], start: date, end: date, **where: str) -> list[gen.Row]:
    return [r for r in rows if start <= r.day <= end and all(getattr(r, k) == v for k, v in where.items())]


def by(rows: Iterable[gen.Row], key: Callable[[gen.Row], Any]) -> dict[Any, dict[str, Any]]:
    out: dict[Any, dict[str, Any]] = defaultdict(
        lambda: {"requests": 0, "prompt": 0, "completion": 0, "cost": {}}
    )
    for r in rows:
        acc = out[key(r)]
        acc["requests"] += r.requests
        acc["prompt"] += r.prompt_tokens
        acc["completion"] += r.completion_tokens
        if r.cost is not None and r.currency:
            acc["cost"][r.currency] = acc["cost"].get(r.currency, Decimal(0)) + r.cost
    return dict(out)


def shown(row: dict[str, str]) -> dict[str, Any]:
    cost = {k.removeprefix("cost_"): Decimal(v) for k, v in row.items() if k.startswith("cost_") and v}
    return {"requests": int(row["requests"]), "prompt": int(row["prompt_tokens"]),
            "completion": int(row["completion_tokens"]), "cost": cost}  # fmt: skip


def test_the_default_range_is_yesterday_and_the_28_days_before(client: Any) -> None:
    page = parse(client.get("/").text)
    days = [r["day"] for r in page.tables["daily"]]
    assert days[0] == START.isoformat() and days[-1] == data.DAY.isoformat() and len(days) == 29


def test_totals_and_ranked_tables_equal_the_rows(client: Any, rows: list[gen.Row]) -> None:
    r = client.get("/")
    assert r.status_code == 200
    page = parse(r.text)
    want = by(between(rows, START, data.DAY), lambda _: "all")["all"]
    assert int(page.totals["requests"]) == want["requests"]
    assert int(page.totals["prompt_tokens"]) == want["prompt"]
    assert int(page.totals["completion_tokens"]) == want["completion"]
    assert int(page.totals["total_tokens"]) == want["prompt"] + want["completion"]
    for dim, attr in DIMS.items():
        expected = by(between(rows, START, data.DAY), lambda r, a=attr: getattr(r, a))  # type: ignore[misc]
        table = page.tables[dim]
        assert len(table) == min(10, len(expected)), dim
        for row in table:
            assert shown(row) == expected[row[dim]], (dim, row[dim])
        tokens = [int(row["total_tokens"]) for row in table]
        assert tokens == sorted(tokens, reverse=True), f"{dim} is ranked by billed tokens"
        total = want["prompt"] + want["completion"]
        for row in table:
            assert float(row["share"]) == round(int(row["total_tokens"]) / total, 4)


def test_the_cost_is_one_number_in_the_reporting_currency(client: Any, rows: list[gen.Row]) -> None:
    page = parse(client.get("/").text)
    cost = by(between(rows, START, data.DAY), lambda _: "all")["all"]["cost"]
    assert Decimal(page.totals["cost"]) == pytest.approx(
        cost["CNY"] + cost["USD"] * Decimal(RATE), abs=Decimal("1e-6")
    )
    daily = {r["day"]: r for r in page.tables["daily"]}
    d = by(between(rows, data.DAY, data.DAY), lambda _: "all")["all"]["cost"]
    assert Decimal(daily[data.DAY.isoformat()]["cost_in_CNY"]) == d["CNY"] + d["USD"] * Decimal(RATE)


def test_day_over_day_and_week_over_week(client: Any, rows: list[gen.Row]) -> None:
    page = parse(client.get("/").text)

    def tokens(d: date) -> int:
        return sum(r.total_tokens for r in between(rows, d, d))

    last = tokens(data.DAY)
    assert int(page.totals["last_day_tokens"]) == last
    daily = {r["day"]: r for r in page.tables["daily"]}
    for d in (data.DAY, START):  # START's previous days lie before the range: read anyway
        row = daily[d.isoformat()]
        assert float(row["day_over_day_pct"]) == round(
            (tokens(d) - tokens(d - timedelta(days=1))) * 100 / tokens(d - timedelta(days=1)), 2
        )
        assert float(row["week_over_week_pct"]) == round(
            (tokens(d) - tokens(d - timedelta(days=7))) * 100 / tokens(d - timedelta(days=7)), 2
        )


def test_clicking_a_feature_shows_its_users_and_models(client: Any, rows: list[gen.Row]) -> None:
    page = parse(client.get("/").text)
    href = next(h for n, h in page.links["feature"] if n == "写作")
    query = dict(parse_qsl(urlsplit(href).query))
    assert query["feature"] == "写作"
    drilled = parse(client.get(href).text)
    part = between(rows, START, data.DAY, feature="写作")
    for dim in ("user_id", "model"):
        expected = by(part, lambda r, a=dim: getattr(r, a))  # type: ignore[misc]
        assert {row[dim]: shown(row) for row in drilled.tables[dim]} == expected
    assert {row["feature"] for row in drilled.tables["feature"]} == {"写作"}
    assert int(drilled.totals["requests"]) == sum(r.requests for r in part)
    # the failed calls of that feature, and a link back to all traffic
    failed = {row["service"]: row for row in drilled.tables["failed"]}
    assert int(failed[data.FAILED_SERVICE]["failed_requests"]) == sum(
        r.requests for r in part if r.status in ("error", "timeout")
    )
    back = [h for h in drilled.hrefs if "remove" in h or ("feature=" not in h and h.startswith("/?"))]
    assert back, "a link back without the filter"


def test_failed_share_by_service(client: Any, rows: list[gen.Row]) -> None:
    page = parse(client.get("/").text)
    part = between(rows, START, data.DAY, service=data.FAILED_SERVICE)
    failed = sum(r.requests for r in part if r.status in ("error", "timeout"))
    total = sum(r.requests for r in part)
    row = next(r for r in page.tables["failed"] if r["service"] == data.FAILED_SERVICE)
    assert (int(row["requests"]), int(row["failed_requests"])) == (total, failed)
    assert float(row["failed_share"]) == round(failed / total, 4)
    assert int(row["error"]) == sum(r.requests for r in part if r.status == "error")


def test_reconciliation_per_service_and_model(client: Any, store: UsageStore) -> None:
    page = parse(client.get("/").text)
    recon = store.reconciliation_between(START, data.DAY)
    drift = {(r["service"], r["model"]): r for r in page.tables["drift"]}
    gpt = [r for r in recon if r.model == "gpt-4o"]
    row = drift[("writer", "gpt-4o")]
    assert int(row["drift_records"]) == sum(r.drift_records for r in gpt) > 0
    assert int(row["prompt_drift_tokens"]) == sum(r.prompt_drift_tokens for r in gpt) < 0
    est = {r["service"]: r for r in page.tables["estimates"]}
    assert (
        float(est["cs-bot"]["estimate_mape_pct"]) == 5.0 and float(est["cs-bot"]["estimate_bias_pct"]) == 2.0
    )
    missing = {(r["service"], r["model"]): r for r in page.tables["missing"]}
    assert int(missing[("lab", "mystery-model")]["unknown_model"]) == sum(r.unknown_model for r in recon)
    assert int(missing[("writer", "deepseek-chat")]["completion_missing"]) == 29


def test_anomalies_are_the_email_reports(client: Any, store: UsageStore) -> None:
    page = parse(client.get("/?lang=en").text)
    rows = page.tables["anomalies"]
    days = [data.DAY - timedelta(days=i) for i in range(7)]
    assert {r["day"] for r in rows} <= {d.isoformat() for d in days}
    labels = {"Hour spike": "hour_spike", "User jump": "user_jump", "Longer prompts": "prompt_growth",
              "Large request": "large_request", "Failed calls": "failed_calls"}  # fmt: skip
    kinds = set()
    for d in days:
        report = make_report(store, d, lang="en", timezone=data.TZ, settings=ReportSettings())
        want = sorted(
            (a["kind"], a["subject"], a["why"], a["value"], a["expected"], a["score"])
            for a in report.summary["anomalies"]
        )
        got = sorted(
            (
                labels[r["kind"]],
                r["subject"],
                r["why"],
                float(r["value"]),
                float(r["expected"]),
                float(r["score"]),
            )
            for r in rows
            if r["day"] == d.isoformat()
        )
        assert got == want, d
        kinds |= {w[0] for w in want}
    assert {"large_request", "hour_spike", "user_jump"} <= kinds, kinds


def test_data_quality_quarantine_and_losses(client: Any) -> None:
    page = parse(client.get("/").text)
    assert len(page.tables["quality"]) == 29
    q = page.tables["quality"][-1]
    assert (q["day"], q["quarantined"], q["lost_records"]) == (data.DAY.isoformat(), "2", "5")
    reasons = page.tables["quarantine"]
    assert len(reasons) == 58 and {r["reason"] for r in reasons} == {"invalid JSON", "missing field: ts"}
    (loss,) = page.tables["losses"]
    assert (loss["service"], loss["records"], loss["reason"]) == ("cs-bot", "5", "disk full")


def test_archived_reports_are_linked_and_served(client: Any) -> None:
    page = parse(client.get("/").text)
    links = dict((h, n) for n, h in page.links["reports"])
    assert f"/reports/{data.DAY}/zh" in links and f"/reports/{data.DAY - timedelta(days=1)}/en" in links
    r = client.get(f"/reports/{data.DAY}/zh")
    assert r.status_code == 200 and "archived" in r.text
    assert client.get(f"/reports/{START}/zh").status_code == 404


def test_chinese_and_english(client: Any) -> None:
    zh, en = client.get("/").text, client.get("/?lang=en").text
    assert "大模型用量" in zh and 'lang="zh-CN"' in zh and "每日用量" in zh
    assert "LLM usage" in en and 'lang="en"' in en and "Day by day" in en
    assert "大模型用量" not in en
    link = next(h for h in parse(zh).hrefs if "lang=en" in h)
    assert "LLM usage" in client.get(link).text


def test_one_day_lists_its_hours(client: Any, rows: list[gen.Row]) -> None:
    page = parse(client.get(f"/?day={data.DAY}").text)
    assert [r["day"] for r in page.tables["daily"]] == [data.DAY.isoformat()]
    hours = page.tables["hourly"]
    assert len(hours) == 24 and hours[0]["hour"] == f"{data.DAY} 00:00"
    assert sum(int(h["total_tokens"]) for h in hours) == sum(
        r.total_tokens for r in between(rows, data.DAY, data.DAY)
    )


def test_a_range_with_no_data_says_so(client: Any) -> None:
    r = client.get("/?start=2025-01-01&end=2025-01-31")
    assert r.status_code == 200 and 'id="not-loaded"' in r.text
    assert parse(r.text).totals["requests"] == "0"


def test_no_raw_text_no_scripts_nothing_fetched(client: Any) -> None:
    r = client.get("/")
    html = r.text
    page = parse(html)
    assert "<script" not in html.lower(), "the <script> feature name is escaped and there are no scripts"
    assert "&lt;script&gt;alert" in html
    assert "script" not in page.tags and "img" not in page.tags and "link" not in page.tags
    assert not page.srcs
    assert all(h.startswith(("/", "?")) for h in page.hrefs), [h for h in page.hrefs if not h.startswith("/")]
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    # digests and tags of the top requests (and never any text) are not on the page at all
    assert "a" * 64 not in html
