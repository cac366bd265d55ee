"""Planted anomalies are found, each with its reason; steady traffic raises none."""

from __future__ import annotations

from typing import Any

import pytest

from llmtally import ConfigError
from llmtally.report import Thresholds, make_report
from tests.report import gen


def _anomalies(pg_dsn: str, schema: str, use_schema: Any) -> list[dict[str, Any]]:
    use_schema(schema)
    return list(make_report(pg_dsn, gen.DAY, lang="en", timezone=gen.TZ).summary["anomalies"])


def test_steady_weeks_raise_nothing(pg_dsn: str, steady_schema: str, use_schema: Any) -> None:
    assert _anomalies(pg_dsn, steady_schema, use_schema) == []


def test_planted_anomalies_are_found(pg_dsn: str, planted_schema: str, use_schema: Any) -> None:
    found = _anomalies(pg_dsn, planted_schema, use_schema)
    keys = {(a["kind"], a["subject"]) for a in found}
    planted = {
        ("hour_spike", "14:00"),
        ("large_request", "客服问答"),
        ("user_jump", "heavy-user"),
        ("prompt_burst", gen.BURST_DIGEST[:12]),
        ("prompt_growth", "翻译"),
    }
    # the heavy user's 400k tokens at 10:00 are an hour spike too; nothing else may fire
    assert keys == planted | {("hour_spike", "10:00")}
    for a in found:
        assert set(a) == {"kind", "when", "subject", "value", "expected", "score", "why", "why_zh"}
        assert a["why"] and a["why_zh"] and a["value"] > a["expected"]
    spike = next(a for a in found if a["subject"] == "14:00")
    assert spike["when"] == "2026-11-26T14:00" and "median" in spike["why"]
    growth = next(a for a in found if a["kind"] == "prompt_growth")
    assert 3.9 < growth["score"] < 4.1


def test_thresholds_are_configurable(
    pg_dsn: str, planted_schema: str, use_schema: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "llmtally.toml"
    cfg.write_text(
        '[report]\nlang = "en"\n[report.anomalies]\nburst_min_requests = 100\nprompt_growth_factor = 5\n'
    )
    use_schema(planted_schema)
    monkeypatch.setenv("LLMTALLY_CONFIG", str(cfg))
    kinds = {a["kind"] for a in make_report(pg_dsn, gen.DAY, timezone=gen.TZ).summary["anomalies"]}
    assert "prompt_burst" not in kinds and "prompt_growth" not in kinds and "user_jump" in kinds


def test_bad_thresholds_say_what_is_wrong() -> None:
    with pytest.raises(ConfigError, match="unknown"):
        Thresholds.from_mapping({"hour_zz": 3})
    with pytest.raises(ConfigError, match="non-negative"):
        Thresholds.from_mapping({"hour_z": "high"})
    with pytest.raises(ConfigError, match="weekday_mode"):
        Thresholds.from_mapping({"weekday_mode": "monday"})
    assert Thresholds.from_mapping({"hour_z": 4, "min_samples": 5.0}).min_samples == 5
