"""The anomalies of the page's last days: the email report's own detector, fed lean reads.

:func:`llmtally.report.detect_anomalies` reads a :class:`~llmtally.report.ReportData`; the email
report fills one per day with every column (:func:`~llmtally.report.fetch_report_data`).  The page
needs several days at once, so it reads the history of all of them in four lean sums (only the
columns the detector uses, no currency split) and hands each day the same window the email report
of that day reads (:func:`report_history`).  ``tests/web/test_page.py`` checks that both give the
same anomalies.  Today, still in progress, is judged only up to its last hour with data (or now):
no silence or hour spike for hours not yet seen.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from .._time import zone
from ..report import Anomaly, ReportData, Thresholds, detect_anomalies
from ..report._data import DailyUsage, OutcomeUsage, UserDay, hours_of
from ..store import UsageStore

__all__ = ["day_anomalies", "report_history"]

_TOKENS = ("requests", "prompt_tokens", "completion_tokens")


def report_history(th: Thresholds) -> tuple[int, int]:
    """``(history days, user days)`` the email report of a day reads (as ``make_report``)."""
    history = max(
        35,
        7 * th.baseline_weeks + 1,
        th.user_baseline_days + 1,
        th.prompt_baseline_days + 1,
        th.outcome_baseline_days + 1,
    )
    return history, th.user_baseline_days + 1


def _history(store: UsageStore, start: date, end: date, users_from: date, tz: str) -> ReportData:
    z = zone(tz)
    daily = tuple(
        DailyUsage(d, f, m, s, None, r, p, c, 0, 0, None, 0)
        for (d, f, m, s), (r, p, c) in sorted(
            store.summed(["day", "feature", "model", "service"], start, end, columns=_TOKENS)
        )
    )
    hours: dict[tuple[date, datetime, str, str], list[int]] = {}
    for (d, hour, s, m), (r, p, c) in store.summed(
        ["day", "hour", "service", "model"], start, end, columns=_TOKENS
    ):
        local = hour.astimezone(z).replace(tzinfo=None, fold=0)  # a DST repeated hour: one row
        slot = hours.setdefault((d, local, s, m), [0, 0])
        slot[0] += r
        slot[1] += p + c
    hourly, service_hours = hours_of(hours)
    users = tuple(
        UserDay(d, u, None, r, p + c, None)
        for (d, u), (r, p, c) in sorted(store.summed(["day", "user_id"], users_from, end, columns=_TOKENS))
    )
    keys = ["day", "service", "model", "status", "http_status"]
    outcomes = tuple(
        OutcomeUsage(d, s, m, st, int(http), r, p + c, u)
        for (d, s, m, st, http), (r, p, c, u) in sorted(
            store.summed(keys, start, end, columns=[*_TOKENS, "uncertain_requests"])
        )
    )
    return ReportData(
        day=end,
        timezone=tz,
        start=start,
        daily=daily,
        hourly=hourly,
        users=users,
        top_requests=(),
        digests=(),
        reconciliation=(),
        outcomes=outcomes,
        service_hours=service_hours,
    )


def _until(data: ReportData, day: date, now: datetime) -> datetime | None:
    """The end of the observed data of ``day``: ``None`` (the whole day) for a day that is over, else
    the end of its last hour with data, at most ``now``."""
    local_now = now.astimezone(zone(data.timezone)).replace(tzinfo=None)
    if day < local_now.date():
        return None
    end = max((h.hour + timedelta(hours=1) for h in data.service_hours if h.day == day), default=None)
    return local_now if end is None else min(local_now, end)


def day_anomalies(
    store: UsageStore, first: date, last: date, tz: str, th: Thresholds, *, now: datetime | None = None
) -> list[tuple[date, Anomaly]]:
    """``(day, anomaly)`` of each day ``first..last``, each against its own history (a day not over
    at ``now``, default the clock, only up to its last hour with data)."""
    now = now or datetime.now(UTC)
    history, user_days = report_history(th)
    data = _history(store, first - timedelta(days=history), last, first - timedelta(days=user_days), tz)
    out: list[tuple[date, Anomaly]] = []
    for i in range((last - first).days + 1):
        d = last - timedelta(days=i)
        lo, users_lo = d - timedelta(days=history), d - timedelta(days=user_days)
        day_data = replace(
            data,
            day=d,
            start=lo,
            daily=tuple(r for r in data.daily if lo <= r.day <= d),
            hourly=tuple(h for h in data.hourly if lo <= h.local_day <= d),
            service_hours=tuple(h for h in data.service_hours if lo <= h.day <= d),
            users=tuple(u for u in data.users if users_lo <= u.day <= d),
            outcomes=tuple(o for o in data.outcomes if lo <= o.day <= d),
            top_requests=tuple(store.top_requests(d)),
            digests=tuple(store.prompt_digests(d)),
        )
        out.extend((d, a) for a in detect_anomalies(day_data, th, _until(day_data, d, now)))
    return out
