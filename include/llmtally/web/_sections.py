"""Every table of the usage page, built from one :class:`~llmtally.web._data.PageData`.

:func:`page_tables` returns them by id in page order; the CSV route serves any of them by that
id (:data:`TABLE_IDS` is the allow-list), so what downloads is exactly what the page shows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ._currency import ExchangeRates, day_cost
from ._data import PageData
from ._query import TOP_DIMENSIONS
from ._tables import Column, Table, change_pct, cost_columns, currencies, dates, share, usage_table

__all__ = ["TABLE_IDS", "TOP_SHOWN", "page_tables"]

TOP_SHOWN = 10
"""Rows of each ranked table the page shows (its CSV has every value)."""

TABLE_IDS = (
    "daily",
    "hourly",
    *TOP_DIMENSIONS,
    "failed",
    "drift",
    "estimates",
    "missing",
    "anomalies",
    "quality",
    "quarantine",
    "losses",
    "reports",
)
"""The tables of the page, in page order (the CSV route's allow-list)."""


def _daily(data: PageData, w: Mapping[str, str], rates: ExchangeRates) -> Table:
    q = data.query
    days = dates(q.start, q.end)
    names = currencies(data.days.values())
    cols = (
        Column("day", w["day"], "date"),
        Column("requests", w["requests"]),
        Column("prompt_tokens", w["prompt_tokens"]),
        Column("completion_tokens", w["completion_tokens"]),
        Column("total_tokens", w["total_tokens"]),
        *cost_columns(names, w["cost"]),
        Column(
            f"cost_in_{rates.report}",
            w["cost_in"].format(currency=rates.report),
            "money",
            rates.report,
        ),
        Column("unpriced_requests", w["unpriced_requests"]),
        Column("day_over_day_pct", w["dod"], "change"),
        Column("week_over_week_pct", w["wow"], "change"),
    )

    def tokens(d: Any) -> int:
        u = data.days.get(d)
        return u.total_tokens if u else 0

    rows = []
    for d in days:
        u = data.days.get(d)
        t = tokens(d)
        rows.append(
            (
                d,
                u.requests if u else 0,
                u.prompt_tokens if u else 0,
                u.completion_tokens if u else 0,
                t,
                *((u.cost.get(c) if u else None) for c in names),
                day_cost(rates, u.cost, d) if u and u.cost else None,
                u.unpriced_requests if u else 0,
                change_pct(t, tokens(d - timedelta(days=1))),
                change_pct(t, tokens(d - timedelta(days=7))),
            )
        )
    return Table("daily", w["daily"], cols, tuple(rows))


def _hourly(data: PageData, w: Mapping[str, str]) -> Table:
    z = ZoneInfo(data.timezone)
    cols = (
        Column("hour", w["hour"], "time"),
        Column("requests", w["requests"]),
        Column("total_tokens", w["total_tokens"]),
    )
    rows = tuple((h.astimezone(z).strftime("%Y-%m-%d %H:%M"), r, t) for h, r, t in data.hours)
    hidden = len(rows) > 48
    note = w["csv_only"] if hidden else ""
    return Table("hourly", w["hourly_table"], cols, rows, shown=0 if hidden else None, note=note)


def _top(data: PageData, dim: str, w: Mapping[str, str], total: int) -> Table:
    ranked = data.tops[dim]
    links = tuple(data.query.with_filter(dim, name).query_string() for name, _ in ranked)
    note = w["shown_of"].format(shown=TOP_SHOWN, n=len(ranked)) if len(ranked) > TOP_SHOWN else ""
    return usage_table(
        dim,
        w[f"top_{dim}"],
        [Column(dim, w[dim], "text")],
        [((name,), u) for name, u in ranked],
        w,
        total_tokens=total,
        links=links,
        shown=TOP_SHOWN,
        note=note,
    )


def _failed(data: PageData, w: Mapping[str, str]) -> Table:
    per: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for (service, status), n in data.outcomes.items():
        per[service][status] += n
    cols = (
        Column("service", w["service"], "text"),
        Column("requests", w["requests"]),
        Column("failed_requests", w["failed_requests"]),
        Column("failed_share", w["failed_share"], "share"),
        Column("error", w["errors"]),
        Column("timeout", w["timeouts"]),
        Column("abandoned", w["abandoned"]),
    )
    rows = []
    for service, counts in per.items():
        total = sum(counts.values())
        failed = counts["error"] + counts["timeout"]
        rows.append(
            (
                service,
                total,
                failed,
                share(failed, total),
                counts["error"],
                counts["timeout"],
                counts["abandoned"],
            )
        )
    rows.sort(key=lambda r: (-r[2], -r[1], r[0]))
    return Table("failed", w["failed_by_service"], cols, tuple(rows))


_RECON_SUMS = (
    "records",
    "recounted",
    "drift_records",
    "prompt_drift_tokens",
    "completion_drift_tokens",
    "estimated",
    "estimate_ape_sum",
    "estimate_pe_sum",
    "completion_missing",
    "uncertain",
    "not_recountable",
    "unknown_model",
    "recount_errors",
)


def _recon(data: PageData, w: Mapping[str, str]) -> list[Table]:
    pairs: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: dict.fromkeys(_RECON_SUMS, 0))
    for r in data.reconciliation:
        acc = pairs[(r.service, r.model)]
        for k in _RECON_SUMS:
            acc[k] += getattr(r, k)
    note = w["recon_all_traffic"] if set(data.query.where) - {"model", "service"} else ""
    sm = (Column("service", w["service"], "text"), Column("model", w["model"], "text"))
    drift = Table(
        "drift",
        w["drift_by"],
        (
            *sm,
            Column("records", w["records"]),
            Column("recounted", w["recounted"]),
            Column("drift_records", w["drift_records"]),
            Column("prompt_drift_tokens", w["prompt_drift"]),
            Column("completion_drift_tokens", w["completion_drift"]),
        ),
        tuple((s, m, *(int(a[k]) for k in _RECON_SUMS[:5])) for (s, m), a in sorted(pairs.items())),
        note=note,
    )
    per_service: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for (s, _), a in pairs.items():
        per_service[s][0] += a["estimated"]
        per_service[s][1] += a["estimate_ape_sum"]
        per_service[s][2] += a["estimate_pe_sum"]
    estimates = Table(
        "estimates",
        w["estimates_by"],
        (
            Column("service", w["service"], "text"),
            Column("estimated", w["estimated_records"]),
            Column("estimate_mape_pct", w["mape"], "pct"),
            Column("estimate_bias_pct", w["bias"], "pct"),
        ),
        tuple(
            (s, int(n), round(100 * ape / n, 2), round(100 * pe / n, 2))
            for s, (n, ape, pe) in sorted(per_service.items())
            if n
        ),
        note=note,
    )
    keys = _RECON_SUMS[8:]
    missing = Table(
        "missing",
        w["missing_by"],
        (
            *sm,
            Column("records", w["records"]),
            Column("completion_missing", w["completion_missing"]),
            Column("uncertain", w["uncertain"]),
            Column("not_recountable", w["not_recountable"]),
            Column("unknown_model", w["unknown_model"]),
            Column("recount_errors", w["recount_errors"]),
        ),
        tuple(
            (s, m, int(a["records"]), *(int(a[k]) for k in keys))
            for (s, m), a in sorted(pairs.items())
            if any(a[k] for k in keys)
        ),
        note=note,
    )
    return [drift, estimates, missing]


def _anomalies(data: PageData, w: Mapping[str, str], lang: str) -> Table:
    first, last = data.anomaly_days
    cols = (
        Column("day", w["day"], "date"),
        Column("kind", w["kind"], "text"),
        Column("when", w["when"], "text"),
        Column("subject", w["subject_col"], "text"),
        Column("value", w["value"], "float"),
        Column("expected", w["expected"], "float"),
        Column("score", w["score"], "float"),
        Column("why", w["why"], "text"),
    )
    rows = tuple(
        (
            d,
            w.get(a.kind, a.kind),
            a.when,
            a.subject,
            a.value,
            a.expected,
            a.score,
            a.why_zh if lang == "zh" else a.why,
        )
        for d, a in sorted(data.anomalies, key=lambda da: (da[0], da[1].score), reverse=True)
    )
    return Table(
        "anomalies",
        w["anomalies_table"],
        cols,
        rows,
        note=w["anomalies_window"].format(first=first, last=last),
    )


def _quality(data: PageData, w: Mapping[str, str]) -> list[Table]:
    keys = ("files", "records", "quarantined", "partial_lines", "duplicates", "lost_records", "folded_values")
    quality = Table(
        "quality",
        w["quality_by_day"],
        (Column("day", w["day"], "date"), *(Column(k, w[k]) for k in keys)),
        tuple((q.day, *(getattr(q, k) for k in keys)) for q in data.quality),
    )
    quarantine = Table(
        "quarantine",
        w["quarantine_reasons"],
        (Column("day", w["day"], "date"), Column("reason", w["reason"], "text"), Column("lines", w["lines"])),
        tuple(data.quarantine),
    )
    z = ZoneInfo(data.timezone)
    losses = Table(
        "losses",
        w["losses"],
        (
            Column("day", w["day"], "date"),
            Column("service", w["service"], "text"),
            Column("host", w["host"], "text"),
            Column("records", w["records"]),
            Column("first", w["first"], "time"),
            Column("last", w["last"], "time"),
            Column("reason", w["reason"], "text"),
        ),
        tuple(
            (
                e.day,
                e.service,
                e.host,
                e.records,
                e.first_ts.astimezone(z).strftime("%Y-%m-%d %H:%M:%S"),
                e.last_ts.astimezone(z).strftime("%Y-%m-%d %H:%M:%S"),
                e.reason,
            )
            for e in data.losses
        ),
    )
    return [quality, quarantine, losses]


def _reports(data: PageData, w: Mapping[str, str]) -> Table:
    rows = tuple(sorted(data.archived, reverse=True))
    return Table(
        "reports",
        w["reports_table"],
        (Column("day", w["day"], "date"), Column("lang", w["lang"], "text")),
        rows,
        links=tuple(f"reports/{d.isoformat()}/{lang}" for d, lang in rows),
    )


def page_tables(data: PageData, w: Mapping[str, str], lang: str, rates: ExchangeRates) -> dict[str, Table]:
    """Every table of the page by id, in :data:`TABLE_IDS` order (``rates``: the daily cost in the
    reporting currency)."""
    total = data.total.total_tokens
    tables = [
        _daily(data, w, rates),
        _hourly(data, w),
        *(_top(data, d, w, total) for d in TOP_DIMENSIONS),
        _failed(data, w),
        *_recon(data, w),
        _anomalies(data, w, lang),
        *_quality(data, w),
        _reports(data, w),
    ]
    out = {t.id: t for t in tables}
    assert tuple(out) == TABLE_IDS
    return out
