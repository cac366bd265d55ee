"""The report's charts as PNG bytes (matplotlib, Agg backend, CJK-capable fonts).

Chinese labels need a CJK font: on Debian ``apt-get install fonts-noto-cjk`` ("Noto Sans CJK SC").
:func:`cjk_font` finds one among the fonts matplotlib knows; without one, charts fall back to English
labels so no tofu boxes appear (names containing CJK characters would still lack glyphs, and a
warning is logged once).
"""

from __future__ import annotations

import io
import logging
import threading
import warnings
from collections.abc import Mapping, Sequence
from datetime import date
from functools import cache
from typing import Any

__all__ = ["CJK_FONTS", "chart_labels", "cjk_font", "render_charts"]

log = logging.getLogger(__name__)

CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "Source Han Sans CN",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Microsoft YaHei",
    "PingFang SC",
    "SimHei",
    "Noto Sans CJK JP",
    "Noto Serif CJK SC",
    "Droid Sans Fallback",
    "AR PL UMing CN",
)
"""CJK-capable font families, in order of preference."""

_COLORS = ("#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#06b6d4", "#9ca3af")
_lock = threading.Lock()  # rcParams are global: charts are drawn one at a time


@cache
def cjk_font() -> str | None:
    """The first installed family of :data:`CJK_FONTS` (else any family named "CJK"), or None."""
    from matplotlib import font_manager

    names = {f.name for f in font_manager.fontManager.ttflist}
    for name in CJK_FONTS:
        if name in names:
            return name
    return next((n for n in sorted(names) if "CJK" in n), None)


_LABELS = {
    "en": {
        "hourly": "Tokens per hour",
        "today": "{day}",
        "last_week": "{day} (same day last week)",
        "hour": "hour ({tz})",
        "trend": "Daily tokens, last 4 weeks, by feature",
        "other": "other",
        "cost": "Cost by model",
        "no_cost": "no priced usage",
    },
    "zh": {
        "hourly": "每小时 Tokens",
        "today": "{day}",
        "last_week": "{day}（上周同日）",
        "hour": "小时（{tz}）",
        "trend": "近 4 周每日 Tokens（按场景）",
        "other": "其他",
        "cost": "各模型费用",
        "no_cost": "无可计价用量",
    },
}


def chart_labels(lang: str) -> Mapping[str, str]:
    """Chart labels in ``lang``, English when no CJK font is installed."""
    if lang == "zh" and cjk_font() is None:
        log.warning("no CJK font found (install fonts-noto-cjk): charts are labelled in English")
        return _LABELS["en"]
    return _LABELS.get(lang, _LABELS["en"])


def _safe(text: str) -> str:
    """User-controlled names must not switch matplotlib into mathtext."""
    return (text or "-").replace("$", r"\$")


def _compact(x: float, _pos: object = None) -> str:
    """Axis ticks as ``1.5M`` / ``250k`` instead of matplotlib's ``1e6`` offset."""
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}"


def _png(fig: Any, value_axis: str = "y") -> bytes:
    from matplotlib.ticker import FuncFormatter

    for ax in fig.axes:
        (ax.yaxis if value_axis == "y" else ax.xaxis).set_major_formatter(FuncFormatter(_compact))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _hourly(fig: Any, summary: Mapping[str, Any], lab: Mapping[str, str]) -> bytes:
    fig.set_size_inches(7.2, 2.8)
    ax = fig.subplots()
    hours = list(range(24))
    today = [h["total_tokens"] for h in summary["hourly"]]
    week = [h["same_day_last_week_total_tokens"] for h in summary["hourly"]]
    last = date.fromordinal(date.fromisoformat(summary["day"]).toordinal() - 7).isoformat()
    ax.bar(hours, today, color=_COLORS[0], label=lab["today"].format(day=summary["day"]))
    ax.plot(hours, week, color=_COLORS[1], marker="o", ms=3, label=lab["last_week"].format(day=last))
    ax.set_xticks(hours[::2])
    ax.set_xlabel(lab["hour"].format(tz=summary["timezone"]))
    ax.set_title(lab["hourly"], fontsize=11)
    ax.legend(fontsize=8, frameon=False)
    return _png(fig)


def _trend(
    fig: Any, summary: Mapping[str, Any], by_feature: Mapping[str, Sequence[int]], lab: Mapping[str, str]
) -> bytes:
    fig.set_size_inches(7.2, 2.8)
    ax = fig.subplots()
    days = [d["day"][5:] for d in summary["daily"]]
    bottom = [0] * len(days)
    for i, (feature, values) in enumerate(by_feature.items()):
        name = lab["other"] if feature == "\0other" else _safe(feature)
        ax.bar(days, values, bottom=bottom, color=_COLORS[i % len(_COLORS)], label=name)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_xticks(range(0, len(days), 4))
    ax.set_xticklabels(days[::4], fontsize=8)
    ax.set_title(lab["trend"], fontsize=11)
    if by_feature:
        ax.legend(fontsize=7, frameon=False, ncol=4)
    return _png(fig)


def _cost(fig: Any, cost_by_model: Mapping[str, Mapping[str, float]], lab: Mapping[str, str]) -> bytes:
    fig.set_size_inches(7.2, 2.6)
    ax = fig.subplots()
    bars = [(f"{_safe(m)} ({c})", v) for m, cs in cost_by_model.items() for c, v in cs.items()]
    bars.sort(key=lambda b: b[1])
    bars = bars[-10:]
    if bars:
        ax.barh([b[0] for b in bars], [b[1] for b in bars], color=_COLORS[2])
        ax.tick_params(axis="y", labelsize=8)
        for i, (_, value) in enumerate(bars):
            ax.text(value, i, f" {value:,.2f}", va="center", fontsize=8)
    else:
        ax.text(0.5, 0.5, lab["no_cost"], ha="center", va="center", transform=ax.transAxes)
    ax.set_title(lab["cost"], fontsize=11)
    return _png(fig, value_axis="x")


def render_charts(
    summary: Mapping[str, Any],
    by_feature: Mapping[str, Sequence[int]],
    cost_by_model: Mapping[str, Mapping[str, float]],
    lang: str,
) -> dict[str, bytes]:
    """``{"hourly": png, "trend": png, "cost": png}`` for a summary made by :func:`summarize`.

    ``by_feature`` holds the 28 daily token totals of the trend per feature (``"\\0other"`` for the
    rest); ``cost_by_model`` is ``{model: {currency: amount}}`` of the report day.
    """
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no GUI backend

    lab = chart_labels(lang)
    font = cjk_font()
    rc: Any = {
        "font.family": ["sans-serif"],
        "font.sans-serif": [*([font] if font else []), "DejaVu Sans"],
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.unicode_minus": False,
        "figure.autolayout": True,
    }
    with _lock, matplotlib.rc_context(rc), warnings.catch_warnings():
        if font is None:  # names with CJK characters cannot be drawn; say so once, not per glyph
            warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        return {
            "hourly": _hourly(Figure(), summary, lab),
            "trend": _trend(Figure(), summary, by_feature, lab),
            "cost": _cost(Figure(), cost_by_model, lab),
        }
