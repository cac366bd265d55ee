"""Which logical date reports which day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from llmtally._exceptions import ConfigError
from llmtally._time import day_bounds, report_day, report_timezone

TZ = "Asia/Shanghai"
UTC = UTC


def test_day_param_wins_over_everything() -> None:
    start = datetime(2026, 11, 1, 18, tzinfo=UTC)
    assert report_day(TZ, day_param="2026-11-20", data_interval_start=start) == date(2026, 11, 20)


def test_scheduled_run_reports_the_day_its_interval_starts_in_shanghai() -> None:
    # interval [2026-11-20 02:00 CST, 2026-11-21 02:00 CST) == starts 2026-11-19 18:00 UTC
    assert report_day(TZ, data_interval_start=datetime(2026, 11, 19, 18, tzinfo=UTC)) == date(2026, 11, 20)


def test_manual_run_without_interval_reports_yesterday_local() -> None:
    # 2026-11-21 00:30 CST is still 2026-11-20 UTC: yesterday in Shanghai is the 20th
    assert report_day(TZ, run_after=datetime(2026, 11, 20, 16, 30, tzinfo=UTC)) == date(2026, 11, 20)
    assert report_day("UTC", run_after=datetime(2026, 11, 20, 16, 30, tzinfo=UTC)) == date(2026, 11, 19)


def test_bad_inputs() -> None:
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        report_day(TZ, day_param="20/11/2026")
    with pytest.raises(ConfigError, match="time zone"):
        report_day("Mars/Olympus", day_param="2026-11-20")
    with pytest.raises(ConfigError, match="naive"):
        report_day(TZ, data_interval_start=datetime(2026, 11, 20))
    with pytest.raises(ConfigError):
        report_day(TZ)


def test_day_bounds_are_local_midnights() -> None:
    start, end = day_bounds(date(2026, 11, 20), TZ)
    assert start.astimezone(UTC) == datetime(2026, 11, 19, 16, tzinfo=UTC)
    assert end - start == timedelta(days=1)
    # a DST day elsewhere is 23 hours long
    s, e = day_bounds(date(2026, 3, 8), "America/New_York")
    assert e.astimezone(UTC) - s.astimezone(UTC) == timedelta(hours=23)


def test_report_timezone_env_over_config_over_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "llmtally.toml"
    cfg.write_text('timezone = "Asia/Kolkata"\n', encoding="utf-8")
    monkeypatch.delenv("LLMTALLY_TIMEZONE", raising=False)
    monkeypatch.setenv("LLMTALLY_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError):
        report_timezone()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LLMTALLY_CONFIG")
    assert report_timezone() == "Asia/Kolkata"
    monkeypatch.setenv("LLMTALLY_TIMEZONE", "America/New_York")
    assert report_timezone() == "America/New_York"
    monkeypatch.setenv("LLMTALLY_TIMEZONE", "Mars/Olympus")
    with pytest.raises(ConfigError, match="unknown time zone"):
        report_timezone()
    monkeypatch.delenv("LLMTALLY_TIMEZONE")
    cfg.unlink()
    assert report_timezone() == "Asia/Shanghai"
