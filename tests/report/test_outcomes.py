"""Failed calls and billing gaps in the report: by outcome and HTTP status, billed as the pipeline bills."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from llmtally.pipeline.record import UsageRecord
from llmtally.pipeline.recount import Recount
from llmtally.report import Thresholds, make_report
from llmtally.report._anomalies import detect_anomalies
from llmtally.report._data import fetch_report_data
from llmtally.store import MemoryStore
from tests.report.records import MODEL, SETTINGS, loads, open_store, record, summary

TZ = "Asia/Shanghai"
D = date(2026, 11, 26)
NOON = datetime(2026, 11, 26, 4, tzinfo=UTC)  # 12:00 local


def failing_day() -> list[tuple[UsageRecord, Recount | None]]:
    """Thirteen calls of one service on D: 6 ok, 3 rejected with 429, 1 server error, 2 timeouts
    (no usage, recounted), 1 abandoned stream; and 2 ok calls of another service."""
    t = [NOON + timedelta(minutes=i) for i in range(16)]
    return [
        *(record(i, t[i], prompt=100, completion=20, recount=(100, 20)) for i in range(6)),
        *(record(6 + i, t[6 + i], prompt=None, completion=None, status="error", http_status=429) for i in range(3)),
        record(9, t[9], prompt=None, completion=None, status="error", http_status=500),
        *(record(10 + i, t[10 + i], prompt=None, completion=None, recount=(80, 10), status="timeout") for i in range(2)),
        record(12, t[12], prompt=100, completion=5, recount=(100, 5), status="abandoned", http_status=200),
        *(record(13 + i, t[13 + i], prompt=50, completion=10, recount=(50, 10), service="search") for i in range(2)),
    ]  # fmt: skip


@pytest.mark.parametrize("kind", ["memory", "postgres"])
def test_failed_calls_show_with_their_share_and_bill_nothing(
    kind: str, request: pytest.FixtureRequest
) -> None:
    with open_store(kind, request) as store:
        for load in loads(failing_day(), TZ):
            store.load_day(load)
        errors = [h for h in store.hourly_rows(D) if h.status == "error"]
        assert sum(h.requests for h in errors) == 4
        assert all(h.prompt_tokens == h.completion_tokens == 0 and not h.cost for h in errors)  # 0 or None
        assert sum(h.unpriced_requests for h in errors) == 0  # nothing billed, so nothing unpriced
        s = summary(store, D, TZ)
        totals = store.daily_totals(D, D)[D]
    # requests count every call; tokens and cost only what was billed
    billed = 6 * 120 + 2 * 90 + 105 + 2 * 60
    assert (s["requests"], s["total_tokens"], s["unpriced_requests"]) == (15, billed, 0)
    assert (totals.requests, totals.total_tokens) == (15, billed)
    assert s["cost"] == {"USD": float(round(totals.cost["USD"], 6))}
    assert totals.cost["USD"] == sum(
        Decimal(p) * Decimal("0.15") / 10**6 + Decimal(c) * Decimal("0.60") / 10**6
        for p, c in [(100, 20)] * 6 + [(80, 10)] * 2 + [(100, 5)] + [(50, 10)] * 2
    )
    oc = s["outcomes"]
    assert oc["requests"] == 15
    assert oc["status"] == {"ok": 8, "error": 4, "timeout": 2, "abandoned": 1, "other": 0}
    assert (oc["failed_requests"], oc["failed_share"], oc["uncertain_requests"]) == (6, 0.4, 2)
    assert oc["http_errors"] == {"429": 3, "500": 1}
    assert oc["by_service"] == [
        {"service": "cs-bot", "model": MODEL, "requests": 13,
         "status": {"ok": 6, "error": 4, "timeout": 2, "abandoned": 1, "other": 0},
         "failed_requests": 6, "failed_share": 0.4615, "uncertain_requests": 2,
         "http_errors": {"429": 3, "500": 1}},
        {"service": "search", "model": MODEL, "requests": 2,
         "status": {"ok": 2, "error": 0, "timeout": 0, "abandoned": 0, "other": 0},
         "failed_requests": 0, "failed_share": 0.0, "uncertain_requests": 0, "http_errors": {}},
    ]  # fmt: skip
    rc = s["reconciliation"]
    assert (rc["records"], rc["not_billed"], rc["uncertain"], rc["completion_missing"]) == (15, 4, 2, 0)
    assert rc["billing_gaps"] == [
        {"model": MODEL, "service": "cs-bot", "records": 13, "completion_missing": 0, "uncertain": 2}
    ]


def test_failed_calls_in_the_html() -> None:
    store = MemoryStore()
    for load in loads(failing_day(), TZ):
        store.load_day(load)
    en = make_report(store, D, lang="en", timezone=TZ, settings=SETTINGS)
    zh = make_report(store, D, lang="zh", timezone=TZ, settings=SETTINGS)
    assert "Failed calls" in en.html_file and "失败调用" in zh.html_file
    for html in (en.html_file, zh.html_file):
        assert "6 / 15 (40.0%)" in html and "HTTP 429: 3" in html and "429×3, 500×1" in html
        assert "46.2%" in html  # the service's failed share
    assert "Timeouts billed from the recount" in en.html_file and "超时按重算计费" in zh.html_file


def test_missing_completions_show() -> None:
    """Calls with neither reported usage nor a completion recount bill 0 completion tokens: shown."""
    t = [NOON + timedelta(minutes=i) for i in range(6)]
    items = [
        *(record(i, t[i], prompt=None, completion=None, recount=(300, None)) for i in range(3)),
        *(record(3 + i, t[3 + i], prompt=100, completion=20, recount=(100, 20)) for i in range(2)),
        record(5, t[5], prompt=40, completion=8, recount=(40, 8), service="search"),
    ]
    store = MemoryStore()
    for load in loads(items, TZ):
        store.load_day(load)
    report = make_report(store, D, lang="en", timezone=TZ, settings=SETTINGS)
    rc = report.summary["reconciliation"]
    assert rc["completion_missing"] == 3 and rc["uncertain"] == 0
    assert rc["sources"] == {
        "prompt_reported": 3, "prompt_recount": 3, "prompt_estimate": 0, "prompt_missing": 0,
        "completion_reported": 3, "completion_recount": 0, "completion_estimate": 0, "completion_missing": 3,
    }  # fmt: skip
    assert rc["billing_gaps"] == [
        {"model": MODEL, "service": "cs-bot", "records": 5, "completion_missing": 3, "uncertain": 0}
    ]
    assert report.summary["completion_tokens"] == 2 * 20 + 8
    html = report.html_file
    assert "Completions missing" in html and "3 / 5" in html and 'id="completion-missing">3<' in html
    assert "No failed calls." in html


def _history(days: int, failed_per_day: int, limited_per_day: int, today: tuple[int, int]) -> list[Any]:
    """100 calls a day of service cs-bot for ``days`` days before D and on D; ``failed_per_day`` of
    them errors, ``limited_per_day`` of those with HTTP 429; on D ``today`` = (failed, 429)."""
    items = []
    for back in range(days, -1, -1):
        day = D - timedelta(days=back)
        failed, limited = today if back == 0 else (failed_per_day, limited_per_day)
        start = datetime(day.year, day.month, day.day, 4, tzinfo=UTC)
        for i in range(100):
            ts = start + timedelta(seconds=30 * i)
            if i < limited:
                items.append(record(i, ts, prompt=None, completion=None, status="error", http_status=429))
            elif i < failed:
                items.append(record(i, ts, prompt=None, completion=None, status="error", http_status=503))
            else:
                items.append(record(i, ts, recount=(100, 20)))
    store = MemoryStore()
    for load in loads(items, TZ):
        store.load_day(load)
    return list(make_report(store, D, lang="en", timezone=TZ, settings=SETTINGS).summary["anomalies"])


def test_a_spike_of_failures_and_429s_is_news() -> None:
    found = _history(7, failed_per_day=2, limited_per_day=1, today=(40, 30))
    assert {(a["kind"], a["subject"]) for a in found} == {
        ("failed_calls", "cs-bot"),
        ("rate_limited", "cs-bot"),
    }
    failed = next(a for a in found if a["kind"] == "failed_calls")
    assert (failed["value"], failed["expected"], failed["score"]) == (40.0, 2.0, 20.0)
    assert "40.0% of the service's 100 requests failed" in failed["why"] and "失败" in failed["why_zh"]
    limited = next(a for a in found if a["kind"] == "rate_limited")
    assert (limited["value"], limited["expected"], limited["score"]) == (30, 1, 30.0)
    assert "HTTP 429" in limited["why"] and "429" in limited["why_zh"]


def test_steady_failures_and_new_services_raise_nothing() -> None:
    assert _history(7, failed_per_day=10, limited_per_day=5, today=(12, 6)) == []
    assert _history(2, failed_per_day=0, limited_per_day=0, today=(40, 30)) == []  # too little history
    # below the absolute floors: 3 failures out of 100 after days without any
    assert _history(7, failed_per_day=0, limited_per_day=0, today=(3, 3)) == []


def test_failure_thresholds_are_configurable() -> None:
    store = MemoryStore()
    t = [NOON - timedelta(days=k) for k in range(1, 5)]
    items = [record(k, ts) for k, ts in enumerate(t)] + list(failing_day())
    for load in loads(items, TZ):
        store.load_day(load)
    data = fetch_report_data(store, D, TZ)
    assert detect_anomalies(data, Thresholds()) == []  # 6 failed calls: under failed_min_requests
    kinds = {a.kind for a in detect_anomalies(data, Thresholds(failed_min_requests=5, status_429_min=3))}
    assert kinds == {"failed_calls", "rate_limited"}
    assert Thresholds.from_mapping({"status_429_min": 5, "failed_share_min_pct": 2.5}).status_429_min == 5


def test_every_json_key_is_documented() -> None:
    import re

    from tests.support import REPO_ROOT

    doc = (REPO_ROOT / "docs" / "report-json.md").read_text(encoding="utf-8")
    store = MemoryStore()
    for load in loads(failing_day(), TZ):
        store.load_day(load)
    s = make_report(store, D, lang="en", timezone=TZ, settings=SETTINGS).summary
    objects: list[dict[str, Any]] = [
        s, s["reconciliation"], s["reconciliation"]["sources"], s["reconciliation"]["billing_gaps"][0],
        s["outcomes"], s["outcomes"]["status"], s["outcomes"]["by_service"][0],
    ]  # fmt: skip
    missing = sorted(
        {k for obj in objects for k in obj if f"`{k}`" not in doc and not re.search(rf"[{{,]\s*{k}\b", doc)}
    )
    assert missing == []
