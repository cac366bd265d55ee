"""The report's data-quality section: what the services' loggers lost, read through the store."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from llmtally.report import ReportSettings, make_report
from llmtally.store import FoldEntry, LossEntry, MemoryStore
from tests.report.records import loads, open_store, record
from tests.support import REPO_ROOT

TZ = "Asia/Shanghai"
D = date(2026, 11, 26)
T = datetime(2026, 11, 26, 1, 15, tzinfo=UTC)  # 09:15 in Shanghai


def _day(losses: list[LossEntry], lost: int) -> Any:
    (load,) = loads([record(i, T + timedelta(minutes=i)) for i in range(3)], TZ)
    return replace(
        load, losses=losses, quality=replace(load.quality, lost_records=lost, loss_markers=len(losses))
    )


LOSSES = [
    LossEntry(D, "cs-bot", "web-1", 1200, T, T + timedelta(minutes=7, seconds=30), "disk full"),
    LossEntry(D, "writer", "", 35, T + timedelta(hours=2), T + timedelta(hours=2), "write error: EACCES"),
]


@pytest.mark.parametrize("kind", ["memory", "postgres"])
def test_losses_are_in_the_summary_text_and_html(kind: str, request: pytest.FixtureRequest) -> None:
    with open_store(kind, request) as store:
        store.load_day(_day(LOSSES, 1235))
        en = make_report(store, D, timezone=TZ, settings=ReportSettings(lang="en"))
        zh = make_report(store, D, timezone=TZ, settings=ReportSettings(lang="zh"))
    assert en.summary["losses"] == {
        "lost_records": 1235,
        "entries": [
            {"service": "cs-bot", "host": "web-1", "records": 1200, "from": "2026-11-26T01:15:00+00:00",
             "to": "2026-11-26T01:22:30+00:00", "reason": "disk full"},
            {"service": "writer", "host": "", "records": 35, "from": "2026-11-26T03:15:00+00:00",
             "to": "2026-11-26T03:15:00+00:00", "reason": "write error: EACCES"},
        ],
    }  # fmt: skip
    sentence = (
        "service cs-bot lost 1,200 records between 2026-11-26 09:15:00 and 2026-11-26 09:22:30 (disk full)"
    )
    assert sentence in en.text and sentence in en.html_file and sentence in en.html_email
    assert "1,235 usage records were lost" in en.text and "on web-1" in en.html_file
    assert "(write error: EACCES)" in en.html_file
    assert (
        "服务「cs-bot」在 2026-11-26 09:15:00 至 2026-11-26 09:22:30 之间丢失 1,200 条记录（磁盘已满）"
        in zh.html_file
    )
    assert "（写入错误：EACCES）" in zh.html_file


def test_a_day_without_losses_says_so() -> None:
    with MemoryStore() as store:
        store.load_day(_day([], 0))
        report = make_report(store, D, timezone=TZ, settings=ReportSettings(lang="en"))
    assert report.summary["losses"] == {"lost_records": 0, "entries": []}
    assert "No usage records were lost" in report.html_file and "lost" not in report.text


def test_loss_keys_are_documented() -> None:
    doc = (REPO_ROOT / "docs" / "report-json.md").read_text(encoding="utf-8")
    with MemoryStore() as store:
        store.load_day(_day(LOSSES, 1235))
        s = make_report(store, D, timezone=TZ, settings=ReportSettings(lang="en")).summary
    keys = {*s["losses"], *s["losses"]["entries"][0]}
    missing = sorted(k for k in keys if f"`{k}`" not in doc and not re.search(rf"[{{,]\s*{k}\b", doc))
    assert missing == [] and "`losses`" in doc


@pytest.mark.parametrize("kind", ["memory", "postgres"])
def test_folded_users_are_said_in_the_report(kind: str, request: pytest.FixtureRequest) -> None:
    fold = FoldEntry(D, "cs-bot", "user_id", 100_000, 123_456, 23_456, requests=30_000, tokens=4_500_000)
    with open_store(kind, request) as store:
        store.load_day(replace(_day([], 0), folds=[fold]))
        en = make_report(store, D, timezone=TZ, settings=ReportSettings(lang="en"))
        zh = make_report(store, D, timezone=TZ, settings=ReportSettings(lang="zh"))
    assert en.summary["folds"] == [
        {"service": "cs-bot", "dimension": "user_id", "limit": 100_000, "distinct": 123_456,
         "folded": 23_456, "requests": 30_000, "tokens": 4_500_000}
    ]  # fmt: skip
    sentence = "had 123,456 distinct users (limit 100,000): the 23,456 that billed least"
    assert sentence in en.text and sentence in en.html_file and sentence in en.html_email
    assert "123,456 个不同的用户（上限 100,000）" in zh.html_file
