"""Read what the usage page shows, through the store's query layer only (no SQL here).

Every read of one page runs inside one :meth:`~llmtally.store.UsageStore.snapshot`, so the numbers
agree with each other while the pipeline reloads a day.  Sums come from
:meth:`~llmtally.store.UsageStore.summed` (the few columns the page needs, summed by the store);
anomalies are the report's own (:mod:`~llmtally.web._anomaly`), each day over the same history the
email report of that day reads, so the page and the email never disagree on a day's anomalies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from .._time import day_bounds
from ..budgets import Budget, budget_rows, evaluate
from ..pricing import ExchangeRates
from ..report import Anomaly, Thresholds
from ..store import DayQuality, LossEntry, ReconciliationRow, SummedRow, UsageStore, Where
from ._anomaly import day_anomalies
from ._query import TOP_DIMENSIONS, PageQuery

__all__ = [
    "ANOMALY_DAYS",
    "USAGE_COLUMNS",
    "PageData",
    "Usage",
    "read_page",
    "read_usage",
    "usage_of",
]

USAGE_COLUMNS = ("requests", "prompt_tokens", "completion_tokens", "unpriced_requests", "cost")
"""The sums the page and the export read (``cost`` per currency)."""

ANOMALY_DAYS = 7
"""Anomalies are looked for on the last this many days of a range (each against its own history)."""

_COMBO = ("feature", "model", "service", "tenant", "status")
"""Summed together in one pass (their combinations are few); ``user_id`` has a pass of its own."""


@dataclass
class Usage:
    """Billed usage of a group: requests, tokens, cost per currency (``unpriced_requests``: no price)."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    unpriced_requests: int = 0
    cost: dict[str, Decimal] = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        """Billed prompt + completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: Usage) -> None:
        """Add ``other`` into this one."""
        for name in USAGE_COLUMNS[:-1]:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for currency, amount in other.cost.items():
            self.cost[currency] = self.cost.get(currency, Decimal(0)) + amount


def usage_of(rows: Iterable[SummedRow]) -> dict[tuple[Any, ...], Usage]:
    """Fold :meth:`~llmtally.store.UsageStore.summed` rows keyed ``(*keys, currency)`` with
    :data:`USAGE_COLUMNS` into one :class:`Usage` per ``keys``."""
    out: dict[tuple[Any, ...], Usage] = {}
    for key, sums in rows:
        *group, currency = key
        u = out.setdefault(tuple(group), Usage())
        u.requests += sums[0]
        u.prompt_tokens += sums[1]
        u.completion_tokens += sums[2]
        u.unpriced_requests += sums[3]
        if currency and sums[4] is not None:
            u.cost[currency] = u.cost.get(currency, Decimal(0)) + sums[4]
    for u in out.values():
        u.cost = dict(sorted(u.cost.items()))
    return out


def read_usage(
    store: UsageStore, keys: Sequence[str], start: date, end: date, where: Where | None = None
) -> dict[tuple[Any, ...], Usage]:
    """Usage of the days ``[start, end]`` matching ``where``, by ``keys``."""
    return usage_of(store.summed([*keys, "currency"], start, end, where, columns=USAGE_COLUMNS))


def ranked(usage: dict[tuple[Any, ...], Usage]) -> list[tuple[str, Usage]]:
    """One-key usage, most billed tokens first (ties by name)."""
    return sorted(((k[0], u) for k, u in usage.items()), key=lambda kv: (-kv[1].total_tokens, kv[0]))


def project(usage: dict[tuple[Any, ...], Usage], keep: Sequence[int]) -> dict[tuple[Any, ...], Usage]:
    """``usage`` summed down to the key positions ``keep``."""
    out: dict[tuple[Any, ...], Usage] = {}
    for key, u in usage.items():
        out.setdefault(tuple(key[i] for i in keep), Usage()).add(u)
    for u in out.values():
        u.cost = dict(sorted(u.cost.items()))
    return out


@dataclass(frozen=True)
class PageData:
    """Everything one page shows, read in one snapshot.

    ``days`` covers the range and the 7 days before it (day-over-day and week-over-week changes);
    ``hours`` are ``(local hour start, requests, billed tokens)``; ``tops`` every value of each
    ranked dimension; ``outcomes`` requests by ``(service, status)``; ``anomalies`` ``(day,
    anomaly)`` of the range's last :data:`ANOMALY_DAYS` days (all traffic, whatever the filters).
    """

    query: PageQuery
    timezone: str
    days: dict[date, Usage]
    hours: list[tuple[datetime, int, int]]
    tops: dict[str, list[tuple[str, Usage]]]
    outcomes: dict[tuple[str, str], int]
    reconciliation: list[ReconciliationRow]
    anomalies: list[tuple[date, Anomaly]]
    quality: list[DayQuality]
    quarantine: list[tuple[date, str, int]]
    losses: list[LossEntry]
    archived: list[tuple[date, str]]
    budgets: tuple[Mapping[str, Any], ...] = ()
    """Each configured budget as it stands at the end of the range (or now, in the range's last day):
    :func:`~llmtally.budgets.budget_rows` in the page's language, for all traffic."""

    @property
    def total(self) -> Usage:
        """Usage of the whole range."""
        out = Usage()
        for d, u in self.days.items():
            if self.query.start <= d <= self.query.end:
                out.add(u)
        out.cost = dict(sorted(out.cost.items()))
        return out

    @property
    def anomaly_days(self) -> tuple[date, date]:
        """The first and last day anomalies were looked for."""
        q = self.query
        return max(q.start, q.end - timedelta(days=ANOMALY_DAYS - 1)), q.end


def _reconciliation(rows: list[ReconciliationRow], where: dict[str, str]) -> list[ReconciliationRow]:
    return [
        r
        for r in rows
        if where.get("model", r.model) == r.model and where.get("service", r.service) == r.service
    ]


def read_page(
    store: UsageStore,
    query: PageQuery,
    timezone: str,
    thresholds: Thresholds,
    *,
    budgets: Sequence[Budget] = (),
    rates: ExchangeRates | None = None,
    now: datetime | None = None,
) -> PageData:
    """Read the page for ``query`` from ``store`` (one snapshot); ``budgets`` are evaluated at
    ``now`` (default: the end of the range's last day, or the current time when that is earlier),
    their currencies converted with ``rates``."""
    q, where = query, query.where
    at = now or min(datetime.now(UTC), day_bounds(q.end, timezone)[1])
    with store.snapshot():
        statuses = evaluate(store, budgets, now=at, tz=timezone, rates=rates) if budgets else []
        days = {
            k[0]: u for k, u in read_usage(store, ["day"], q.start - timedelta(days=7), q.end, where).items()
        }
        hour_rows = store.summed(["hour"], q.start, q.end, where, columns=USAGE_COLUMNS[:3])
        combos = read_usage(store, _COMBO, q.start, q.end, where)
        tops = {d: ranked(project(combos, [_COMBO.index(d)])) for d in TOP_DIMENSIONS if d in _COMBO}
        tops["user_id"] = ranked(read_usage(store, ["user_id"], q.start, q.end, where))
        outcomes = project(combos, [_COMBO.index("service"), _COMBO.index("status")])
        first, last = max(q.start, q.end - timedelta(days=ANOMALY_DAYS - 1)), q.end
        return PageData(
            query=q,
            timezone=timezone,
            days=dict(sorted(days.items())),
            hours=sorted((k[0], s[0], s[1] + s[2]) for k, s in hour_rows),
            tops={d: tops[d] for d in TOP_DIMENSIONS},
            outcomes={(k[0], k[1]): u.requests for k, u in outcomes.items()},
            reconciliation=_reconciliation(store.reconciliation_between(q.start, q.end), where),
            anomalies=day_anomalies(store, first, last, timezone, thresholds),
            quality=store.quality_between(q.start, q.end),
            quarantine=store.quarantine_reasons(q.start, q.end),
            losses=store.losses_between(q.start, q.end),
            archived=store.archived_days(q.start, q.end),
            budgets=tuple(budget_rows(statuses, store, q.lang)),
        )
