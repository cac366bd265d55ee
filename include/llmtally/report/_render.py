"""Render a report: JSON summary, charts and the Jinja2 HTML email (autoescaped, inline CSS, no scripts).

The template ships inside the package (``llmtally/report/templates/report.html.j2``, package data)
and is loaded with Jinja2's ``PackageLoader``, so a wheel renders reports as an editable install
does.  The email version references the charts as ``cid:`` inline images; the file version embeds
them as ``data:`` URIs so it opens alone.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from functools import cache
from typing import Any

from ..budgets import budget_words
from ..pricing import ExchangeRates
from ._anomalies import Thresholds
from ._charts import render_charts
from ._compute import money, summarize
from ._data import ReportData
from ._i18n import Formatter, messages

__all__ = ["TEMPLATE_NAME", "Report", "build_report", "render_html"]

TEMPLATE_NAME = "report.html.j2"
"""The report's Jinja2 template, in the package folder ``llmtally/report/templates/``."""

CHART_IDS = {"hourly": "llmtally-hourly", "trend": "llmtally-trend", "cost": "llmtally-cost"}
"""Content-IDs of the inline chart images in the email."""

_TREND_FEATURES = 6


@dataclass(frozen=True)
class Report:
    """A rendered daily report."""

    day: date
    lang: str
    summary: Mapping[str, Any]
    subject: str
    text: str
    html_email: str
    html_file: str
    charts: Mapping[str, bytes] = field(default_factory=dict)

    def json(self) -> str:
        """The JSON summary (``docs/report-json.md``), UTF-8 text, keys in contract order."""
        return json.dumps(self.summary, ensure_ascii=False, indent=2) + "\n"


@cache
def _env() -> Any:
    import jinja2

    try:
        loader = jinja2.PackageLoader("llmtally.report", "templates")
    except ValueError as exc:  # the folder is missing: an install built without its package data
        raise FileNotFoundError(
            f"report template {TEMPLATE_NAME} missing from the installed package "
            "(llmtally/report/templates/); reinstall llmtally from a complete wheel or checkout"
        ) from exc
    return jinja2.Environment(
        loader=loader,
        autoescape=True,  # tag values and names are user-controlled text
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(summary: Mapping[str, Any], lang: str, images: Mapping[str, str]) -> str:
    """The report HTML; ``images`` maps chart names to ``src`` values (``cid:…`` or ``data:…``)."""
    fmt = Formatter(lang, summary["timezone"])
    template = _env().get_template(TEMPLATE_NAME)
    words = budget_words(lang)
    return str(template.render(s=summary, m=messages(lang), f=fmt, img=images, lang=lang, bw=words))


def _headline(summary: Mapping[str, Any], fmt: Formatter) -> str:
    features = summary["top"]["feature"]
    driver = ""
    if features:
        driver = fmt.msg["driver"].format(
            name=fmt.name(features[0]["name"]), share=fmt.share(features[0]["share"])
        )
    return fmt.msg["headline"].format(
        day=summary["day"],
        tokens=fmt.number(summary["total_tokens"]),
        requests=fmt.number(summary["requests"]),
        change=fmt.change(summary["same_day_last_week"]["change_pct"]),
        driver=driver,
    )


def _chart_inputs(
    data: ReportData, fx: ExchangeRates
) -> tuple[dict[str, list[int]], dict[str, dict[str, float]]]:
    """The trend per feature, and each model's cost of the day in the reporting currency (a part
    without a rate keeps its own currency, so no bar is silently dropped or mixed)."""
    start = data.day - timedelta(days=27)
    per: dict[str, list[int]] = defaultdict(lambda: [0] * 28)
    cost: dict[str, dict[str, Decimal]] = defaultdict(dict)
    for r in data.daily:
        if r.day >= start:
            per[r.feature][(r.day - start).days] += r.total_tokens
        if r.day == data.day and r.cost is not None and r.currency:
            slot = cost[r.model]
            slot[r.currency] = slot.get(r.currency, Decimal(0)) + r.cost
    ranked = sorted(per, key=lambda f: (-sum(per[f]), f))
    trend = {f: per[f] for f in ranked[:_TREND_FEATURES]}
    rest = ranked[_TREND_FEATURES:]
    if rest:
        trend["\0other"] = [sum(per[f][i] for f in rest) for i in range(28)]
    by_model: dict[str, dict[str, float]] = {}
    for model, parts in sorted(cost.items()):
        c = fx.convert(parts, data.day)
        amounts: dict[str, Decimal | None] = {**c.unconverted}
        if c.priced:
            amounts[c.currency] = c.amount
        by_model[model] = money(amounts)
    return trend, by_model


def _loss_lines(summary: Mapping[str, Any], fmt: Formatter) -> list[str]:
    losses = summary["losses"]
    if not losses["lost_records"] and not losses["entries"]:
        return []
    total = fmt.msg["lost_total"].format(n=fmt.number(losses["lost_records"]))
    return [f"{fmt.msg['data_quality']}: {total}", *(f"- {fmt.loss(e)}" for e in losses["entries"])]


def _budget_lines(budgets: Sequence[Mapping[str, Any]], lang: str) -> list[str]:
    if not budgets:
        return []
    head = budget_words(lang)["budgets"]
    return [
        f"{head}: {b['name']}: {b['words']['spent']} ({b['words']['share']}); {b['words']['projection']}"
        for b in budgets
    ]


def _fold_lines(summary: Mapping[str, Any], fmt: Formatter) -> list[str]:
    return [f"{fmt.msg['data_quality']}: {fmt.fold(e)}" for e in summary["folds"]]


def build_report(
    data: ReportData,
    *,
    lang: str = "zh",
    top_n: int = 10,
    thresholds: Thresholds | None = None,
    fx: ExchangeRates | None = None,
    budgets: Sequence[Mapping[str, Any]] = (),
) -> Report:
    """Compute, chart and render the report of ``data.day`` in ``lang``; costs converted with ``fx``
    (default: CNY without rates, so other currencies show as unconverted parts); ``budgets`` are
    :func:`~llmtally.budgets.budget_rows` in ``lang`` (the summary's ``budgets``).  A provisional
    day (``data.provisional_through``) says so first, in the subject too."""
    provisional = data.provisional_through
    rates = fx or ExchangeRates()
    fmt = Formatter(lang, data.timezone)
    summary = summarize(data, top_n=top_n, thresholds=thresholds, fx=rates)
    trend, cost_by_model = _chart_inputs(data, rates)
    charts = render_charts(summary, trend, cost_by_model, lang)
    cid = {k: f"cid:{v}" for k, v in CHART_IDS.items()}
    inline = {k: "data:image/png;base64," + base64.b64encode(v).decode("ascii") for k, v in charts.items()}
    # an intraday load (not yet replaced by the daily run) says so first, in the subject too
    first = ""
    if provisional is not None:
        first = fmt.msg["provisional"].format(through=f"{provisional.astimezone(fmt.zone):%H:%M}")
    headline = first + _headline(summary, fmt)
    subject = first + fmt.msg["subject"].format(
        day=summary["day"],
        tokens=fmt.number(summary["total_tokens"]),
        change=fmt.change(summary["same_day_last_week"]["change_pct"]),
    )
    text = "\n".join(
        [
            headline,
            f"{fmt.msg['cost']}: {fmt.cost_line(summary['converted_cost'])}",
            *(f"- {line}" for line in fmt.unconverted(summary["converted_cost"], summary["day"])),
            fmt.msg["timezone"].format(tz=fmt.tz(summary["day"])),
            f"{fmt.msg['anomalies']}: {len(summary['anomalies'])}",
            *_budget_lines(budgets, lang),
            *_loss_lines(summary, fmt),
            *_fold_lines(summary, fmt),
        ]
    )
    through = provisional.isoformat() if provisional is not None else None
    summary = {**summary, "headline": headline, "budgets": [dict(b) for b in budgets]}
    summary["provisional_through"] = through
    return Report(
        day=data.day,
        lang=lang,
        summary=summary,
        subject=subject,
        text=text + "\n",
        html_email=render_html(summary, lang, cid),
        html_file=render_html(summary, lang, inline),
        charts=charts,
    )
