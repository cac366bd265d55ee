"""The report's charts as PNG bytes (matplotlib, Agg backend, CJK-capable fonts).

Chinese labels need a CJK font: on Debian ``apt-get install fonts-noto-cjk`` ("Noto Sans CJK SC").
:func:`cjk_font` finds one among the fonts matplotlib knows and, when matplotlib's font cache was
built before the font was installed, among the system's font files (fontconfig's ``fc-list
:lang=zh``, else matplotlib's own scan), which it adds to matplotlib and to its cache.  Without any,
charts fall back to English labels so no tofu boxes appear (names containing CJK characters would
still lack glyphs, and a warning is logged once).
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import subprocess
import threading
import warnings
from collections.abc import Mapping, Sequence
from datetime import date
from functools import cache
from pathlib import Path
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


# File names of CJK fonts, for finding them without fontconfig.
_CJK_FILE = re.compile(
    r"cjk|sourcehan|wqy|wenquanyi|droidsansfallback|uming|ukai|msyh|yahei|pingfang|simhei|simsun|"
    r"notosans(sc|tc|hk|jp|kr)|notoserif(sc|tc|hk|jp|kr)",
    re.IGNORECASE,
)


def _known_cjk(names: set[str]) -> str | None:
    for name in CJK_FONTS:
        if name in names:
            return name
    return next((n for n in sorted(names) if "CJK" in n), None)


def _cjk_font_files() -> list[str]:
    """CJK-capable font files on this machine: fontconfig's answer for Chinese, else the files of
    matplotlib's system font scan whose names say CJK."""
    fc = shutil.which("fc-list")
    if fc:
        try:
            out = subprocess.run(
                [fc, "--format", "%{file}\n", ":lang=zh"], capture_output=True, text=True, timeout=20
            )
        except (OSError, subprocess.SubprocessError):
            out = None
        if out is not None and out.returncode == 0:
            files = sorted({line.strip() for line in out.stdout.splitlines() if line.strip()})
            return [f for f in files if Path(f).suffix.lower() in (".ttf", ".otf", ".ttc")]
    from matplotlib import font_manager

    return sorted(f for f in font_manager.findSystemFonts() if _CJK_FILE.search(Path(f).name))


def _add_installed_cjk_fonts() -> list[str]:
    """Add CJK font files matplotlib's (stale) font cache does not list; save the cache again."""
    from matplotlib import font_manager

    manager = font_manager.fontManager
    known = {f.fname for f in manager.ttflist}
    added = []
    for path in _cjk_font_files():
        if path in known:
            continue
        try:
            manager.addfont(path)
        except (OSError, RuntimeError, ValueError) as exc:  # a broken or unreadable font file
            log.debug("cannot add font %s: %s", path, exc)
            continue
        added.append(path)
    if added:
        import matplotlib

        cache_file = Path(matplotlib.get_cachedir(), f"fontlist-v{manager.__version__}.json")
        tmp = cache_file.with_name(f"{cache_file.name}.{os.getpid()}.tmp")
        try:  # what matplotlib writes when it builds the cache; replaced whole, never half-written
            font_manager.json_dump(manager, tmp)
            tmp.replace(cache_file)
        except (OSError, TypeError, ValueError) as exc:
            tmp.unlink(missing_ok=True)
            log.debug("cannot update matplotlib's font cache %s: %s", cache_file, exc)
        log.info(
            "matplotlib's font cache predates %d installed CJK font file(s); added them: %s",
            len(added),
            ", ".join(added),
        )
    return added


_font_lock = threading.Lock()


@cache
def cjk_font() -> str | None:
    """The first installed family of :data:`CJK_FONTS` (else any family named "CJK"), or None.

    Looks among the fonts matplotlib knows first; when none is CJK (a font cache built before the
    font was installed), adds the system's CJK font files to matplotlib and looks again.
    """
    from matplotlib import font_manager

    with _font_lock:
        found = _known_cjk({f.name for f in font_manager.fontManager.ttflist})
        if found is None and _add_installed_cjk_fonts():
            found = _known_cjk({f.name for f in font_manager.fontManager.ttflist})
    return found


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
