"""The intraday job's own pieces: which day and cut a run covers, and anomalies as alert findings."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from llmtally import ConfigError
from llmtally.alerts import Finding
from llmtally.jobs import intraday
from llmtally.report import Anomaly
from llmtally.store import MemoryStore

SH = ZoneInfo("Asia/Shanghai")


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("LLMTALLY_TIMEZONE", "Asia/Shanghai")
    monkeypatch.setenv("LLMTALLY_LOG_DIRS", "/nonexistent/logs")
    monkeypatch.setenv("LLMTALLY_STAGING_DIR", str(tmp_path))


@pytest.mark.parametrize(
    ("until", "day", "cut"),
    [
        (datetime(2026, 12, 2, 14, 0, tzinfo=SH), "2026-12-02", datetime(2026, 12, 2, 6, 0, tzinfo=UTC)),
        (datetime(2026, 12, 2, 14, 15, tzinfo=UTC), "2026-12-02", datetime(2026, 12, 2, 14, 15, tzinfo=UTC)),
        # the run at midnight completes the day before (its cut is that day's end)
        (datetime(2026, 12, 3, 0, 0, tzinfo=SH), "2026-12-02", datetime(2026, 12, 2, 16, 0, tzinfo=UTC)),
        (datetime(2026, 12, 3, 0, 15, tzinfo=SH), "2026-12-03", datetime(2026, 12, 2, 16, 15, tzinfo=UTC)),
    ],
)
def test_a_run_covers_the_local_day_its_cut_ends(until: datetime, day: str, cut: datetime) -> None:
    p = intraday.plan({}, run_id="scheduled__x", until=until)
    assert p["day"] == day and datetime.fromisoformat(p["until"]) == cut
    assert p["cache"].endswith(f"{day}/_intraday") and p["recipients"] == [] and p["alerts"] is True
    with pytest.raises(ValueError, match="aware"):
        intraday.plan({}, run_id="x", until=datetime(2026, 12, 2, 14, 0))


def test_anomalies_become_findings_in_both_languages_sent_once_per_day() -> None:
    spike = Anomaly(
        "hour_spike", "14:00", "chat-api", 90_000, 9_000, 12.5, "10.0x its usual hour", "为平时的 10.0 倍"
    )
    quiet = Anomaly(
        "silence", "10:00-14:00", "rag-worker", 0, 300, 5.0, "no requests since 10:00", "10:00 起无请求"
    )
    day = date(2026, 12, 2)
    findings = intraday.anomaly_findings([(day, spike), (day, quiet)], day.isoformat())
    assert all(isinstance(f, Finding) for f in findings)
    assert [f.severity for f in findings] == ["warning", "critical"]
    assert findings[0].text == {"zh": "为平时的 10.0 倍", "en": "10.0x its usual hour"}
    assert "chat-api" in findings[0].title["en"] and "chat-api" in findings[0].title["zh"]
    store = MemoryStore()
    at = datetime(2026, 12, 2, 6, tzinfo=UTC)
    claims = [
        store.claim(f.key, day, 1.0, at=at, spend=Decimal(0), unit="anomaly", share=1.0)
        for f in findings + intraday.anomaly_findings([(day, spike)], day.isoformat())
    ]
    assert claims == [True, True, False]  # the same spike found by the next run is not sent again


def test_alerts_settings_become_the_delivery_policy(tmp_path: Path) -> None:
    from llmtally._config import load_config

    path = tmp_path / "llmtally.toml"
    path.write_text('[alerts]\nquiet_hours = "22:00-08:00"\nmax_per_hour = 3\n', encoding="utf-8")
    policy = intraday.alert_policy(load_config(path), "Asia/Kolkata")
    assert (policy.quiet_hours, policy.max_per_hour, policy.timezone) == ("22:00-08:00", 3, "Asia/Kolkata")
    assert policy.is_quiet(datetime(2026, 12, 2, 17, 0, tzinfo=UTC))  # 22:30 in Kolkata
    assert not policy.is_quiet(datetime(2026, 12, 2, 6, 0, tzinfo=UTC))  # 11:30
    path.write_text('[alerts]\nquiet = "22:00-08:00"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[alerts\] quiet unknown"):
        intraday.alert_policy(load_config(path), "Asia/Kolkata")
