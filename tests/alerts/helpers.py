"""Findings in both languages and the run they came from, for the alert tests."""

from __future__ import annotations

from datetime import UTC, date, datetime

from llmtally.alerts import AlertBatch, Finding, RunInfo

DAY = date(2026, 12, 2)
NOW = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)  # 14:00 in Asia/Shanghai
RUN = RunInfo(DAY, dag_id="llm_usage_hourly", run_id="scheduled__2026-12-02T06:00:00+00:00", provisional=True)


def finding(n: int = 0, severity: str = "warning", kind: str = "hour_spike") -> Finding:
    """A finding with words in both languages and a little data."""
    return Finding(
        kind=kind,
        key=f"{kind}:{n}",
        severity=severity,  # type: ignore[arg-type]
        title={"en": f"Hour spike {n}", "zh": f"小时突增 {n}"},
        text={"en": f"14:00 used {n + 3}x its usual tokens", "zh": f"14:00 的用量是平时的 {n + 3} 倍"},
        data={"hour": "14:00", "tokens": 120_000 + n, "ratio": 3.5},
    )


def budget(severity: str = "critical") -> Finding:
    return Finding(
        kind="budget",
        key="budget:feature=chat:2026-12",
        severity=severity,  # type: ignore[arg-type]
        title={"en": "Budget passed", "zh": "超出预算"},
        text={
            "en": "feature chat used 104% of its December budget",
            "zh": "功能 chat 已用完 12 月预算的 104%",
        },
        data={"feature": "chat", "used": 1_040_000, "budget": 1_000_000},
        url="https://airflow.example.com/llmtally/",
    )


def batch(findings: list[Finding] | None = None, lang: str = "en", provisional: bool = True) -> AlertBatch:
    run = RUN if provisional else RunInfo(DAY, dag_id="llm_usage_daily", run_id="scheduled__x")
    return AlertBatch(findings if findings is not None else [budget(), finding(1)], run, NOW, lang=lang)
