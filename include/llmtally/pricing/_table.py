"""Price table: per-model rates with tiers and effective-from dates, computed in exact decimals."""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any

from .._config import Config
from .._exceptions import ConfigError

__all__ = ["Cost", "ModelPrice", "Price", "PriceBook", "Rates", "load_prices", "model_price"]

_UNIT = 1_000_000
_CURRENCIES = frozenset({"CNY", "USD", "EUR", "HKD", "JPY", "GBP"})
_RATE_KEYS = ("input", "output", "cached_input", "reasoning", "thinking_output")


@dataclass(frozen=True)
class Rates:
    """Rates per ``unit`` tokens for requests whose input tokens are at most ``up_to`` (``None``: any)."""

    input: Decimal
    output: Decimal
    up_to: int | None = None
    cached_input: Decimal | None = None
    reasoning: Decimal | None = None
    thinking_output: Decimal | None = None


@dataclass(frozen=True)
class Price:
    """The rates in force from ``effective_from`` (aware) until the model's next :class:`Price`."""

    effective_from: datetime
    tiers: tuple[Rates, ...]

    def rates_for(self, prompt_tokens: int) -> Rates | None:
        """The tier holding a request of ``prompt_tokens`` input tokens (``None`` past the last tier)."""
        for tier in self.tiers:
            if tier.up_to is None or prompt_tokens <= tier.up_to:
                return tier
        return None


@dataclass(frozen=True)
class Cost:
    """An exact amount of money."""

    amount: Decimal
    currency: str


@dataclass(frozen=True)
class ModelPrice:
    """Everything known about one model's price: currency, unit and dated price list."""

    model: str
    currency: str
    prices: tuple[Price, ...]
    unit: int = _UNIT
    aliases: tuple[str, ...] = ()
    source: str = "shipped"

    def at(self, when: datetime) -> Price | None:
        """The price in force at ``when`` (aware), ``None`` before the first one."""
        current = None
        for price in self.prices:
            if price.effective_from <= when:
                current = price
        return current

    def cost(
        self,
        when: datetime,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int = 0,
        reasoning_tokens: int = 0,
    ) -> Cost | None:
        """Exact cost of one request; ``None`` when no price or tier covers it."""
        price = self.at(when)
        rates = price.rates_for(prompt_tokens) if price is not None else None
        if rates is None:
            return None
        cached = min(max(cached_tokens, 0), prompt_tokens)
        reasoning = min(max(reasoning_tokens, 0), completion_tokens)
        amount = (prompt_tokens - cached) * rates.input
        amount += cached * (rates.cached_input if rates.cached_input is not None else rates.input)
        if reasoning and rates.thinking_output is not None:
            amount += completion_tokens * rates.thinking_output
        else:
            amount += (completion_tokens - reasoning) * rates.output
            amount += reasoning * (rates.reasoning if rates.reasoning is not None else rates.output)
        return Cost(amount / self.unit, self.currency)


@dataclass(frozen=True)
class PriceBook:
    """Model prices by name (exact names and listed aliases only: no guessing by prefix)."""

    models: Mapping[str, ModelPrice]
    note: str = ""
    compiled: date | None = None
    _index: dict[str, ModelPrice] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for mp in self.models.values():
            for name in (mp.model, *mp.aliases):
                self._index[name] = mp

    @property
    def fingerprint(self) -> str:
        """SHA-256 of every model's currency, unit, aliases and dated rates (not where they were read
        from): two books bill alike exactly when their fingerprints are equal."""
        terms = sorted(
            (mp.model, mp.currency, mp.unit, mp.aliases, tuple((p.effective_from.isoformat(), p.tiers)
                                                                for p in mp.prices))
            for mp in self.models.values()
        )  # fmt: skip
        return hashlib.sha256(repr(terms).encode("utf-8")).hexdigest()

    def lookup(self, model: str | None) -> ModelPrice | None:
        """The price entry of ``model`` or one of its aliases; ``None`` when unknown."""
        if not model:
            return None
        return self._index.get(model)

    def cost(
        self,
        model: str | None,
        when: datetime,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int = 0,
        reasoning_tokens: int = 0,
    ) -> Cost | None:
        """Exact cost of a request, or ``None`` for an unknown model, date or tier."""
        mp = self.lookup(model)
        if mp is None:
            return None
        return mp.cost(when, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens)

    def with_models(self, extra: Iterable[ModelPrice]) -> PriceBook:
        """A copy where ``extra`` entries replace same-named entries (and their aliases)."""
        models = dict(self.models)
        for mp in extra:
            for name in [n for n, v in models.items() if mp.model in (n, *v.aliases)]:
                del models[name]
            models[mp.model] = mp
        return PriceBook(models, self.note, self.compiled)


def _decimal(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ConfigError(f"{where}: a rate must be a number or a decimal string such as '0.8'")
    try:
        result = Decimal(str(value))
    except InvalidOperation as exc:
        raise ConfigError(f"{where}: {value!r} is not a decimal number") from exc
    if not result.is_finite() or result < 0:
        raise ConfigError(f"{where}: rate {value!r} must be a finite number >= 0")
    return result


def _when(value: Any, where: str) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ConfigError(f"{where}: effective_from needs an offset, e.g. 2025-09-06T00:00:00+08:00")
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        try:
            return _when(datetime.fromisoformat(value) if "T" in value else date.fromisoformat(value), where)
        except ValueError as exc:
            raise ConfigError(f"{where}: effective_from {value!r} is not an ISO date") from exc
    raise ConfigError(f"{where}: effective_from must be a date such as 2025-01-01")


def _rates(table: Mapping[str, Any], where: str) -> Rates:
    unknown = set(table) - {*_RATE_KEYS, "up_to"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; use {', '.join(_RATE_KEYS)}, up_to")
    for key in ("input", "output"):
        if key not in table:
            raise ConfigError(f"{where}: needs both input and output rates")
    up_to = table.get("up_to")
    if up_to is not None and (isinstance(up_to, bool) or not isinstance(up_to, int) or up_to <= 0):
        raise ConfigError(f"{where}: up_to must be a positive whole number of input tokens")
    opt = {k: _decimal(table[k], f"{where}.{k}") for k in _RATE_KEYS[2:] if table.get(k) is not None}
    return Rates(
        _decimal(table["input"], f"{where}.input"), _decimal(table["output"], f"{where}.output"), up_to, **opt
    )


def _price(table: Mapping[str, Any], where: str, default_from: datetime | None = None) -> Price:
    raw_from = table.get("effective_from")
    start = _when(raw_from, where) if raw_from is not None else default_from
    if start is None:
        raise ConfigError(f"{where}: needs effective_from = YYYY-MM-DD")
    flat = {k: v for k, v in table.items() if k not in ("effective_from", "tiers")}
    tiers_raw = table.get("tiers")
    if tiers_raw is not None:
        if flat or not isinstance(tiers_raw, list) or not tiers_raw:
            raise ConfigError(f"{where}: give either tiers = [...] or flat rates, not both")
        tiers = tuple(_rates(t, f"{where}.tiers[{i}]") for i, t in enumerate(tiers_raw))
    else:
        tiers = (_rates(flat, where),)
    bounds = [t.up_to for t in tiers]
    if any(b is None for b in bounds[:-1]) or bounds[:-1] != sorted(b for b in bounds[:-1] if b is not None):
        raise ConfigError(f"{where}: tiers must be in increasing up_to order; only the last may omit it")
    return Price(start, tiers)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_META = ("currency", "unit", "aliases", "prices", "note")


def model_price(name: str, table: Mapping[str, Any], source: str, *, undated: bool = False) -> ModelPrice:
    """Parse one model's price table (the shipped form or an llmtally.toml ``price`` table).

    ``undated`` (llmtally.toml overrides) lets a single flat price omit ``effective_from``: it then
    applies to all dates.
    """
    where = f'{source}: models."{name}"'
    currency = table.get("currency")
    if not isinstance(currency, str) or currency.upper() not in _CURRENCIES:
        raise ConfigError(f"{where}: currency must be one of {sorted(_CURRENCIES)}")
    unit = table.get("unit", _UNIT)
    if isinstance(unit, bool) or not isinstance(unit, int) or unit <= 0:
        raise ConfigError(f"{where}: unit must be a positive number of tokens (default 1000000)")
    aliases = table.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise ConfigError(f"{where}: aliases must be a list of model names")
    default_from = _EPOCH if undated else None
    if "prices" in table:
        entries = table["prices"]
        if not isinstance(entries, list) or not entries:
            raise ConfigError(f"{where}: prices must be a non-empty list of tables")
        prices = [_price(p, f"{where}.prices[{i}]", default_from) for i, p in enumerate(entries)]
    else:
        prices = [_price({k: v for k, v in table.items() if k not in _META}, where, default_from)]
    prices.sort(key=lambda p: p.effective_from)
    return ModelPrice(name, currency.upper(), tuple(prices), unit, tuple(aliases), source)


def _book(raw: Mapping[str, Any], source: str) -> PriceBook:
    models = raw.get("models", {})
    if not isinstance(models, Mapping):
        raise ConfigError(f"{source}: [models] must be a table")
    meta = raw.get("source", {})
    compiled = meta.get("compiled") if isinstance(meta, Mapping) else None
    note = str(meta.get("note", "")).strip() if isinstance(meta, Mapping) else ""
    return PriceBook(
        {name: model_price(name, table, source) for name, table in models.items()},
        note,
        compiled if isinstance(compiled, date) else None,
    )


def load_prices(config: Config | None = None, path: str | Path | None = None) -> PriceBook:
    """The shipped price table (or ``path``), with ``[models."X".price]`` overrides from ``config``."""
    try:
        if path is None:
            text = resources.files("llmtally.pricing").joinpath("prices.toml").read_text("utf-8")
            source = "llmtally/pricing/prices.toml"
        else:
            text = Path(path).read_text("utf-8")
            source = str(path)
        raw = tomllib.loads(text)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read price table {path or 'prices.toml'}: {exc}") from exc
    book = _book(raw, source)
    if config is None:
        return book
    cfg_source = str(config.path or "llmtally.toml")
    tables: dict[str, Mapping[str, Any]] = {}
    raw_models = config.raw.get("models", {})
    if isinstance(raw_models, Mapping):
        for name, table in raw_models.items():
            if isinstance(table, Mapping) and isinstance(table.get("price"), Mapping):
                tables[name] = table["price"]
    for name, entry in config.models.items():
        if entry.price is not None:
            tables[name] = entry.price
    return book.with_models(model_price(n, t, cfg_source, undated=True) for n, t in tables.items())
