"""The steps of ``llm_usage_hourly``: the current local day so far, loaded as a provisional day.

Each run cuts the day at its own logical time (``until``): records logged before the cut are
collected, parsed, recounted, reconciled and loaded like the daily run's, and the day is marked
provisional (``quality.provisional``, ``quality.through``).  The run is idempotent and incremental:

- every run reads the day's files up to its cut and keeps each record id once, so a file that grew
  between two runs adds only its new records, and re-running a run gives the same day;
- the recount (the costly step) reuses what earlier runs of the day recounted
  (:class:`~llmtally.jobs._staging.RecountCache`), so each run recounts only new records;
- the daily run replaces the day with the final one; a provisional load never replaces a final day
  (:class:`~llmtally.FinalDayError`: the run skips its load) nor a later cut (a re-run of an older
  run skips its load), under the same per-day database lock as every load.

The run at local midnight cuts at the day's end: the day before, complete, still provisional until
the daily run.  The tasks other than :func:`plan` and :func:`alert` are the daily run's own
(:mod:`llmtally.jobs.daily`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from .._config import load_config
from .._exceptions import ConfigError, DeliveryError
from .._time import day_bounds, local_day, report_timezone
from . import daily
from ._staging import RecountCache

__all__ = ["VAR_ALERT_CHANNELS", "alert", "anomaly_findings", "plan", "plan_from_context"]

log = logging.getLogger("llmtally.jobs")


def plan(
    params: Mapping[str, Any],
    *,
    run_id: str,
    until: datetime,
    variable: Callable[[str], str | None] = lambda _key: None,
) -> daily.Plan:
    """Fix what this intraday run does: the day that ``until`` (aware, the cut) ends in, cut there."""
    if until.tzinfo is None:
        raise ValueError("until must be an aware datetime")
    tz = report_timezone()
    day = local_day(until - timedelta(microseconds=1), tz)  # a cut at midnight ends the day before
    cut = min(until.astimezone(UTC), day_bounds(day, tz)[1].astimezone(UTC))
    p = daily.plan(
        {"sources": params.get("sources"), "lang": params.get("lang"), "dry_run": params.get("dry_run"),
         "day": day.isoformat()},
        run_id=run_id,
        variable=variable,
    )  # fmt: skip
    p.update(
        until=cut.isoformat(),
        cache=str(RecountCache.for_day(p["day"])),
        recipients=[],
        alerts=bool(params.get("alerts", True)),
    )
    log.info("intraday run %s: %s so far, records before %s (provisional)", run_id, p["day"], p["until"])
    return p


def plan_from_context(context: Mapping[str, Any]) -> daily.Plan:
    """:func:`plan` from an Airflow task context: the cut is the run's logical date (a manual run:
    when it was triggered)."""
    dag_run = context["dag_run"]
    until = context.get("logical_date") or getattr(dag_run, "run_after", None) or datetime.now(UTC)
    return plan(
        context["params"], run_id=str(context["run_id"]), until=until, variable=daily.airflow_variable
    )


VAR_ALERT_CHANNELS = "llm_usage_alert_channels"
"""The Airflow Variable naming the connections anomalies are sent to (budgets name their own)."""
ANOMALY_SEVERITY = {"silence": "critical", "model_silence": "warning", "failed_calls": "critical"}
"""Severity of an anomaly kind in an alert (the rest: ``warning``)."""


def anomaly_findings(pairs: Any, day: str) -> list[Any]:
    """:class:`~llmtally.alerts.Finding` of each ``(day, anomaly)``, its words the report's own."""
    from ..alerts import Finding
    from ..report._i18n import messages

    zh, en = messages("zh"), messages("en")
    out = []
    for d, a in pairs:
        data = {"day": day, "kind": a.kind, "when": a.when, "subject": a.subject, "value": float(a.value),
                "expected": float(a.expected), "score": float(a.score)}  # fmt: skip
        title = {"zh": f"{zh.get(a.kind, a.kind)}：{a.subject}（{a.when}）",
                 "en": f"{en.get(a.kind, a.kind)}: {a.subject} ({a.when})"}  # fmt: skip
        key = f"anomaly:{d.isoformat()}:{a.kind}:{a.when}:{a.subject}"
        severity = ANOMALY_SEVERITY.get(a.kind, "warning")
        out.append(Finding(a.kind, key, severity, title, {"zh": a.why_zh, "en": a.why}, data))  # type: ignore[arg-type]
    return out


def _channel(conn_id: str) -> Any:
    from ..alerts.airflow import channel_from_airflow

    return channel_from_airflow(conn_id)


def alert_policy(cfg: Any, tz: str) -> Any:
    """The delivery policy of ``[alerts]`` in llmtally.toml (``quiet_hours = "22:00-08:00"``,
    ``max_per_hour``, ``attempts``, ``backoff_s``), in the report time zone."""
    from ..alerts import DeliveryPolicy

    table = dict(cfg.section("alerts"))
    known = {"quiet_hours", "max_per_hour", "attempts", "backoff_s", "max_backoff_s"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"[alerts] {', '.join(unknown)} unknown; known: {', '.join(sorted(known))}")
    return DeliveryPolicy(timezone=tz, **table)


def alert(p: daily.Plan, loaded: Mapping[str, Any]) -> dict[str, Any]:
    """Budgets and anomalies of the day so far, each sent once (a budget threshold once per period,
    an anomaly once per day), grouped into one message per channel.  Budgets go to their own
    channels, anomalies to the connections named by the Variable ``llm_usage_alert_channels``.

    The channels are built first, and only findings with a channel to go to are claimed (in the
    store, before sending, so re-runs and overlapping runs send nothing twice); in quiet hours
    (``[alerts] quiet_hours``) only critical findings are claimed and sent, the rest wait for the
    first run after them.  A channel that fails or is over its rate limit does not stop the others;
    the task fails afterwards, naming it, so it shows in the UI (its findings were claimed: they
    are not sent again)."""
    if p.get("dry_run") or not p.get("alerts", True) or not loaded.get("loaded"):
        log.info("alert: nothing evaluated (dry run, alerts off, or no provisional load)")
        return {"findings": 0, "channels": {}}
    from ..alerts import RunInfo, deliver, split_conn_ids
    from ..budgets import budget_findings, evaluate, load_budgets, severity_of
    from ..pricing import load_exchange_rates
    from ..report import Thresholds
    from ..store import open_store
    from ..web._anomaly import day_anomalies

    cfg = load_config()
    until = datetime.fromisoformat(p["until"])
    now = datetime.now(UTC)
    day = date.fromisoformat(p["day"])
    lang = p.get("lang") or str(cfg.section("report").get("lang") or "zh")
    policy = alert_policy(cfg, p["tz"])
    quiet = policy.is_quiet(now)
    budgets = load_budgets(cfg)
    anomaly_ids = split_conn_ids(daily.airflow_variable(VAR_ALERT_CHANNELS))
    channels: dict[str, Any] = {}
    results: dict[str, str] = {}
    for conn_id in dict.fromkeys([*anomaly_ids, *(c for b in budgets for c in b.channels)]):
        try:
            channels[conn_id] = _channel(conn_id)
        except Exception as exc:  # a missing or bad connection fails that channel only
            log.warning("alert: channel %s cannot be used: %s", conn_id, exc)
            results[conn_id] = "failed"
    by_channel: dict[str, list[Any]] = {}
    with open_store(daily.usage_dsn()) as store:
        statuses = evaluate(store, budgets, now=until, tz=p["tz"], rates=load_exchange_rates(cfg))
        statuses = [
            st for st in statuses
            if any(c in channels for c in st.budget.channels)
            and not (quiet and st.crossed and severity_of(max(st.crossed)) != "critical")
        ]  # fmt: skip
        for budget, findings in budget_findings(statuses, store, now=until).items():
            for conn_id in budget.channels:
                if conn_id in channels:
                    by_channel.setdefault(conn_id, []).extend(findings)
        thresholds = Thresholds.from_mapping(cfg.section("report").get("anomalies", {}))
        found = day_anomalies(store, day, day, p["tz"], thresholds, now=until)
        wanted = [
            f for f in anomaly_findings(found, p["day"]) if not quiet or f.severity == "critical"
        ] if any(c in channels for c in anomaly_ids) else []  # fmt: skip
        fresh = [f for f in wanted if store.claim(f.key, day, 1.0, at=now, spend=Decimal(0), unit="anomaly",
                                                  share=1.0)]  # fmt: skip
        for conn_id in anomaly_ids:
            if conn_id in channels:
                by_channel.setdefault(conn_id, []).extend(fresh)
        run = RunInfo(day, dag_id="llm_usage_hourly", run_id=p["run_id"], provisional=True)
        for conn_id, findings in by_channel.items():
            if findings:
                (result,) = deliver(
                    findings, [channels[conn_id]], run=run, state=store, now=now, lang=lang, policy=policy
                )
                results[conn_id] = str(result.status)
    failed = sorted(c for c, status in results.items() if status in ("failed", "rate_limited"))
    log.info(
        "alert: %d budgets evaluated, %d anomalies (%d new)%s; deliveries: %s",
        len(statuses), len(found), len(fresh), " (quiet hours: critical only)" if quiet else "",
        results or "none",
    )  # fmt: skip
    if failed:
        raise DeliveryError(
            f"alert channels not delivered: {', '.join(failed)} (failed or over their rate limit; the "
            "others were delivered, see the warnings above). The findings were claimed: a re-run "
            "does not send them again."
        )
    return {"findings": sum(len(v) for v in by_channel.values()), "channels": results}
