"""The words of budgets in Chinese and English: spend lines, projections, notes and table rows.

One place for what alerts, the daily report and the usage page say about a budget, e.g.
"at this rate the month's ¥50,000.00 runs out on 18 December" /
"按当前速度，本月 ¥50,000.00 的预算将在 12月18日 用完".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from .._exceptions import ConfigError
from .._time import zone
from ..pricing import format_money
from ._evaluate import BudgetStatus

__all__ = ["LANGS", "amount", "budget_rows", "budget_words", "notes", "projection", "spend_line", "threshold"]

LANGS = ("zh", "en")

_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "budgets": "Budgets",
        "budget": "Budget",
        "covers": "Covers",
        "all_usage": "all usage",
        "period": "Period",
        "spent": "Spent / limit",
        "share": "Share",
        "projection": "Projection",
        "fired": "Thresholds fired",
        "none_fired": "none",
        "day": "day",
        "week": "week",
        "month": "month",
        "spend_line": "{spend} of {limit} spent this {period} ({share})",
        "nothing_yet": "nothing spent yet this {period}",
        "used_up": "the {period}'s {limit} is used up",
        "runs_out_on": "at this rate the {period}'s {limit} runs out on {when}",
        "runs_out_at": "at this rate the {period}'s {limit} runs out at about {when}",
        "ends_at": "at this rate the {period} ends at {projected} ({share} of {limit})",
        "unconverted": "{amount} not counted: no {base}→{unit} exchange rate in force ([[currency.rates]])",
        "unpriced": "{n} requests without a price are not in the spend",
        "title": "Budget {name} reached {threshold}",
        "tokens": "{n} tokens",
    },
    "zh": {
        "budgets": "预算",
        "budget": "预算",
        "covers": "范围",
        "all_usage": "全部用量",
        "period": "周期",
        "spent": "已用 / 额度",
        "share": "占比",
        "projection": "预测",
        "fired": "已触发阈值",
        "none_fired": "无",
        "day": "当天",
        "week": "本周",
        "month": "本月",
        "spend_line": "{period}已用 {spend} / {limit}（{share}）",
        "nothing_yet": "{period}尚无用量",
        "used_up": "{period} {limit} 的预算已用完",
        "runs_out_on": "按当前速度，{period} {limit} 的预算将在 {when} 用完",
        "runs_out_at": "按当前速度，{period} {limit} 的预算将在 {when} 左右用完",
        "ends_at": "按当前速度，{period}预计用到 {projected}（{limit} 的 {share}）",
        "unconverted": "{amount} 未计入：没有生效的 {base}→{unit} 汇率（[[currency.rates]]）",
        "unpriced": "{n} 个没有价格的请求未计入",
        "title": "预算 {name} 已达 {threshold}",
        "tokens": "{n} tokens",
    },
}
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")  # fmt: skip
_PERIOD_LABELS = {
    "en": {"day": "day", "week": "week", "month": "month"},
    "zh": {"day": "日", "week": "周", "month": "月"},
}


def budget_words(lang: str) -> Mapping[str, str]:
    """The budget words in ``lang`` (``zh`` or ``en``): headings and message templates."""
    if lang not in _WORDS:
        raise ConfigError(f"budget language {lang!r} is not supported; use zh or en")
    return _WORDS[lang]


def _share(x: float) -> str:
    return f"{100 * x:.1f}%"


def threshold(t: float) -> str:
    """``80%``, ``95%``, ``100%``, ``112.5%``."""
    return f"{100 * t:g}%"


def amount(value: Decimal, unit: str, lang: str) -> str:
    """``¥50,000.00`` for a currency, ``1,200,000 tokens`` for tokens."""
    if unit == "tokens":
        return budget_words(lang)["tokens"].format(n=f"{int(value):,}")
    return format_money(value, unit)


def _day(d: date, lang: str) -> str:
    return f"{d.month}月{d.day}日" if lang == "zh" else f"{d.day} {_MONTHS[d.month - 1]}"


def spend_line(status: BudgetStatus, lang: str) -> str:
    """``¥41,000.00 of ¥50,000.00 spent this month (82.0%)``."""
    w, b = budget_words(lang), status.budget
    return w["spend_line"].format(
        spend=amount(status.spend, b.unit, lang), limit=amount(b.limit, b.unit, lang),
        period=w[b.period], share=_share(status.share),
    )  # fmt: skip


def projection(status: BudgetStatus, lang: str) -> str:
    """Where the period ends at the rate so far, in plain words (see the module docstring)."""
    w, b = budget_words(lang), status.budget
    limit, period = amount(b.limit, b.unit, lang), w[b.period]
    if status.exhausted:
        return w["used_up"].format(period=period, limit=limit)
    if status.projected is None:
        return w["nothing_yet"].format(period=period)
    if status.runs_out_at is not None:
        if b.period == "day":
            when = status.runs_out_at.astimezone(zone(status.timezone)).strftime("%H:%M")
            return w["runs_out_at"].format(period=period, limit=limit, when=when)
        return w["runs_out_on"].format(period=period, limit=limit, when=_day(status.runs_out_at.astimezone(
            zone(status.timezone)).date(), lang))  # fmt: skip
    share = status.projected_share or 0.0
    return w["ends_at"].format(
        period=period, projected=amount(status.projected, b.unit, lang), share=_share(share), limit=limit
    )


def notes(status: BudgetStatus, lang: str) -> list[str]:
    """What the spend leaves out: costs without an exchange rate, requests without a price."""
    w, unit = budget_words(lang), status.budget.unit
    out = [
        w["unconverted"].format(amount=format_money(v, c), base=c, unit=unit)
        for c, v in sorted(status.unconverted.items())
    ]
    if status.unpriced_requests:
        out.append(w["unpriced"].format(n=f"{status.unpriced_requests:,}"))
    return out


def budget_rows(statuses: Iterable[BudgetStatus], state: Any, lang: str) -> list[dict[str, Any]]:
    """One row per status for the report's JSON and tables: :meth:`BudgetStatus.as_dict`, the
    thresholds ``state`` (a :class:`~llmtally.budgets.BudgetState`, or ``None``) has fired this
    period, and ``words`` (cells in ``lang``: covers, period, spent, share, projection, fired, notes)."""
    w = budget_words(lang)
    rows = []
    for s in statuses:
        b = s.budget
        fired = (
            state.fired_in(b.name, s.period.first) if state is not None and hasattr(state, "fired_in") else []
        )
        label = _PERIOD_LABELS[lang][b.period]
        rows.append(
            {
                **s.as_dict(),
                "fired": [
                    {"threshold": f.threshold, "fired_at": f.fired_at.isoformat(), "share": round(f.share, 4)}
                    for f in fired
                ],
                "words": {
                    "covers": b.covers() if b.match else w["all_usage"],
                    "period": f"{label} {s.period.first.isoformat()} – {s.period.last.isoformat()}",
                    "spent": f"{amount(s.spend, b.unit, lang)} / {amount(b.limit, b.unit, lang)}",
                    "share": _share(s.share),
                    "projection": projection(s, lang),
                    "fired": ", ".join(threshold(f.threshold) for f in fired) or w["none_fired"],
                    "notes": notes(s, lang),
                },
            }
        )
    return rows
