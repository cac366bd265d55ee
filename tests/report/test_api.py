"""The report package's public surface."""

from __future__ import annotations

import subprocess
import sys

import llmtally.report


def test_all_is_sorted_and_exported() -> None:
    assert llmtally.report.__all__ == sorted(llmtally.report.__all__)
    for name in llmtally.report.__all__:
        assert hasattr(llmtally.report, name), name
    assert {"run_daily_report", "make_report", "AirflowSmtpNotifier", "SmtpNotifier"} <= set(
        llmtally.report.__all__
    )


def test_import_is_light() -> None:
    code = "import sys, llmtally.report; print(sorted({'matplotlib', 'psycopg', 'airflow', 'pandas'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
