"""The run plan: which day, which sources and recipients, in which order of precedence."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from llmtally._exceptions import ConfigError
from llmtally.jobs.daily import plan


@pytest.fixture(autouse=True)
def _staging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMTALLY_STAGING_DIR", str(tmp_path / "staging"))
    monkeypatch.delenv("LLMTALLY_LOG_DIRS", raising=False)
    monkeypatch.delenv("LLMTALLY_CONFIG", raising=False)


def test_params_override_variables_and_variables_override_env(monkeypatch: pytest.MonkeyPatch) -> None:
    variables = {"llm_usage_log_dirs": '["/var/a", "/var/b/*"]', "llm_usage_report_recipients": "x@a, y@b"}
    monkeypatch.setenv("LLMTALLY_LOG_DIRS", "/env/logs")
    p = plan({"day": "2026-11-20"}, run_id="manual__1", variable=variables.get)
    assert p["day"] == "2026-11-20" and p["tz"] == "Asia/Shanghai"
    assert p["sources"] == ["/var/a", "/var/b/*"]
    assert p["recipients"] == ["x@a", "y@b"]
    assert Path(p["staging"]).is_dir() and p["staging"].endswith(os.path.join("2026-11-20", "manual__1"))
    p = plan({"day": "2026-11-20", "sources": ["/p"], "recipients": ["z@c"], "dry_run": True},
             run_id="r", variable=variables.get)  # fmt: skip
    assert p["sources"] == ["/p"] and p["recipients"] == ["z@c"] and p["dry_run"] is True
    p = plan(
        {}, run_id="r", data_interval_start=datetime(2026, 11, 19, 18, tzinfo=UTC), variable=lambda _k: None
    )
    assert p["sources"] == ["/env/logs"] and p["day"] == "2026-11-20" and p["recipients"] == []


def test_no_sources_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="llm_usage_log_dirs"):
        plan({"day": "2026-11-20"}, run_id="r", variable=lambda _k: None)
