"""Charts as inline SVG, drawn on the server: nothing to fetch, nothing to run in the browser.

Bars for a few dozen points (each with a ``<title>`` tooltip), an area line for longer series.
Text is escaped here (labels are user-controlled names); the result is markup for the template.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

__all__ = ["series_chart"]

_W, _H = 960, 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 12, 12, 28
_BARS_UP_TO = 96


def _nice(top: float) -> float:
    """The axis maximum: ``top`` rounded up to 1, 2 or 5 times a power of ten."""
    if top <= 0:
        return 1.0
    exp = 10 ** (len(str(int(top))) - 1)
    for step in (1, 2, 5, 10):
        if top <= step * exp:
            return float(step * exp)
    return float(10 * exp)


def series_chart(
    points: Sequence[tuple[str, int]],
    *,
    title: str,
    number: Callable[[float], str],
    css_class: str = "chart",
) -> str:
    """An SVG chart of ``(label, value)`` points in order: bars, or an area line when there are
    more than a few dozen.  ``number`` formats axis values and tooltips."""
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    top = _nice(max((v for _, v in points), default=0))
    out = [
        f'<svg class="{escape(css_class)}" viewBox="0 0 {_W} {_H}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i in range(5):
        y = _TOP + plot_h * i / 4
        out.append(f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="axis">'
            f"{escape(number(top * (4 - i) / 4))}</text>"
        )
    n = len(points)
    if n:
        step = plot_w / n

        def y_of(v: int) -> float:
            return _TOP + plot_h * (1 - v / top)

        if n <= _BARS_UP_TO:
            for i, (label, v) in enumerate(points):
                x, y = _LEFT + i * step, y_of(v)
                out.append(
                    f'<rect x="{x + step * 0.1:.1f}" y="{y:.1f}" width="{step * 0.8:.1f}" '
                    f'height="{_TOP + plot_h - y:.1f}" class="bar"><title>{escape(label)}: '
                    f"{escape(number(v))}</title></rect>"
                )
        else:
            coords = " ".join(
                f"{_LEFT + (i + 0.5) * step:.1f},{y_of(v):.1f}" for i, (_, v) in enumerate(points)
            )
            base = _TOP + plot_h
            out.append(
                f'<polygon points="{_LEFT + 0.5 * step:.1f},{base} {coords} '
                f'{_LEFT + (n - 0.5) * step:.1f},{base}" class="area"/>'
            )
            out.append(f'<polyline points="{coords}" class="line"/>')
        ticks = sorted({0, n // 4, n // 2, 3 * n // 4, n - 1})
        for i in ticks:
            x = _LEFT + (i + 0.5) * step
            anchor = "start" if i == 0 and n > 1 else "end" if i == n - 1 and n > 1 else "middle"
            out.append(
                f'<text x="{x:.1f}" y="{_H - 8}" text-anchor="{anchor}" class="axis">'
                f"{escape(points[i][0])}</text>"
            )
    out.append("</svg>")
    return "".join(out)
