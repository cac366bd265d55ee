"""The store protocol, and the query and check logic every backend shares."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar, runtime_checkable

from .._exceptions import ConfigError, DataQualityError
from ._rows import (
    DIMENSIONS,
    DayLoad,
    DayQuality,
    HourlyRow,
    LedgerEntry,
    PromptDigestRow,
    QuarantineEntry,
    ReconciliationRow,
    TopRequest,
    Totals,
)

__all__ = ["SUM_COLUMNS", "GroupedRow", "StoreQueries", "UsageStore", "check_totals", "fold", "totals_of"]

SUM_COLUMNS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "recounted_prompt_tokens",
    "recounted_completion_tokens",
    "estimated_prompt_tokens",
    "estimated_completion_tokens",
    "unpriced_requests",
)
"""The additive integer columns of ``usage_hourly``, in :class:`Totals` order."""

K = TypeVar("K", bound=Hashable)
GroupedRow = tuple[tuple[Any, ...], str | None, Sequence[int], Decimal | None]
"""``(key values, currency, sums in SUM_COLUMNS order, cost sum)`` as a backend's grouping returns."""


@runtime_checkable
class UsageStore(Protocol):
    """Where a day's aggregates live.  Every write replaces whole days; reads never see half a day."""

    def migrate(self) -> list[str]:
        """Apply pending schema migrations; returns the names applied now."""
        ...

    def load_day(self, load: DayLoad) -> None:
        """Replace ``load.day`` with ``load`` atomically, check it, or leave the old day untouched.

        Raises :class:`DataQualityError` when the checks fail, :class:`StorageError` on driver errors.
        """
        ...

    def check_day(self, day: date) -> None:
        """Re-run the post-load checks for ``day`` (raises :class:`DataQualityError`)."""
        ...

    def loaded_days(self, start: date, end: date) -> list[date]:
        """Days in ``[start, end]`` that have been loaded."""
        ...

    def hourly_rows(self, day: date) -> list[HourlyRow]:
        """The ``usage_hourly`` rows of a day, sorted by hour then dimensions."""
        ...

    def grouped(self, keys: Sequence[str], start: date, end: date) -> list[GroupedRow]:
        """``usage_hourly`` of days ``[start, end]`` summed by ``keys`` (columns) and currency."""
        ...

    def daily_totals(self, start: date, end: date) -> dict[date, Totals]:
        """Totals per day in ``[start, end]`` (days without data are absent)."""
        ...

    def hourly_series(self, start: date, end: date) -> dict[datetime, Totals]:
        """Totals per UTC hour of the days ``[start, end]``."""
        ...

    def totals_by(
        self, dimension: str, start: date, end: date, limit: int | None = None
    ) -> list[tuple[str, Totals]]:
        """Totals per value of a dimension over ``[start, end]``, largest billed tokens first."""
        ...

    def daily_totals_by(self, dimension: str, start: date, end: date) -> dict[date, dict[str, Totals]]:
        """Totals per day and value of a dimension."""
        ...

    def reconciliation(self, day: date) -> list[ReconciliationRow]:
        """Reconciliation rows of a day."""
        ...

    def quality(self, day: date) -> DayQuality | None:
        """Quality counts of a day (``None`` when not loaded)."""
        ...

    def top_requests(self, day: date, limit: int = 100) -> list[TopRequest]:
        """The day's largest requests by billed tokens, by rank."""
        ...

    def quarantine(self, day: date) -> list[QuarantineEntry]:
        """Quarantined lines of a day's latest load."""
        ...

    def prompt_digests(self, day: date) -> list[PromptDigestRow]:
        """Prompt digests sent more than once that day, per feature."""
        ...

    def ledger(self, day: date) -> list[LedgerEntry]:
        """Every ingestion run recorded for a day, oldest first."""
        ...

    def purge_quarantine(self, before: date) -> int:
        """Delete quarantined lines of days before ``before`` (retention); returns how many."""
        ...

    def archive_report(self, day: date, lang: str, html: str, summary: Mapping[str, Any]) -> None:
        """Store (replace) the rendered report of a day in one language."""
        ...

    def archived_report(self, day: date, lang: str) -> tuple[str, dict[str, Any]] | None:
        """``(html, summary)`` archived for a day and language."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None: ...


def fold(rows: Iterable[tuple[K, str | None, Sequence[int], Decimal | None]]) -> dict[K, Totals]:
    """Merge per-currency partial sums into one :class:`Totals` per key."""
    sums: dict[K, list[int]] = {}
    costs: dict[K, dict[str, Decimal]] = {}
    for key, currency, values, cost in rows:
        acc = sums.get(key)
        if acc is None:
            acc = sums[key] = [0] * len(SUM_COLUMNS)
            costs[key] = {}
        for i, v in enumerate(values):
            acc[i] += int(v)
        if currency is not None and cost is not None:
            costs[key][currency] = costs[key].get(currency, Decimal(0)) + cost
    return {key: totals_of(acc, costs[key]) for key, acc in sums.items()}


def totals_of(sums: Sequence[int], cost: Mapping[str, Decimal] | None = None) -> Totals:
    """A :class:`Totals` from sums in :data:`SUM_COLUMNS` order and a cost per currency."""
    v = [int(x) for x in sums]
    return Totals(
        requests=v[0],
        prompt_tokens=v[1],
        completion_tokens=v[2],
        cached_tokens=v[3],
        reasoning_tokens=v[4],
        recounted_prompt_tokens=v[5],
        recounted_completion_tokens=v[6],
        estimated_prompt_tokens=v[7],
        estimated_completion_tokens=v[8],
        cost=dict(sorted((cost or {}).items())),
        unpriced_requests=v[9],
    )


def check_totals(quality: DayQuality, hourly: Totals, recon_records: int, negatives: int) -> list[str]:
    """Problems of a loaded day (empty when consistent)."""
    problems = []
    if hourly.requests != quality.records:
        problems.append(f"usage_hourly has {hourly.requests} requests but {quality.records} records parsed")
    if hourly.prompt_tokens != quality.prompt_tokens:
        problems.append(
            f"prompt tokens: hours sum to {hourly.prompt_tokens}, records to {quality.prompt_tokens}"
        )
    if hourly.completion_tokens != quality.completion_tokens:
        problems.append(
            f"completion tokens: hours sum to {hourly.completion_tokens}, "
            f"records to {quality.completion_tokens}"
        )
    if recon_records != quality.records:
        problems.append(f"reconciliation covers {recon_records} records, not {quality.records}")
    if negatives:
        problems.append(f"{negatives} rows hold negative numbers")
    return problems


def raise_problems(day: date, problems: list[str]) -> None:
    """Raise :class:`DataQualityError` listing ``problems`` (no-op when empty)."""
    if problems:
        raise DataQualityError(
            f"day {day}: data-quality check failed, the load was rolled back: " + "; ".join(problems)
        )


class StoreQueries:
    """The report's queries, written once over :meth:`UsageStore.grouped`."""

    def grouped(self, keys: Sequence[str], start: date, end: date) -> list[GroupedRow]:
        """Implemented by each backend."""
        raise NotImplementedError

    def daily_totals(self, start: date, end: date) -> dict[date, Totals]:
        """Totals per day in ``[start, end]`` (days without data are absent)."""
        return {k[0]: v for k, v in fold(self.grouped(["day"], start, end)).items()}

    def hourly_series(self, start: date, end: date) -> dict[datetime, Totals]:
        """Totals per UTC hour of the days ``[start, end]``."""
        return {k[0]: v for k, v in fold(self.grouped(["hour"], start, end)).items()}

    def totals_by(
        self, dimension: str, start: date, end: date, limit: int | None = None
    ) -> list[tuple[str, Totals]]:
        """Totals per value of ``dimension`` over ``[start, end]``, largest billed tokens first."""
        _dimension(dimension)
        totals = fold(self.grouped([dimension], start, end))
        ranked = sorted(((k[0], v) for k, v in totals.items()), key=lambda kv: (-kv[1].total_tokens, kv[0]))
        return ranked[:limit] if limit is not None else ranked

    def daily_totals_by(self, dimension: str, start: date, end: date) -> dict[date, dict[str, Totals]]:
        """Totals per day and value of ``dimension`` (for stacked trends)."""
        _dimension(dimension)
        out: dict[date, dict[str, Totals]] = {}
        for (day, value), totals in sorted(fold(self.grouped(["day", dimension], start, end)).items()):
            out.setdefault(day, {})[value] = totals
        return out


def _dimension(name: str) -> None:
    if name not in DIMENSIONS:
        raise ConfigError(f"unknown dimension {name!r}; use one of {', '.join(DIMENSIONS)}")
