"""Turn the aggregates of :class:`ReportData` into the report's numbers (the JSON summary contract).

Pure functions over plain data: no database, no rendering.  Rounding rules (documented in
``docs/report-json.md``): percentages to 2 decimals, shares (0..1) to 4, money to 6.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, timedelta
from decimal import Decimal
from typing import Any

from ..pricing import ExchangeRates
from ..store._rows import OUTCOMES, SOURCES
from ._anomalies import Thresholds, detect_anomalies
from ._compare import detect_model_changes
from ._data import DailyUsage, OutcomeUsage, ReportData

__all__ = ["SCHEMA_VERSION", "change_pct", "cost_parts", "money", "summarize"]

SCHEMA_VERSION = 1
DIMENSIONS = ("feature", "model", "user", "service")


def change_pct(current: float, previous: float) -> float | None:
    """Change from ``previous`` to ``current`` in %, 2 decimals; ``None`` when ``previous`` is 0."""
    if not previous:
        return None
    return round((current - previous) * 100.0 / previous, 2)


def money(amounts: Mapping[Any, Decimal | None]) -> dict[str, float]:
    """``{currency: amount}`` rounded to 6 decimals, sorted by currency; unpriced amounts dropped."""
    out: dict[str, Decimal] = defaultdict(Decimal)
    for currency, amount in amounts.items():
        if currency and amount is not None:
            out[currency] += amount
    return {c: float(round(out[c], 6)) for c in sorted(out)}


def _add_cost(acc: dict[str, Decimal], currency: str | None, amount: Decimal | None) -> None:
    if currency and amount is not None:
        acc[currency] = acc.get(currency, Decimal(0)) + amount


def day_totals(rows: Iterable[DailyUsage]) -> dict[str, Any]:
    """Requests, tokens and cost per currency summed over ``rows``."""
    t = dict.fromkeys(
        ("requests", "prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens"), 0
    )
    unpriced = 0
    cost: dict[str, Decimal] = {}
    for r in rows:
        t["requests"] += r.requests
        t["prompt_tokens"] += r.prompt_tokens
        t["completion_tokens"] += r.completion_tokens
        t["cached_tokens"] += r.cached_tokens
        t["reasoning_tokens"] += r.reasoning_tokens
        unpriced += r.unpriced_requests
        _add_cost(cost, r.currency, r.cost)
    return {
        **t,
        "total_tokens": t["prompt_tokens"] + t["completion_tokens"],
        "cost": money(dict(cost)),
        "unpriced_requests": unpriced,
    }


def cost_parts(rows: Iterable[DailyUsage]) -> dict[str, Decimal]:
    """Exact cost per currency summed over ``rows`` (unpriced rows left out)."""
    cost: dict[str, Decimal] = {}
    for r in rows:
        _add_cost(cost, r.currency, r.cost)
    return cost


Convert = Callable[[Mapping[str, Decimal]], dict[str, Any]]


def _top(
    groups: Mapping[str, tuple[int, dict[str, Decimal]]], total: int, n: int, convert: Convert
) -> list[dict[str, Any]]:
    ranked = sorted(groups.items(), key=lambda kv: (-kv[1][0], kv[0]))[:n]
    return [
        {
            "name": name,
            "total_tokens": tokens,
            "cost": money(dict(cost)),
            "converted_cost": convert(cost),
            "share": round(tokens / total, 4) if total else 0.0,
        }
        for name, (tokens, cost) in ranked
    ]


def _cost_change(current: Mapping[str, Any], previous: Mapping[str, Any]) -> float | None:
    """Change of the converted cost in %; ``None`` when a side has unconverted parts or no base."""
    if not (current["complete"] and previous["complete"]):
        return None
    return change_pct(current["amount"] or 0.0, previous["amount"] or 0.0)


def _group(
    items: Iterable[tuple[str, int, str | None, Decimal | None]],
) -> dict[str, tuple[int, dict[str, Decimal]]]:
    acc: dict[str, list[Any]] = {}
    for name, tokens, currency, cost in items:
        slot = acc.setdefault(name, [0, {}])
        slot[0] += tokens
        _add_cost(slot[1], currency, cost)
    return {k: (v[0], v[1]) for k, v in acc.items()}


def _reconciliation(
    rows: Sequence[Mapping[str, Any]], earlier: Iterable[tuple[str, str, date, str]] = ()
) -> dict[str, Any]:
    keys = ("records", "recounted", "unknown_model", "not_recountable", "drift_records",
            "completion_missing", "uncertain", "not_billed")  # fmt: skip
    out: dict[str, Any] = dict.fromkeys(keys, 0)
    per_service: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    drift: list[dict[str, Any]] = []
    unknown: set[str] = set()
    sources = dict.fromkeys((f"{side}_{src}" for side in ("prompt", "completion") for src in SOURCES[:4]), 0)
    gaps: dict[tuple[str, str], list[int]] = {}
    for r in rows:
        for k in keys:
            out[k] += int(r.get(k) or 0)
        for name in sources:
            sources[name] += int(r.get(name) or 0)
        gap = gaps.setdefault((str(r.get("model", "")), str(r.get("service", ""))), [0, 0, 0])
        gap[0] += int(r.get("records") or 0)
        gap[1] += int(r.get("completion_missing") or 0)
        gap[2] += int(r.get("uncertain") or 0)
        est = int(r.get("estimated") or 0)
        if est:
            acc = per_service[str(r.get("service", ""))]
            acc[0] += est
            acc[1] += float(r.get("estimate_ape_sum") or 0.0)
            acc[2] += float(r.get("estimate_pe_sum") or 0.0)
        if int(r.get("unknown_model") or 0):
            unknown.add(str(r.get("model", "")))
        if int(r.get("drift_records") or 0):
            drift.append(
                {
                    "model": r.get("model", ""),
                    "service": r.get("service", ""),
                    "fingerprint": r.get("fingerprint", ""),
                    "records": int(r.get("records") or 0),
                    "drift_records": int(r.get("drift_records") or 0),
                    "prompt_drift_tokens": int(r.get("prompt_drift_tokens") or 0),
                    "completion_drift_tokens": int(r.get("completion_drift_tokens") or 0),
                }
            )
    out["estimate_error_pct"] = {s: round(100.0 * v[1] / v[0], 2) for s, v in sorted(per_service.items())}
    out["estimate_bias_pct"] = {s: round(100.0 * v[2] / v[0], 2) for s, v in sorted(per_service.items())}
    out["unknown_models"] = sorted(unknown)
    out["drift"] = drift
    out["tokenizer_changes"] = _tokenizer_changes(rows, earlier)
    out["sources"] = sources
    out["billing_gaps"] = [
        {"model": m, "service": svc, "records": n, "completion_missing": missing, "uncertain": uncertain}
        for (m, svc), (n, missing, uncertain) in sorted(
            gaps.items(), key=lambda kv: (-kv[1][1] - kv[1][2], kv[0])
        )
        if missing or uncertain
    ]
    return out


def _outcome_counts(rows: Iterable[OutcomeUsage]) -> dict[str, Any]:
    status = dict.fromkeys(OUTCOMES, 0)
    http: dict[int, int] = defaultdict(int)
    uncertain = 0
    for o in rows:
        status[o.status if o.status in status else "other"] += o.requests
        if o.http_status >= 400:
            http[o.http_status] += o.requests
        uncertain += o.uncertain_requests
    requests = sum(status.values())
    failed = status["error"] + status["timeout"]
    return {
        "requests": requests,
        "status": status,
        "failed_requests": failed,
        "failed_share": round(failed / requests, 4) if requests else 0.0,
        "uncertain_requests": uncertain,
        "http_errors": {str(code): http[code] for code in sorted(http)},
    }


def _outcomes(data: ReportData) -> dict[str, Any]:
    """How the day's calls ended: requests by outcome and HTTP error status, overall and per
    (service, model), most failed requests first."""
    today = [o for o in data.outcomes if o.day == data.day]
    groups: dict[tuple[str, str], list[OutcomeUsage]] = defaultdict(list)
    for o in today:
        groups[(o.service, o.model)].append(o)
    per = [{"service": svc, "model": m, **_outcome_counts(g)} for (svc, m), g in groups.items()]
    per.sort(key=lambda e: (-e["failed_requests"], -e["requests"], e["service"], e["model"]))
    return {**_outcome_counts(today), "by_service": per}


def _losses(data: ReportData) -> dict[str, Any]:
    """What the services' loggers lost on the day (their loss markers), most records first."""
    entries = sorted(data.losses, key=lambda e: (-e.records, e.service, e.host, e.first_ts))
    return {
        "lost_records": data.lost_records,
        "entries": [
            {"service": e.service, "host": e.host, "records": e.records,
             "from": e.first_ts.astimezone(UTC).isoformat(), "to": e.last_ts.astimezone(UTC).isoformat(),
             "reason": e.reason}
            for e in entries
        ],
    }  # fmt: skip


def _folds(data: ReportData) -> list[dict[str, Any]]:
    """Where users or tenants outgrew the cardinality limit and the tail was folded into (other)."""
    return [
        {"service": e.service, "dimension": e.dimension, "limit": e.limit, "distinct": e.distinct,
         "folded": e.folded, "requests": e.requests, "tokens": e.tokens}
        for e in sorted(data.folds, key=lambda e: (e.service, e.dimension))
    ]  # fmt: skip


def _tokenizer_changes(
    rows: Iterable[Mapping[str, Any]], earlier: Iterable[tuple[str, str, date, str]]
) -> list[dict[str, Any]]:
    """(model, service) pairs recounted today with a fingerprint their last earlier day did not use:
    the tokenizer files or chat template changed (an upgrade, or a silently swapped tokenizer)."""
    last: dict[tuple[str, str], tuple[date, set[str]]] = {}
    for model, service, day, fp in earlier:
        seen = last.get((model, service))
        if seen is None or day > seen[0]:
            last[(model, service)] = (day, {fp})
        elif day == seen[0]:
            seen[1].add(fp)
    changes = []
    for r in rows:
        key = (str(r.get("model", "")), str(r.get("service", "")))
        fp = str(r.get("fingerprint") or "")
        if not fp or not int(r.get("recounted") or 0) or key not in last or fp in last[key][1]:
            continue
        changes.append({"model": key[0], "service": key[1], "since": last[key][0].isoformat(),
                        "before": sorted(last[key][1]), "after": fp})  # fmt: skip
    return changes


def summarize(
    data: ReportData,
    *,
    top_n: int = 10,
    thresholds: Thresholds | None = None,
    fx: ExchangeRates | None = None,
) -> dict[str, Any]:
    """The report's summary for ``data.day``: the JSON contract of ``docs/report-json.md``.

    Costs are given per currency (``cost``) and converted into ``fx``'s reporting currency
    (``converted_cost``), each day at the rate in force on it; default: CNY without rates.
    """
    day = data.day
    rates = fx or ExchangeRates()
    by_day: dict[date, list[DailyUsage]] = defaultdict(list)
    for r in data.daily:
        by_day[r.day].append(r)
    tokens_on = {d: sum(r.total_tokens for r in rows) for d, rows in by_day.items()}
    cost_on = {d: cost_parts(rows) for d, rows in by_day.items()}

    def tok(d: date) -> int:
        return tokens_on.get(d, 0)

    def span(end: date, days: int) -> int:
        return sum(tok(end - timedelta(days=i)) for i in range(days))

    def converted(end: date, days: int = 1) -> dict[str, Any]:
        span_days = (end - timedelta(days=i) for i in range(days))
        return rates.convert_days({d: cost_on.get(d, {}) for d in span_days}).as_dict()

    def convert(cost: Mapping[str, Decimal]) -> dict[str, Any]:
        return rates.convert(cost, day).as_dict()

    today = day_totals(by_day.get(day, ()))
    total = today["total_tokens"]
    prev, week = tok(day - timedelta(days=1)), tok(day - timedelta(days=7))
    last7, prev7 = span(day, 7), span(day - timedelta(days=7), 7)
    rows = by_day.get(day, [])
    users = [u for u in data.users if u.day == day]
    top = {
        dim: _top(_group(items), total, top_n, convert)
        for dim, items in (
            ("feature", ((r.feature, r.total_tokens, r.currency, r.cost) for r in rows)),
            ("model", ((r.model, r.total_tokens, r.currency, r.cost) for r in rows)),
            ("user", ((u.user_id, u.total_tokens, u.currency, u.cost) for u in users)),
            ("service", ((r.service, r.total_tokens, r.currency, r.cost) for r in rows)),
        )
    }
    cost_today = converted(day)
    cost_prev, cost_week = converted(day - timedelta(days=1)), converted(day - timedelta(days=7))
    cost_last7, cost_prev7 = converted(day, 7), converted(day - timedelta(days=7), 7)
    hours: dict[int, list[int]] = {h: [0, 0, 0] for h in range(24)}
    for h in data.hourly:
        if h.local_day == day:
            hours[h.hour.hour][0] += h.requests
            hours[h.hour.hour][1] += h.total_tokens
        elif h.local_day == day - timedelta(days=7):
            hours[h.hour.hour][2] += h.total_tokens
    trend_start = day - timedelta(days=27)
    return {
        "schema_version": SCHEMA_VERSION,
        "day": day.isoformat(),
        "timezone": data.timezone,
        **today,
        "report_currency": rates.report,
        "converted_cost": cost_today,
        "previous_day": {
            "total_tokens": prev,
            "change_pct": change_pct(total, prev),
            "converted_cost": cost_prev,
            "cost_change_pct": _cost_change(cost_today, cost_prev),
        },
        "same_day_last_week": {
            "total_tokens": week,
            "change_pct": change_pct(total, week),
            "converted_cost": cost_week,
            "cost_change_pct": _cost_change(cost_today, cost_week),
        },
        "last_7_days": {
            "total_tokens": last7,
            "previous_total_tokens": prev7,
            "change_pct": change_pct(last7, prev7),
            "converted_cost": cost_last7,
            "previous_converted_cost": cost_prev7,
            "cost_change_pct": _cost_change(cost_last7, cost_prev7),
        },
        "top": top,
        "hourly": [
            {"hour": h, "requests": v[0], "total_tokens": v[1], "same_day_last_week_total_tokens": v[2]}
            for h, v in hours.items()
        ],
        "daily": [
            {
                "day": (trend_start + timedelta(days=i)).isoformat(),
                "total_tokens": tok(trend_start + timedelta(days=i)),
            }
            for i in range(28)
        ],
        "top_requests": [
            {
                "rank": t.rank,
                "ts": t.ts.isoformat(),
                "prompt_sha256": t.prompt_sha256,
                "model": t.model,
                "feature": t.feature,
                "user": t.user_id,
                "service": t.service,
                "prompt_tokens": t.prompt_tokens,
                "completion_tokens": t.completion_tokens,
                "total_tokens": t.total_tokens,
                "cost": money({t.currency: t.cost}),
                "tags": dict(sorted(t.tags.items())),
            }
            for t in sorted(data.top_requests, key=lambda t: (-t.total_tokens, t.rank))[:top_n]
        ],
        "reconciliation": _reconciliation(data.reconciliation, data.earlier_fingerprints),
        "outcomes": _outcomes(data),
        "losses": _losses(data),
        "folds": _folds(data),
        "model_changes": detect_model_changes(data.daily, day),
        "anomalies": [a.as_dict() for a in detect_anomalies(data, thresholds or Thresholds())],
    }
