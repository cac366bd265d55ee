"""The HTML report opened in a real headless Chromium (Debian ``chromium``); the screenshot is kept."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from llmtally.report import run_daily_report
from tests.report import gen
from tests.support import REPO_ROOT

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.mark.slow
def test_report_renders_in_chromium(pg_dsn: str, planted_schema: str, use_schema: Any, tmp_path: Any) -> None:
    if not shutil.which(CHROMIUM):
        pytest.fail("Debian chromium is required (apt-get install chromium fonts-noto-cjk)")
    from PIL import Image
    from playwright.sync_api import sync_playwright

    use_schema(planted_schema)
    result = run_daily_report(pg_dsn, gen.DAY, lang="zh", report_dir=tmp_path, timezone=gen.TZ, archive=False)
    artifacts = REPO_ROOT / "artifacts"
    artifacts.mkdir(exist_ok=True)
    shot = artifacts / "report-2026-11-26-zh.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 1200})
            page.goto(result.html_path.as_uri())
            text = page.inner_text("body")
            sizes = page.eval_on_selector_all("img", "els => els.map(e => [e.naturalWidth, e.complete])")
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert f"{result.report.summary['total_tokens']:,}" in text and "大模型 Token 用量日报" in text
    assert len(sizes) == 3 and all(w > 300 and ok for w, ok in sizes), sizes  # charts decoded
    with Image.open(shot) as im:
        rgb = im.convert("RGB")
        assert rgb.height > 2000
        colors = rgb.resize((90, 240)).getcolors(90 * 240) or []
        assert len(colors) > 50, "screenshot is (nearly) blank"
