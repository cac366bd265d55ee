"""Exchange rates: per-currency costs converted into one reporting currency, day by day.

Prices stay in their own currency (``prices.toml``); ``[currency]`` in llmtally.toml names the
reporting currency and a dated rate table::

    [currency]
    report = "CNY"                  # env LLMTALLY_REPORT_CURRENCY wins; default CNY

    [[currency.rates]]
    from = "USD"
    to = "CNY"
    rate = "7.1"                    # 1 USD = 7.1 CNY; a decimal string keeps it exact
    date = 2026-11-01               # in force from this day until the next dated rate

The rate in force on a day is the latest one dated on or before it (a ``to → from`` rate is used
inverted when no ``from → to`` rate is newer).  A part with no rate in force is never counted as 0:
it stays in :attr:`Converted.unconverted`, and ``strict=True`` raises :class:`ConfigError` instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from .._config import ENV_REPORT_CURRENCY, Config, load_config
from .._exceptions import ConfigError

__all__ = [
    "DEFAULT_REPORT_CURRENCY",
    "Converted",
    "ExchangeRate",
    "ExchangeRates",
    "format_money",
    "load_exchange_rates",
]

DEFAULT_REPORT_CURRENCY = "CNY"
"""The reporting currency when neither ``LLMTALLY_REPORT_CURRENCY`` nor ``[currency] report`` is set."""

_CODE = re.compile(r"^[A-Z]{3}$")
_RATE_KEYS = frozenset({"from", "to", "rate", "date"})
_SYMBOLS = {"CNY": "¥", "USD": "$", "EUR": "€", "GBP": "£", "JPY": "JP¥", "HKD": "HK$"}


def format_money(amount: Decimal | float, currency: str) -> str:
    """``¥1,234.57``, ``$0.0042`` (4 digits below 0.01), ``12.00 SGD`` without a known symbol."""
    value = float(amount)
    digits = 4 if 0 < abs(value) < 0.01 else 2
    sym = _SYMBOLS.get(currency)
    return f"{sym}{value:,.{digits}f}" if sym else f"{value:,.{digits}f} {currency}"


@dataclass(frozen=True, order=True)
class ExchangeRate:
    """``1 base = rate quote``, in force from ``day`` until the pair's next dated rate."""

    day: date
    base: str
    quote: str
    rate: Decimal

    def as_dict(self) -> dict[str, Any]:
        """``{"from", "to", "rate", "date"}``, the shape of the config entry (rate as a JSON number)."""
        return {"from": self.base, "to": self.quote, "rate": float(self.rate), "date": self.day.isoformat()}


def _money(amounts: Mapping[str, Decimal]) -> dict[str, float]:
    return {c: float(round(amounts[c], 6)) for c in sorted(amounts)}


@dataclass(frozen=True)
class Converted:
    """Costs in one reporting currency, with the per-currency parts they came from.

    ``amount`` is the sum of every converted part; parts without a rate in force are left out of it
    and listed in ``unconverted`` (original currency): never counted as 0.
    """

    currency: str
    amount: Decimal = Decimal(0)
    parts: Mapping[str, Decimal] = field(default_factory=dict)
    unconverted: Mapping[str, Decimal] = field(default_factory=dict)
    rates: tuple[ExchangeRate, ...] = ()

    @property
    def complete(self) -> bool:
        """True when every part was converted."""
        return not self.unconverted

    @property
    def priced(self) -> bool:
        """True when at least one part was converted (``amount`` means something)."""
        return len(self.unconverted) < len(self.parts)

    def __add__(self, other: Converted) -> Converted:
        """Sum of two conversions into the same currency (e.g. two days, each at its own rate)."""
        if other.currency != self.currency:
            raise ConfigError(f"cannot add {other.currency} to {self.currency} amounts")
        return Converted(
            self.currency,
            self.amount + other.amount,
            _sum(self.parts, other.parts),
            _sum(self.unconverted, other.unconverted),
            tuple(sorted(set(self.rates) | set(other.rates))),
        )

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (``docs/report-json.md``): amount ``None`` when no part was converted."""
        return {
            "currency": self.currency,
            "amount": float(round(self.amount, 6)) if self.priced else None,
            "complete": self.complete,
            "parts": _money(self.parts),
            "unconverted": _money(self.unconverted),
            "rates": [r.as_dict() for r in self.rates],
        }


def _sum(a: Mapping[str, Decimal], b: Mapping[str, Decimal]) -> dict[str, Decimal]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, Decimal(0)) + v
    return out


@dataclass(frozen=True)
class ExchangeRates:
    """The reporting currency and the dated rate table (see the module docstring)."""

    report: str = DEFAULT_REPORT_CURRENCY
    rates: tuple[ExchangeRate, ...] = ()
    source: str = "llmtally.toml"

    def __post_init__(self) -> None:
        if not _CODE.match(self.report):
            raise ConfigError(
                f"{self.source}: reporting currency {self.report!r} must be an ISO code such as CNY"
            )

    def rate(self, base: str, quote: str, on: date, *, strict: bool = False) -> Decimal | None:
        """Units of ``quote`` per unit of ``base`` in force on ``on`` (1 for the same currency).

        ``None`` when no rate is dated on or before ``on`` (``strict``: :class:`ConfigError`).
        """
        if base == quote:
            return Decimal(1)
        found = self.rate_entry(base, quote, on, strict=strict)
        if found is None:
            return None
        return found.rate if found.base == base else Decimal(1) / found.rate

    def rate_entry(self, base: str, quote: str, on: date, *, strict: bool = False) -> ExchangeRate | None:
        """The table entry in force on ``on`` for ``base → quote`` (possibly the inverse pair)."""
        best: ExchangeRate | None = None
        for r in self.rates:
            if r.day > on or {r.base, r.quote} != {base, quote}:
                continue
            # the latest date wins; on the same date the direct pair wins over the inverse
            if best is None or (r.day, r.base == base) > (best.day, best.base == base):
                best = r
        if best is None and strict:
            raise ConfigError(self._missing(base, quote, on))
        return best

    def _missing(self, base: str, quote: str, on: date) -> str:
        return (
            f"no {base}→{quote} exchange rate in force on {on.isoformat()}: add one dated on or before "
            f'it to {self.source}, e.g. [[currency.rates]] from = "{base}", to = "{quote}", '
            f'rate = "…", date = {on.isoformat()}'
        )

    def missing_hint(self, base: str, on: date) -> str:
        """What to add to the config so that ``base`` converts on ``on`` (for reports and pages)."""
        return self._missing(base, self.report, on)

    def convert(
        self, amounts: Mapping[str, Decimal | float], on: date, *, to: str | None = None, strict: bool = False
    ) -> Converted:
        """``{currency: amount}`` of day ``on`` in ``to`` (default: the reporting currency).

        Each part converts at the rate in force on ``on``; a part without one stays unconverted
        (``strict``: :class:`ConfigError`).  ``None``/empty currencies are not money and are skipped.
        """
        target = to or self.report
        parts: dict[str, Decimal] = {}
        for currency, value in amounts.items():
            if currency and value is not None:
                parts[currency] = parts.get(currency, Decimal(0)) + Decimal(str(value))
        total = Decimal(0)
        missing: dict[str, Decimal] = {}
        used: set[ExchangeRate] = set()
        for currency, value in parts.items():
            if currency == target:
                total += value
                continue
            entry = self.rate_entry(currency, target, on, strict=strict)
            if entry is None:
                missing[currency] = value
                continue
            used.add(entry)
            total += value * entry.rate if entry.base == currency else value / entry.rate
        return Converted(target, total, parts, missing, tuple(sorted(used)))

    def convert_days(
        self,
        by_day: Mapping[date, Mapping[str, Decimal | float]],
        *,
        to: str | None = None,
        strict: bool = False,
    ) -> Converted:
        """The sum over days of ``{currency: amount}``, each day at the rates in force on it."""
        total = Converted(to or self.report)
        for day in sorted(by_day):
            total = total + self.convert(by_day[day], day, to=to, strict=strict)
        return total


def _code(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _CODE.match(value.strip().upper()):
        raise ConfigError(f"{where}: {value!r} is not a currency code such as CNY or USD")
    return value.strip().upper()


def _rate(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"{where}: rate must be a number or a decimal string such as '7.1'")
    try:
        result = Decimal(str(value))
    except InvalidOperation as exc:
        raise ConfigError(f"{where}: rate {value!r} is not a decimal number") from exc
    if not result.is_finite() or result <= 0:
        raise ConfigError(f"{where}: rate {value!r} must be a finite number > 0")
    return result


def _day(value: Any, where: str) -> date:
    if isinstance(value, date) and not hasattr(value, "hour"):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ConfigError(f"{where}: date must be a day such as 2026-11-01 (the first day the rate applies)")


def parse_rates(entries: Iterable[Any], source: str) -> tuple[ExchangeRate, ...]:
    """Validate ``[[currency.rates]]`` entries; a pair dated twice with different rates is an error."""
    seen: dict[tuple[str, str, date], ExchangeRate] = {}
    for i, entry in enumerate(entries):
        where = f"{source}: currency.rates[{i}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where} must be a table with from, to, rate and date")
        unknown = set(entry) - _RATE_KEYS
        missing = _RATE_KEYS - set(entry)
        if unknown or missing:
            raise ConfigError(
                f"{where}: needs exactly from, to, rate and date"
                + (f" (unknown: {sorted(unknown)})" if unknown else "")
                + (f" (missing: {sorted(missing)})" if missing else "")
            )
        base, quote = _code(entry["from"], f"{where}.from"), _code(entry["to"], f"{where}.to")
        if base == quote:
            raise ConfigError(f"{where}: from and to are both {base}")
        rate = ExchangeRate(_day(entry["date"], f"{where}.date"), base, quote, _rate(entry["rate"], where))
        key = (base, quote, rate.day)
        if key in seen and seen[key].rate != rate.rate:
            raise ConfigError(f"{where}: {base}→{quote} on {rate.day} is given twice with different rates")
        seen[key] = rate
    return tuple(sorted(seen.values()))


def load_exchange_rates(config: Config | None = None, *, report: str | None = None) -> ExchangeRates:
    """The reporting currency and rates: ``report`` > ``LLMTALLY_REPORT_CURRENCY`` >
    ``[currency] report`` > CNY; rates from ``[[currency.rates]]`` of ``config`` (default: loaded)."""
    cfg = config if config is not None else load_config()
    source = str(cfg.path or "llmtally.toml")
    table = cfg.section("currency")
    unknown = set(table) - {"report", "rates"}
    if unknown:
        raise ConfigError(f"{source}: [currency] has unknown keys {sorted(unknown)}; use report and rates")
    entries = table.get("rates", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{source}: currency.rates must be a list of tables ([[currency.rates]])")
    env = os.environ.get(ENV_REPORT_CURRENCY)
    chosen = report or env or table.get("report", DEFAULT_REPORT_CURRENCY)
    where = "report" if report else ENV_REPORT_CURRENCY if env else f"{source}: [currency] report"
    return ExchangeRates(_code(chosen, where), parse_rates(entries, source), source)
