"""Chinese chart labels with a CJK font installed after matplotlib built its font cache.

A real stale cache: matplotlib builds it in a fresh ``MPLCONFIGDIR`` while told to ignore the
system's fonts (``MPL_IGNORE_SYSTEM_FONTS``), so it lists only matplotlib's own fonts — what a
cache built before ``apt-get install fonts-noto-cjk`` holds.  A second, fresh interpreter with that
cache (and the system fonts visible again) renders the charts: the Chinese labels must be drawn
with the Noto CJK file, without a single missing-glyph warning.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BUILD_STALE_CACHE = """
import json, matplotlib
from matplotlib import font_manager
print(json.dumps({"cjk": sorted({f.name for f in font_manager.fontManager.ttflist if "CJK" in f.name}),
                  "cachedir": matplotlib.get_cachedir()}))
"""

RENDER = """
import json, warnings
from matplotlib import font_manager
manager = font_manager.fontManager
stale = sorted({f.name for f in manager.ttflist if "CJK" in f.name})  # before llmtally looks

from matplotlib.backends import backend_agg
used = []  # the font files Agg opens for every text it draws (observed, then passed through)
get_font = backend_agg.get_font
def recording(paths, *args, **kwargs):
    used.append([str(p) for p in paths] if isinstance(paths, list) else [str(paths)])
    return get_font(paths, *args, **kwargs)
backend_agg.get_font = recording

from llmtally.report._charts import chart_labels, cjk_font, render_charts

day = "2026-11-26"
summary = {
    "day": day, "timezone": "Asia/Shanghai",
    "hourly": [{"hour": h, "total_tokens": 1000 + h, "same_day_last_week_total_tokens": 900} for h in range(24)],
    "daily": [{"day": f"2026-11-{d:02d}", "total_tokens": 5000} for d in range(1, 29)],
}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    charts = render_charts(summary, {"客服问答": [100] * 28, "写作助手": [50] * 28},
                           {"通义千问": {"CNY": 1.5}}, "zh")
print(json.dumps({
    "stale": stale, "font": cjk_font(), "label": chart_labels("zh")["hourly"],
    "pngs": {k: len(v) for k, v in charts.items()},
    "primary": sorted({paths[0] for paths in used if paths}),
    "glyph_warnings": [str(w.message) for w in caught if "Glyph" in str(w.message)],
    "resolved": font_manager.findfont(font_manager.FontProperties(family=cjk_font()),
                                      fallback_to_default=False) if cjk_font() else None,
}))
"""


def _cjk_files() -> list[str]:
    fc = shutil.which("fc-list")
    if fc is None:
        return []
    out = subprocess.run([fc, "--format", "%{file}\\n", ":lang=zh"], capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if "CJK" in line]


def _python(code: str, env: dict[str, str]) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_cjk_font_installed_after_the_font_cache_was_built(tmp_path: Path) -> None:
    if not _cjk_files():
        pytest.skip("no CJK font installed (scripts/setup.sh installs fonts-noto-cjk as root)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPL")}
    env["MPLCONFIGDIR"] = str(tmp_path / "mpl")

    built = _python(BUILD_STALE_CACHE, {**env, "MPL_IGNORE_SYSTEM_FONTS": "1"})
    assert built["cjk"] == [] and built["cachedir"] == str(tmp_path / "mpl")
    caches = list((tmp_path / "mpl").glob("fontlist-*.json"))
    assert len(caches) == 1 and "CJK" not in caches[0].read_text(encoding="utf-8")

    got = _python(RENDER, env)
    assert got["stale"] == [], "matplotlib rebuilt its cache: the stale case was not exercised"
    assert got["font"] == "Noto Sans CJK SC" and got["label"] == "每小时 Tokens"
    assert "NotoSansCJK" in str(got["resolved"])
    primary = got["primary"]
    assert isinstance(primary, list) and primary and all("NotoSansCJK" in p for p in primary), primary
    assert got["glyph_warnings"] == []  # no tofu: every Chinese glyph was found
    assert all(isinstance(n, int) and n > 5_000 for n in got["pngs"].values())  # type: ignore[union-attr]
    # the cache on disk now lists the font, so the next process does not search again
    assert "NotoSansCJK" in caches[0].read_text(encoding="utf-8")
