"""The tables of the usage page: one definition each, shown as HTML and downloaded as CSV.

A :class:`Table` holds raw values (ints, :class:`~decimal.Decimal` costs, dates, names); the page
formats them for reading, the CSV writes them as they are, so a downloaded table parses back to
the numbers the store summed.  Column keys are stable machine names (the CSV header); labels are
the page's words in its language.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from ._data import Usage

__all__ = [
    "Column",
    "Table",
    "change_pct",
    "cost_columns",
    "currencies",
    "dates",
    "money_total",
    "share",
    "usage_table",
]


@dataclass(frozen=True)
class Column:
    """A column: ``key`` (CSV header), ``label`` (the page's words) and ``kind`` (how a value reads:
    ``text``, ``int``, ``money``, ``share`` (0..1), ``pct`` (percent), ``float``, ``date``, ``time``)."""

    key: str
    label: str
    kind: str = "int"
    currency: str | None = None
    """The currency of a ``money`` column."""


@dataclass(frozen=True)
class Table:
    """One table of the page: ``rows`` of raw values in ``columns`` order.

    ``links`` (one per row, or empty) is the drill-down query string of the row's first cell;
    ``shown`` how many rows the page shows (``None``: all; the CSV always has every row).
    """

    id: str
    title: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[Any, ...], ...]
    links: tuple[str | None, ...] = ()
    shown: int | None = None
    note: str = ""

    @property
    def visible(self) -> tuple[tuple[Any, ...], ...]:
        """The rows the page shows."""
        return self.rows if self.shown is None else self.rows[: self.shown]

    def column(self, key: str) -> list[Any]:
        """Every value of one column (tests and totals)."""
        i = [c.key for c in self.columns].index(key)
        return [r[i] for r in self.rows]


def currencies(usages: Iterable[Usage]) -> list[str]:
    """Every currency any of ``usages`` was priced in, sorted."""
    return sorted({c for u in usages for c in u.cost})


def cost_columns(names: Sequence[str], label: str) -> tuple[Column, ...]:
    """One money column per currency: ``cost_CNY``, ``cost_USD``…"""
    return tuple(Column(f"cost_{c}", f"{label} ({c})", "money", c) for c in names)


def share(part: int, whole: int) -> float:
    """``part / whole`` rounded to 4 decimals (0 when ``whole`` is 0)."""
    return round(part / whole, 4) if whole else 0.0


def change_pct(current: int, previous: int) -> float | None:
    """Change in %, 2 decimals; ``None`` without a base (as the report's)."""
    return round((current - previous) * 100.0 / previous, 2) if previous else None


def usage_table(
    table_id: str,
    title: str,
    by: Sequence[Column],
    groups: Sequence[tuple[tuple[Any, ...], Usage]],
    words: Mapping[str, str],
    *,
    total_tokens: int | None = None,
    links: Sequence[str | None] = (),
    shown: int | None = None,
    note: str = "",
) -> Table:
    """Usage per group: the ``by`` columns, then requests, tokens, share of ``total_tokens`` (when
    given), cost per currency and unpriced requests.  The chargeback export writes this table."""
    names = currencies(u for _, u in groups)
    cols = (
        *by,
        Column("requests", words["requests"]),
        Column("prompt_tokens", words["prompt_tokens"]),
        Column("completion_tokens", words["completion_tokens"]),
        Column("total_tokens", words["total_tokens"]),
        *((Column("share", words["share"], "share"),) if total_tokens is not None else ()),
        *cost_columns(names, words["cost"]),
        Column("unpriced_requests", words["unpriced_requests"]),
    )
    rows = []
    for key, u in groups:
        row: list[Any] = [*key, u.requests, u.prompt_tokens, u.completion_tokens, u.total_tokens]
        if total_tokens is not None:
            row.append(share(u.total_tokens, total_tokens))
        row.extend(u.cost.get(c) for c in names)
        row.append(u.unpriced_requests)
        rows.append(tuple(row))
    return Table(table_id, title, cols, tuple(rows), tuple(links), shown, note)


def money_total(rows: Iterable[Mapping[str, Decimal]]) -> dict[str, Decimal]:
    """Costs per currency summed."""
    out: dict[str, Decimal] = {}
    for cost in rows:
        for c, v in cost.items():
            out[c] = out.get(c, Decimal(0)) + v
    return dict(sorted(out.items()))


def dates(start: date, end: date) -> list[date]:
    """Every day of ``[start, end]``."""
    return [date.fromordinal(n) for n in range(start.toordinal(), end.toordinal() + 1)]
