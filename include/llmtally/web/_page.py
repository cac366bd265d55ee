"""Render the usage page: server-side HTML, inline CSS and SVG, no scripts, nothing fetched.

The template ships in the package (``llmtally/web/templates/``) and autoescapes everything; names
in ``usage_hourly`` are user-controlled text.  Numbers are formatted for the reader and carry their
exact value in ``data-value`` (what the CSV holds).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from functools import cache
from typing import Any

from ..budgets import budget_words
from ..report._i18n import Formatter
from ._currency import ExchangeRates, reporting_total
from ._data import PageData
from ._i18n import words
from ._run import RunView
from ._sections import page_tables
from ._svg import series_chart
from ._tables import Column, Table, change_pct, dates

__all__ = ["cell_text", "render_page", "render_run"]


@cache
def _env() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("llmtally.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def cell_text(col: Column, value: Any, f: Formatter) -> str:
    """How a table cell reads on the page."""
    if value is None:
        return "" if col.kind == "money" else f.msg["na"]
    kind = col.kind
    if kind == "text":
        return f.name(str(value))
    if kind == "int":
        return f.number(value)
    if kind == "money":
        return f.money({col.currency or "": float(value)})
    if kind == "share":
        return f.share(value)
    if kind == "change":
        return f.change(value)
    if kind == "pct":
        return f"{value:,.2f}%"
    if kind == "float":
        return f.decimal(value, 1)
    return str(value)


def data_value(value: Any) -> str:
    """The exact value behind a cell (``data-value``)."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(value)


def _cards(data: PageData, rates: ExchangeRates) -> dict[str, Any]:
    q, total = data.query, data.total
    last = data.days.get(q.end)
    tokens = last.total_tokens if last else 0

    def on(d: date) -> int:
        u = data.days.get(d)
        return u.total_tokens if u else 0

    in_range = {d: u.cost for d, u in data.days.items() if q.start <= d <= q.end and u.cost}
    return {
        "total": total,
        "last_tokens": tokens,
        "dod": change_pct(tokens, on(q.end - timedelta(days=1))),
        "wow": change_pct(tokens, on(q.end - timedelta(days=7))),
        "converted": reporting_total(rates, in_range),
    }


def render_page(data: PageData, rates: ExchangeRates, *, base: str) -> tuple[str, dict[str, Table]]:
    """The page's HTML and its tables (by id); ``rates`` convert cost into the reporting currency;
    ``base`` is the app's URL path (``/llmtally``)."""
    lang = data.query.lang
    w, f = words(lang), Formatter(lang, data.timezone)
    tables = page_tables(data, w, lang, rates)
    q = data.query
    daily = [
        (d.isoformat(), data.days[d].total_tokens if d in data.days else 0) for d in dates(q.start, q.end)
    ]
    hourly = [(r[0], r[2]) for r in tables["hourly"].rows]
    charts = {
        "daily": series_chart(daily, title=w["daily"], number=f.number),
        "hourly": series_chart(hourly, title=w["hourly_chart"].format(tz=data.timezone), number=f.number),
    }
    loaded = bool(data.quality) or bool(data.days)
    other = "en" if lang == "zh" else "zh"
    html = (
        _env()
        .get_template("page.html.j2")
        .render(
            q=q,
            w=w,
            f=f,
            lang=lang,
            tables=tables,
            charts=charts,
            cards=_cards(data, rates),
            base=base,
            cell=lambda col, v: cell_text(col, v, f),
            raw=data_value,
            loaded=loaded,
            budgets=data.budgets,
            bw=budget_words(lang),
            provisional=[
                (d.day.isoformat(), f"{d.through.astimezone(f.zone):%Y-%m-%d %H:%M}" if d.through else "")
                for d in data.quality
                if d.provisional
            ],
            tz=f.tz(q.end),
            other_lang=other,
            other_lang_qs=replace(q, lang=other).query_string(),
        )
    )
    return str(html), tables


def render_run(view: RunView, *, lang: str, timezone: str, base: str) -> str:
    """The HTML of "Usage of this run"."""
    w, f = words(lang), Formatter(lang, timezone)
    html = (
        _env()
        .get_template("run.html.j2")
        .render(
            v=view, w=w, f=f, lang=lang, base=base, cell=lambda col, v: cell_text(col, v, f), raw=data_value
        )
    )
    return str(html)
