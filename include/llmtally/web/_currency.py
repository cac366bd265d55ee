"""The page's one reporting currency: the single place the page asks the pricing layer to convert.

Prices stay in their own currency and the store sums cost per currency; :mod:`llmtally.pricing`
converts (``[currency]`` in llmtally.toml: the reporting currency and a dated rate table).  Each day
converts at the rates in force on it, as the email report does, so a range's total is the sum of
its days' converted costs; parts without a rate stay in their own currency, never counted as 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from ..pricing import ExchangeRates, load_exchange_rates

__all__ = ["ExchangeRates", "day_cost", "exchange_rates", "reporting_total"]


def exchange_rates() -> ExchangeRates:
    """The reporting currency and the rate table of the configuration (read per request)."""
    return load_exchange_rates()


def reporting_total(rates: ExchangeRates, by_day: Mapping[date, Mapping[str, Decimal]]) -> dict[str, Any]:
    """The cost of the days ``by_day`` (``{day: {currency: amount}}``) in the reporting currency,
    each day at its own rates: :meth:`~llmtally.pricing.Converted.as_dict` (amount, parts,
    unconverted parts, the rates used), the form the report's ``Formatter.converted`` reads."""
    return rates.convert_days(by_day).as_dict()


def day_cost(rates: ExchangeRates, cost: Mapping[str, Decimal], on: date) -> Decimal | None:
    """One day's cost in the reporting currency (exact); ``None`` when no part converted."""
    converted = rates.convert(cost, on)
    return converted.amount if converted.priced else None
