"""``[[budgets]]`` in llmtally.toml: what a budget covers, its limit, its period and who hears of it.

::

    [[budgets]]
    name = "chat-monthly"                 # required, unique: alerts and the report show it
    match = { feature = "chat", tenant = ["acme", "globex"] }   # empty or absent: all usage
    limit = 50000                         # in unit
    unit = "CNY"                          # "tokens" (billed prompt + completion) or a currency code
    period = "month"                      # day | week (Monday to Sunday) | month; report time zone
    thresholds = [0.8, 0.95, 1.0]         # shares of the limit that alert (default)
    channels = ["alerts_slack"]           # Airflow connection ids of the alert channels

``match`` keys are ``tenant``, ``feature``, ``user`` (the ``user_id`` column), ``model`` and
``service``; a value is one name or a list of names (``""``: the tag was not given).  A bad table is
a :class:`ConfigError` naming the budget and the key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from .._config import Config, load_config
from .._exceptions import ConfigError

__all__ = [
    "DEFAULT_THRESHOLDS",
    "MATCH_COLUMNS",
    "PERIODS",
    "TOKENS",
    "Budget",
    "load_budgets",
    "parse_budgets",
]

PERIODS = ("day", "week", "month")
"""A budget's period: a local day, a Monday-to-Sunday week or a calendar month (report time zone)."""
TOKENS = "tokens"
"""The ``unit`` of a budget in billed tokens (prompt + completion); any other unit is a currency."""
DEFAULT_THRESHOLDS = (0.8, 0.95, 1.0)
"""Shares of the limit that alert when ``thresholds`` is not given."""
MATCH_COLUMNS = {
    "tenant": "tenant",
    "feature": "feature",
    "user": "user_id",
    "user_id": "user_id",
    "model": "model",
    "service": "service",
}
"""``match`` keys and the ``usage_hourly`` column each filters (``user`` is ``user_id``)."""

_KEYS = ("name", "match", "limit", "unit", "period", "thresholds", "channels")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


@dataclass(frozen=True)
class Budget:
    """One ``[[budgets]]`` table, checked (see the module docstring).

    ``match`` is ``((column, values), …)`` sorted by column, columns of ``usage_hourly``;
    ``limit`` is in ``unit`` (:data:`TOKENS` or an ISO currency code).  Built directly, it is
    checked the same way (:class:`ConfigError` naming the budget and the field).
    """

    name: str
    limit: Decimal
    unit: str
    period: str = "month"
    match: tuple[tuple[str, tuple[str, ...]], ...] = ()
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    channels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError('a budget needs name = "…" (unique: alerts and the report show it)')
        where = f"budget {self.name!r}"
        if self.name.startswith("anomaly:"):  # the intraday alerts claim anomalies under such names
            raise ConfigError(f"{where}: a budget name cannot start with 'anomaly:'")
        if self.unit != TOKENS and not _CURRENCY.match(self.unit):
            raise ConfigError(
                f'{where}: unit {self.unit!r} must be "tokens" or a currency code such as "CNY"'
            )
        if not isinstance(self.limit, Decimal) or not self.limit.is_finite() or self.limit <= 0:
            raise ConfigError(f"{where}: limit {self.limit!r} must be a number > 0")
        if self.unit == TOKENS and self.limit != self.limit.to_integral_value():
            raise ConfigError(f"{where}: limit {self.limit} must be a whole number of tokens")
        if self.period not in PERIODS:
            raise ConfigError(f"{where}: period {self.period!r} must be one of {', '.join(PERIODS)}")
        for column, values in self.match:
            if column not in MATCH_COLUMNS.values():
                raise ConfigError(f"{where}: match cannot use {column!r}; use {', '.join(MATCH_COLUMNS)}")
            if not values or not all(isinstance(v, str) for v in values):
                raise ConfigError(f"{where}: match.{column} must be a name or a non-empty list of names")
        if len({c for c, _ in self.match}) != len(self.match):
            raise ConfigError(f"{where}: match names a column twice (user and user_id are the same)")
        if not self.thresholds or not all(_positive(t) for t in self.thresholds):
            raise ConfigError(f"{where}: thresholds must be a non-empty list of shares > 0, e.g. [0.8, 1.0]")
        if list(self.thresholds) != sorted(set(self.thresholds)):
            raise ConfigError(f"{where}: thresholds {list(self.thresholds)} must rise, each given once")
        if not all(isinstance(c, str) and c for c in self.channels):
            raise ConfigError(f"{where}: channels must be a list of Airflow connection ids")

    @property
    def is_money(self) -> bool:
        """Whether the limit is in a currency (else in billed tokens)."""
        return self.unit != TOKENS

    @property
    def where(self) -> dict[str, list[str]]:
        """The store filter of ``match`` (:data:`llmtally.store.Where`)."""
        return {column: list(values) for column, values in self.match}

    def covers(self) -> str:
        """``feature=chat, tenant=acme|globex``; ``*`` for all usage."""
        return ", ".join(f"{c}={'|'.join(v)}" for c, v in self.match) or "*"


def _positive(value: Any) -> bool:
    return (
        not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value) and value > 0
    )


def _names(value: Any, what: str) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{what} must be a name or a non-empty list of names")
    return tuple(dict.fromkeys(values))


def _limit(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"{where}: limit must be a number such as 50000 or a decimal string")
    try:
        return Decimal(str(value).replace("_", "").strip())
    except InvalidOperation as exc:
        raise ConfigError(f"{where}: limit {value!r} is not a number") from exc


def _budget(table: Mapping[str, Any], i: int, source: str) -> Budget:
    name = table.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f'{source}: budgets[{i}] needs name = "…" (unique: alerts and the report show it)')
    where = f"{source}: [[budgets]] {name!r}"
    unknown = sorted(set(table) - set(_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; use {', '.join(_KEYS)}")
    if "limit" not in table or "unit" not in table:
        raise ConfigError(f'{where}: needs limit and unit, e.g. limit = 50000 and unit = "CNY" or "tokens"')
    unit = table["unit"]
    if not isinstance(unit, str):
        raise ConfigError(f'{where}: unit must be "tokens" or a currency code such as "CNY"')
    match = table.get("match", {})
    if not isinstance(match, Mapping):
        raise ConfigError(f'{where}: match must be a table, e.g. match = {{ feature = "chat" }}')
    columns: dict[str, tuple[str, ...]] = {}
    for key, value in match.items():
        column = MATCH_COLUMNS.get(key)
        if column is None:
            raise ConfigError(f"{where}: match cannot use {key!r}; use {', '.join(MATCH_COLUMNS)}")
        if column in columns:
            raise ConfigError(f"{where}: match gives {column} twice (user and user_id are the same)")
        columns[column] = _names(value, f"{where}: match.{key}")
    thresholds = table.get("thresholds", list(DEFAULT_THRESHOLDS))
    if not isinstance(thresholds, list) or any(isinstance(t, bool) or not isinstance(t, int | float)
                                               for t in thresholds):  # fmt: skip
        raise ConfigError(f"{where}: thresholds must be a list of shares of the limit, e.g. [0.8, 0.95, 1.0]")
    channels = table.get("channels", [])
    if isinstance(channels, str):
        channels = [channels]
    if not isinstance(channels, list):
        raise ConfigError(f"{where}: channels must be a list of Airflow connection ids")
    period = table.get("period", "month")
    try:
        return Budget(
            name=name.strip(),
            limit=_limit(table["limit"], where),
            unit=TOKENS if unit.strip().lower() == TOKENS else unit.strip().upper(),
            period=period if not isinstance(period, str) else period.strip().lower(),
            match=tuple(sorted(columns.items())),
            thresholds=tuple(sorted(float(t) for t in thresholds)),
            channels=tuple(channels),
        )
    except ConfigError as exc:
        raise ConfigError(f"{source}: [[budgets]] {exc}") from None


def parse_budgets(tables: Iterable[Any], source: str = "llmtally.toml") -> tuple[Budget, ...]:
    """Check ``[[budgets]]`` tables (``source`` names the file in errors); names must be unique."""
    out: list[Budget] = []
    for i, table in enumerate(tables):
        if not isinstance(table, Mapping):
            raise ConfigError(f"{source}: budgets[{i}] must be a table, written [[budgets]]")
        budget = _budget(table, i, source)
        if any(b.name == budget.name for b in out):
            raise ConfigError(f"{source}: [[budgets]] {budget.name!r} is given twice; names must be unique")
        out.append(budget)
    return tuple(out)


def load_budgets(config: Config | None = None) -> tuple[Budget, ...]:
    """The budgets of ``config`` (default: the loaded llmtally.toml); ``()`` when it has none."""
    cfg = config if config is not None else load_config()
    return parse_budgets(cfg.tables("budgets"), str(cfg.path or "llmtally.toml"))
