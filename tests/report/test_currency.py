"""The report in one reporting currency: the day's cost is one number with its per-currency parts and
the rates beside it, in the HTML (zh and en), the text and the JSON; a missing rate is shown, never 0."""

from __future__ import annotations

import html as htmllib
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from llmtally.report import ReportSettings, make_report, run_daily_report
from tests.report import gen
from tests.report.gen import DAY, on

RATES = """
[currency]
report = "CNY"

[[currency.rates]]
from = "USD"
to = "CNY"
rate = "7.2"
date = 2026-11-24
"""


def cell(page: str, element_id: str) -> str:
    """The text of the element with ``id`` (tags dropped, entities decoded)."""
    m = re.search(rf'id="{element_id}"[^>]*>(.*?)</(td|p)>', page, re.S)
    assert m, f"no #{element_id} in the report"
    return htmllib.unescape(re.sub(r"<[^>]+>", " ", m.group(1))).strip()


def expected_cny(steady: gen.Dataset) -> Decimal:
    rows = on(steady.rows, DAY)
    return sum(
        (r.cost * (Decimal("7.2") if r.currency == "USD" else 1) for r in rows if r.cost is not None),
        Decimal(0),
    )


@pytest.fixture
def with_rates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_schema: Any, steady_schema: str) -> Path:
    use_schema(steady_schema)
    path = tmp_path / "llmtally.toml"
    path.write_text(RATES, encoding="utf-8")
    monkeypatch.setenv("LLMTALLY_CONFIG", str(path))
    monkeypatch.delenv("LLMTALLY_REPORT_CURRENCY", raising=False)
    return path


def test_the_days_cost_is_one_number_with_its_parts(
    pg_dsn: str, with_rates: Path, steady_data: gen.Dataset, tmp_path: Path
) -> None:
    want = expected_cny(steady_data)
    total = f"¥{want:,.2f}"
    for lang, parts_word, rate_word in (("zh", "由 ", "汇率"), ("en", "from ", "rate of 2026-11-24")):
        settings = ReportSettings.from_config()  # reads [currency] from LLMTALLY_CONFIG
        result = run_daily_report(pg_dsn, DAY, lang=lang, settings=settings, report_dir=tmp_path / lang,
                                  timezone=gen.TZ, archive=False)  # fmt: skip
        page = result.report.html_file
        assert cell(page, "total-cost") == total
        parts = cell(page, "cost-parts")
        s = result.report.summary
        assert parts.startswith(parts_word) and f"${s['cost']['USD']:,.2f}" in parts
        assert f"¥{s['cost']['CNY']:,.2f}" in parts
        assert "1 USD = 7.2 CNY" in parts and rate_word in parts
        assert 'class="unconverted"' not in page
        assert total in result.report.text.splitlines()[1]  # the text email's cost line
        on_disk = json.loads(Path(result.json_path or "").read_text(encoding="utf-8"))
        assert on_disk["report_currency"] == "CNY"
        assert on_disk["converted_cost"]["amount"] == float(round(want, 6))
        assert on_disk["converted_cost"]["parts"] == on_disk["cost"]
        writer = next(e for e in on_disk["top"]["service"] if e["name"] == "writer")  # gpt-4o + deepseek
        wc = writer["converted_cost"]
        assert wc["complete"] and set(wc["parts"]) == {"CNY", "USD"}
        assert f"¥{wc['amount']:,.2f}" in page
    documented(on_disk)


def documented(s: dict[str, Any]) -> None:
    """Every key of the currency fields is in docs/report-json.md."""
    from tests.support import REPO_ROOT

    doc = (REPO_ROOT / "docs" / "report-json.md").read_text(encoding="utf-8")
    objects = [s, s["converted_cost"], s["converted_cost"]["rates"][0], s["previous_day"],
               s["same_day_last_week"], s["last_7_days"], s["top"]["model"][0]]  # fmt: skip
    missing = sorted(
        {k for obj in objects for k in obj if f"`{k}`" not in doc and not re.search(rf"[{{,]\s*{k}\b", doc)}
    )
    assert missing == []


def test_a_missing_rate_is_marked_not_zero(
    pg_dsn: str, with_rates: Path, steady_data: gen.Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_rates.write_text('[currency]\nreport = "CNY"\n', encoding="utf-8")  # no USD rate at all
    for lang, words in (
        ("zh", ("未折算", "没有生效的 USD→CNY 汇率")),
        ("en", ("not converted", "no USD→CNY")),
    ):
        report = make_report(pg_dsn, DAY, lang=lang, timezone=gen.TZ, settings=ReportSettings.from_config())
        s = report.summary
        cny, usd = s["cost"]["CNY"], s["cost"]["USD"]
        assert s["converted_cost"]["amount"] == cny and s["converted_cost"]["unconverted"] == {"USD": usd}
        assert cell(report.html_file, "total-cost") == f"¥{cny:,.2f} + ${usd:,.2f} {words[0]}"
        assert words[1] in report.html_file and "[[currency.rates]]" in report.html_file
        assert s["previous_day"]["cost_change_pct"] is None  # no % over a partly unconverted total
    monkeypatch.setenv("LLMTALLY_REPORT_CURRENCY", "USD")  # everything else is CNY: now CNY is missing
    report = make_report(pg_dsn, DAY, lang="en", timezone=gen.TZ, settings=ReportSettings.from_config())
    assert report.summary["converted_cost"]["currency"] == "USD"
    assert set(report.summary["converted_cost"]["unconverted"]) == {"CNY"}
