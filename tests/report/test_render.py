"""HTML rendering: escaping, languages, locale formats, files and the archive."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from llmtally.report import run_daily_report
from llmtally.report._i18n import Formatter
from tests.report import gen


@pytest.fixture(scope="module")
def reports(
    request: pytest.FixtureRequest, pg_dsn: str, planted_schema: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    mp = pytest.MonkeyPatch()
    request.addfinalizer(mp.undo)
    mp.setenv("LLMTALLY_DB_SCHEMA", planted_schema)
    out = {}
    for lang in ("zh", "en"):
        folder = tmp_path_factory.mktemp(f"report-{lang}")
        out[lang] = run_daily_report(pg_dsn, gen.DAY, lang=lang, report_dir=folder, timezone=gen.TZ)
    return out


def test_user_text_is_escaped(reports: dict[str, Any]) -> None:
    for result in reports.values():
        for html in (result.report.html_email, result.report.html_file):
            assert "<script" not in html.lower()
            assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html


def test_languages_numbers_and_timezone(reports: dict[str, Any]) -> None:
    zh, en = reports["zh"].report, reports["en"].report
    total = f"{zh.summary['total_tokens']:,}"
    assert total in zh.html_file and total in en.html_file
    assert "大模型 Token 用量日报" in zh.html_file and "2026年11月26日 星期四" in zh.html_file
    assert "总消耗" in zh.summary["headline"] and "周环比" in zh.summary["headline"]
    assert "Thursday 26 November 2026" in en.html_file and "LLM token usage" in en.html_file
    assert "Asia/Shanghai (UTC+08:00)" in zh.html_file and "Asia/Shanghai (UTC+08:00)" in en.html_file
    assert "2026-11-26" in zh.subject and "2026-11-26" in en.subject
    for html in (zh.html_email, en.html_email):
        assert 'src="cid:llmtally-hourly"' in html and "data:image" not in html
    assert 'src="data:image/png;base64,' in zh.html_file


def test_files_and_archive(reports: dict[str, Any], pg_dsn: str, planted_schema: str) -> None:
    result = reports["en"]
    assert (
        result.html_path.name == "report-2026-11-26.html"
        and result.json_path.name == "report-2026-11-26.json"
    )
    on_disk = json.loads(Path(result.json_path).read_text(encoding="utf-8"))
    assert on_disk == json.loads(result.report.json())
    for key in ("day", "timezone", "requests", "prompt_tokens", "completion_tokens", "total_tokens", "cost",
                "previous_day", "same_day_last_week", "last_7_days", "top", "reconciliation", "anomalies"):  # fmt: skip
        assert key in on_disk
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(
            f"SELECT lang, json->>'total_tokens', length(html) FROM \"{planted_schema}\".report_archive ORDER BY lang"
        ).fetchall()
    assert [(r[0], int(r[1])) for r in rows] == [
        ("en", on_disk["total_tokens"]),
        ("zh", on_disk["total_tokens"]),
    ]


def test_no_raw_text_anywhere(reports: dict[str, Any]) -> None:
    blob = reports["en"].report.json() + reports["en"].report.html_file
    for word in ('"messages"', '"prompt":', '"completion":'):
        assert word not in blob


def test_formatter() -> None:
    zh, en = Formatter("zh", "Asia/Shanghai"), Formatter("en", "UTC")
    assert zh.number(1248900) == en.number(1248900) == "1,248,900"
    assert en.change(12.0) == "▲ +12.0%" and en.change(-3.456) == "▼ −3.5%" and en.change(None) == "n/a"
    assert zh.change(None) == "无"
    assert zh.money({"CNY": 1234.5, "USD": 0.004}) == "¥1,234.50 · $0.0040"
    assert en.money({"EUR": 2.0, "XYZ": 1.0}) == "€2.00 · 1.00 XYZ"
    assert en.tz("2026-11-26") == "UTC (UTC+00:00)"
