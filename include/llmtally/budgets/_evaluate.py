"""Evaluate budgets: the spend so far in each budget's current period, its share and a projection.

Spend is read through the store's query layer (:meth:`~llmtally.store.UsageStore.summed`, by day
and currency, over the rows the budget's ``match`` selects, in one snapshot): billed prompt +
completion tokens, or the cost converted into the budget's currency with the exchange-rate table,
each day at the rate in force on it (as the report does).  A cost without a rate is never counted
as 0: it is listed in :attr:`BudgetStatus.unconverted`, and requests without a price in
:attr:`BudgetStatus.unpriced_requests`.

The projection is linear: the spend so far divided by the time elapsed in the period, times the
period's length; the limit runs out when that rate reaches it (:attr:`BudgetStatus.runs_out_at`,
``None`` when nothing was spent, when the rate does not reach the limit within the period, or when
it is already spent).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from .._exceptions import ConfigError
from .._time import local_day, zone
from ..pricing import ExchangeRates
from ..store import UsageStore
from ._config import Budget
from ._period import Period, period_of

__all__ = ["BudgetStatus", "evaluate"]

_COLUMNS = ("prompt_tokens", "completion_tokens", "unpriced_requests", "cost")


def _number(value: Decimal | None, money: bool) -> float | int | None:
    if value is None:
        return None
    return float(round(value, 6)) if money else int(value.to_integral_value())


@dataclass(frozen=True)
class BudgetStatus:
    """Where one budget stands at ``through``: the spend of its period so far, in ``budget.unit``.

    ``projected`` is the spend at the period's end at the rate so far (``None``: nothing spent);
    ``runs_out_at`` the moment that rate reaches the limit (see the module docstring).
    """

    budget: Budget
    period: Period
    through: datetime
    timezone: str
    spend: Decimal
    projected: Decimal | None = None
    runs_out_at: datetime | None = None
    unconverted: Mapping[str, Decimal] = field(default_factory=dict)
    unpriced_requests: int = 0

    @property
    def share(self) -> float:
        """Spend as a share of the limit (1.0: all of it)."""
        return float(self.spend / self.budget.limit)

    @property
    def projected_share(self) -> float | None:
        """The projected spend as a share of the limit."""
        return None if self.projected is None else float(self.projected / self.budget.limit)

    @property
    def exhausted(self) -> bool:
        """Whether the limit is spent."""
        return self.spend >= self.budget.limit

    @property
    def crossed(self) -> tuple[float, ...]:
        """The thresholds the share has reached."""
        share = self.share
        return tuple(t for t in self.budget.thresholds if share >= t)

    @property
    def runs_out(self) -> date | None:
        """The local day the limit runs out at this rate (``None``: see :attr:`runs_out_at`)."""
        return None if self.runs_out_at is None else self.runs_out_at.astimezone(zone(self.timezone)).date()

    @property
    def complete(self) -> bool:
        """Whether every cost of the period counted (no currency without a rate)."""
        return not self.unconverted

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: numbers in ``unit`` (ints for tokens, money to 6 decimals), days ISO."""
        b, money = self.budget, self.budget.is_money
        pshare = self.projected_share
        return {
            "name": b.name,
            "match": {c: list(v) for c, v in b.match},
            "period": b.period,
            "period_start": self.period.first.isoformat(),
            "period_end": self.period.last.isoformat(),
            "through": self.through.isoformat(),
            "unit": b.unit,
            "limit": _number(b.limit, money),
            "spend": _number(self.spend, money),
            "share": round(self.share, 4),
            "projected": _number(self.projected, money),
            "projected_share": None if pshare is None else round(pshare, 4),
            "runs_out": None if self.runs_out is None else self.runs_out.isoformat(),
            "exhausted": self.exhausted,
            "thresholds": list(b.thresholds),
            "crossed": list(self.crossed),
            "complete": self.complete,
            "unconverted": {c: float(round(v, 6)) for c, v in sorted(self.unconverted.items())},
            "unpriced_requests": self.unpriced_requests,
        }


def _status(store: UsageStore, budget: Budget, now: datetime, tz: str, fx: ExchangeRates) -> BudgetStatus:
    period = period_of(budget.period, now, tz)
    last = min(period.last, local_day(now - timedelta(microseconds=1), tz))
    rows = store.summed(["day", "currency"], period.first, last, budget.where, columns=_COLUMNS)
    tokens = unpriced = 0
    by_day: dict[date, dict[str, Decimal]] = {}
    for (day, currency), (prompt, completion, no_price, cost) in rows:
        tokens += prompt + completion
        unpriced += no_price
        if currency and cost is not None:
            slot = by_day.setdefault(day, {})
            slot[currency] = slot.get(currency, Decimal(0)) + cost
    unconverted: Mapping[str, Decimal] = {}
    if budget.is_money:
        converted = fx.convert_days(by_day, to=budget.unit)
        spend, unconverted = converted.amount, converted.unconverted
    else:
        spend = Decimal(tokens)
    elapsed = period.elapsed(now)
    projected = runs_out_at = None
    if spend > 0 and elapsed > 0:
        projected = spend * Decimal(period.seconds) / Decimal(elapsed)
        if spend < budget.limit:
            at = elapsed * float(budget.limit / spend)
            if at < period.seconds:
                runs_out_at = period.start + timedelta(seconds=at)
    return BudgetStatus(budget, period, now, tz, spend, projected, runs_out_at, unconverted,
                        unpriced if budget.is_money else 0)  # fmt: skip


def evaluate(
    store: UsageStore,
    budgets: Iterable[Budget],
    *,
    now: datetime,
    tz: str,
    rates: ExchangeRates | None = None,
) -> list[BudgetStatus]:
    """Each budget's status at ``now`` (aware: the moment the loaded usage runs up to, e.g. an
    intraday run's cut, or the end of a reported day), its period cut in time zone ``tz``; currency
    limits convert with ``rates`` (default: no rates, so only costs in the budget's own currency
    count and the rest are listed as unconverted).  Reads in one snapshot of ``store``."""
    if now.tzinfo is None:
        raise ConfigError(f"budgets are evaluated at an aware datetime, not {now!r}")
    zone(tz)
    fx = rates if rates is not None else ExchangeRates()
    with store.snapshot():
        return [_status(store, b, now, tz, fx) for b in budgets]
