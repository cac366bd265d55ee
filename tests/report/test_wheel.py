"""A built wheel renders a report on its own: the HTML template ships as package data.

The wheel is installed (``--no-deps``) into a fresh virtual environment whose only view of the
project's dependencies is a ``.pth`` line naming this environment's site-packages folder.  A line of
a ``.pth`` file is only added to ``sys.path``; the ``.pth`` files inside that folder (the editable
install's among them) are not run, so the child imports ``llmtally`` from the wheel, and checks it.
"""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path

from tests.support import build_wheel, fresh_venv

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = "llmtally/report/templates/report.html.j2"

# Renders the report of DAY from in-memory aggregates (no database) and prints what the test checks.
CHILD = r"""
import json, sys
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import llmtally
from llmtally.report import ReportData, build_report
from llmtally.report._data import DailyUsage, HourUsage, UserDay
from llmtally.report._render import TEMPLATE_NAME, _env

DAY, WEEK_AGO = date(2026, 11, 26), date(2026, 11, 19)


def usage(day, feature, model, currency, requests, prompt, completion, cost):
    return DailyUsage(day, feature, model, "svc", currency, requests, prompt, completion, 0, 0, cost, 0)


data = ReportData(
    day=DAY,
    timezone="UTC",
    start=date(2026, 10, 1),
    daily=(
        usage(DAY, "chat", "gpt-4o", "USD", 120, 1_000_000, 234_567, Decimal("4.845670")),
        usage(DAY, "search", "qwen-plus", "CNY", 30, 100_000, 2_000, Decimal("0.084")),
        usage(WEEK_AGO, "chat", "gpt-4o", "USD", 100, 900_000, 200_000, Decimal("4.25")),
    ),
    hourly=(
        HourUsage(datetime(2026, 11, 26, 9), 100, 1_000_000),
        HourUsage(datetime(2026, 11, 26, 14), 50, 336_567),
        HourUsage(datetime(2026, 11, 19, 9), 100, 1_100_000),
    ),
    users=(UserDay(DAY, "alice", "USD", 120, 1_234_567, Decimal("4.845670")),),
    top_requests=(),
    digests=(),
    reconciliation=({"model": "gpt-4o", "service": "svc", "fingerprint": "fp", "records": 150,
                     "recounted": 150},),
)
report = build_report(data, lang="en")
Path(sys.argv[1]).write_text(report.html_file, encoding="utf-8")
print(json.dumps({
    "llmtally": llmtally.__file__,
    "template": _env().get_template(TEMPLATE_NAME).filename,
    "total_tokens": report.summary["total_tokens"],
    "requests": report.summary["requests"],
    "cost": report.summary["cost"],
}))
"""


def test_wheel_ships_the_template_and_renders(tmp_path: Path) -> None:
    wheel = build_wheel(REPO, tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        assert TEMPLATE in zf.namelist()

    venv = tmp_path / "venv"
    python = fresh_venv(venv, wheel, share_deps=True)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    (cwd / "render.py").write_text(CHILD, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONNOUSERSITE"] = "1"
    html_path = cwd / "report.html"
    run = subprocess.run(
        [python, "render.py", html_path], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])

    # the child used the wheel's package and template, not the checkout's
    assert Path(seen["llmtally"]).resolve().is_relative_to(venv.resolve()), seen["llmtally"]
    assert Path(seen["template"]).resolve().is_relative_to(venv.resolve()), seen["template"]
    assert not Path(seen["llmtally"]).resolve().is_relative_to(REPO / "include")

    assert (seen["total_tokens"], seen["requests"]) == (1_336_567, 150)
    assert seen["cost"] == {"CNY": 0.084, "USD": 4.84567}
    html = html_path.read_text(encoding="utf-8")
    assert "1,336,567" in html and "¥0.08 · $4.85" in html and "LLM token usage" in html
    assert "2026-11-26" in html or "26 November 2026" in html
