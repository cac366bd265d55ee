"""The store protocol, and the query and check logic every backend shares."""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import date, datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar, runtime_checkable

from .._exceptions import ConfigError, DataQualityError, FinalDayError, LessEvidenceError
from ._rows import (
    DIMENSIONS,
    KEY_COLUMNS,
    SUM_COLUMNS,
    DayLoad,
    DayQuality,
    FoldEntry,
    HourlyRow,
    LedgerEntry,
    LossEntry,
    PromptDigestRow,
    QuarantineEntry,
    ReconciliationRow,
    TopRequest,
    Totals,
)

__all__ = [
    "FILTER_COLUMNS",
    "SUMMABLE",
    "SUM_COLUMNS",
    "GroupedRow",
    "StoreQueries",
    "SummedRow",
    "UsageStore",
    "Where",
    "check_evidence",
    "check_keys",
    "check_totals",
    "filters",
    "fold",
    "totals_of",
]

K = TypeVar("K", bound=Hashable)
GroupedRow = tuple[tuple[Any, ...], str | None, Sequence[int], Decimal | None]
"""``(key values, currency, sums in SUM_COLUMNS order, cost sum)`` as a backend's grouping returns."""

SummedRow = tuple[tuple[Any, ...], tuple[Any, ...]]
"""``(key values, sums)`` as :meth:`UsageStore.summed` returns: sums in the order of its ``columns``."""

SUMMABLE = (*SUM_COLUMNS, "cost")
"""What :meth:`UsageStore.summed` can sum: the additive columns and ``cost`` (per currency only)."""

FILTER_COLUMNS = tuple(c for c in KEY_COLUMNS if c not in ("day", "hour"))
"""The key columns :meth:`UsageStore.grouped` can filter on (days and hours are its range)."""

Where = Mapping[str, str | int | Sequence[str] | Sequence[int]]
"""``{column: value or values}``: rows whose ``column`` is the value (or one of the values)."""


@runtime_checkable
class UsageStore(Protocol):
    """Where a day's aggregates live.  Every write replaces whole days; reads never see half a day."""

    def migrate(self) -> list[str]:
        """Apply pending schema migrations; returns the names applied now."""
        ...

    def load_day(self, load: DayLoad, *, force: bool = False) -> None:
        """Replace ``load.day`` with ``load`` atomically, check it, or leave the old day untouched.

        A day is never replaced by less evidence: when the day already holds more records than
        ``load`` brings, or more from any one source file, :class:`LessEvidenceError` is raised and
        the day is kept, unless ``force`` (see :func:`check_evidence`).  Raises
        :class:`DataQualityError` when the checks fail, :class:`StorageError` on driver errors.
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

    def grouped(
        self, keys: Sequence[str], start: date, end: date, where: Where | None = None
    ) -> list[GroupedRow]:
        """``usage_hourly`` of days ``[start, end]`` (by the ``day`` column) summed by ``keys``
        (:data:`KEY_COLUMNS`) and currency, over the rows matching ``where`` (:func:`filters`)."""
        ...

    def summed(
        self,
        keys: Sequence[str],
        start: date,
        end: date,
        where: Where | None = None,
        *,
        columns: Sequence[str] = SUM_COLUMNS,
    ) -> list[SummedRow]:
        """``usage_hourly`` of days ``[start, end]`` matching ``where``, grouped by ``keys``
        (:data:`KEY_COLUMNS` or ``currency``): each group's key values and its sums of ``columns``
        (:data:`SUMMABLE`; ``cost`` needs ``currency`` among the keys and is ``None`` where no row
        of the group was priced).  The lean form of :meth:`grouped` for pages that need a few sums."""
        ...

    def daily_totals(self, start: date, end: date) -> dict[date, Totals]:
        """Totals per day in ``[start, end]`` (days without data are absent)."""
        ...

    def hourly_series(self, start: date, end: date) -> dict[datetime, Totals]:
        """Totals per local hour (its start, an aware instant) of the days ``[start, end]``."""
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

    def reconciliation_between(self, start: date, end: date) -> list[ReconciliationRow]:
        """Reconciliation rows of the days ``[start, end]``, by day, model, service, fingerprint."""
        ...

    def snapshot(self) -> AbstractContextManager[None]:
        """``with store.snapshot():`` every read inside sees the same committed state of every day
        (a day reloaded meanwhile shows as it was when the block began).  No writes inside."""
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

    def losses(self, day: date) -> list[LossEntry]:
        """Records the services' loggers lost on a day (their loss markers, merged), by service,
        host, start and reason."""
        ...

    def quality_between(self, start: date, end: date) -> list[DayQuality]:
        """Quality counts of the loaded days in ``[start, end]``, by day."""
        ...

    def losses_between(self, start: date, end: date) -> list[LossEntry]:
        """What the services' loggers lost on the days ``[start, end]``, by day, service, host, start."""
        ...

    def quarantine_reasons(self, start: date, end: date) -> list[tuple[date, str, int]]:
        """``(day, reason, lines)``: quarantined lines of the days ``[start, end]`` counted by
        reason (reasons are fixed texts, never a line's content), by day and reason."""
        ...

    def archived_days(self, start: date, end: date) -> list[tuple[date, str]]:
        """``(day, lang)`` of the reports archived for the days ``[start, end]``, by day and lang."""
        ...

    def folds(self, day: date) -> list[FoldEntry]:
        """Where a service's users or tenants outgrew the cardinality limit on a day and the tail
        was folded into ``(other)``, by service and dimension."""
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
    values = {name: int(v) for name, v in zip(SUM_COLUMNS, sums, strict=True)}
    return Totals(**values, cost=dict(sorted((cost or {}).items())))


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


_ROTATED = re.compile(r"(\.\d+)?(\.gz)?$")


def _stem(source: str) -> str:
    """A source file's identity across re-runs: its folder and name, without ``.gz`` or a rotation
    suffix (``app.log.1``), so compressing or rotating a file does not make it another file."""
    parts = source.replace("\\", "/").rstrip("/").rsplit("/", 2)
    name = _ROTATED.sub("", parts[-1]) or parts[-1]
    return "/".join([*parts[-2:-1], name])


def _by_stem(sources: Mapping[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for f, n in sources.items():
        stem = _stem(f)
        out[stem] = out.get(stem, 0) + n
    return out


def check_evidence(
    day: date, held: DayQuality | None, held_sources: Mapping[str, int], load: DayLoad, *, force: bool
) -> None:
    """Refuse to replace ``day`` (holding ``held``, loaded from ``held_sources``) with less evidence.

    Less evidence: fewer records in all, or fewer records from any file that gave records before
    (a file is its folder and name: compressed or rotated copies count as the same file).  That is
    what a re-run finds once retention purged raw logs or a volume is not mounted; replacing the
    day would wipe good aggregates.  Days loaded before the ledger kept sources are compared by
    their record count only.  ``force`` replaces the day anyway.  A provisional load never replaces
    a final day nor a provisional one cut later (:class:`FinalDayError`, forced or not): an intraday
    run that ends after the daily run of its day, or a re-run of an older cut, leaves the day alone.
    """
    if held is not None and load.quality.provisional and not held.provisional:
        raise FinalDayError(
            f"day {day} is already loaded as final (by the daily run); this provisional load was not "
            "written and the final day was kept"
        )
    later, cut = held.through if held is not None else None, load.quality.through
    if held is not None and held.provisional and load.quality.provisional and later and cut and later > cut:
        raise FinalDayError(
            f"day {day} already holds a later provisional cut (records until {later}); this run's cut "
            f"({cut}) was not written"
        )
    if held is None or force:
        return
    new = _by_stem(load.ledger.sources if load.ledger is not None else {})
    old = _by_stem(held_sources)
    short = {f: (n, new.get(f, 0)) for f, n in sorted(old.items()) if new.get(f, 0) < n}
    if load.quality.records >= held.records and not short:
        return
    shown = ", ".join(f"{f} ({was} → {now})" for f, (was, now) in list(short.items())[:5])
    more = f" and {len(short) - 5} more" if len(short) > 5 else ""
    raise LessEvidenceError(
        f"day {day} already holds {held.records} records; this run found {load.quality.records}"
        + (f"; files with fewer records than before: {shown}{more}" if short else "")
        + ". The day was kept: its raw logs were probably purged by retention, or a log volume is not "
        "mounted. Restore the files and re-run, or replace the day anyway by re-running with the "
        'param {"force": true} (llmtally: load_day(..., force=True)).'
    )


def raise_problems(day: date, problems: list[str]) -> None:
    """Raise :class:`DataQualityError` listing ``problems`` (no-op when empty)."""
    if problems:
        raise DataQualityError(
            f"day {day}: data-quality check failed, the load was rolled back: " + "; ".join(problems)
        )


class StoreQueries:
    """The queries every backend shares, written once over :meth:`UsageStore.grouped` and
    :meth:`UsageStore.reconciliation_between`; a backend implements those two (and may override
    :meth:`snapshot`, a no-op here)."""

    def grouped(
        self, keys: Sequence[str], start: date, end: date, where: Where | None = None
    ) -> list[GroupedRow]:
        """Implemented by each backend."""
        raise NotImplementedError

    def reconciliation_between(self, start: date, end: date) -> list[ReconciliationRow]:
        """Implemented by each backend."""
        raise NotImplementedError

    def reconciliation(self, day: date) -> list[ReconciliationRow]:
        """Reconciliation rows of a day, by model, service, fingerprint."""
        return self.reconciliation_between(day, day)

    # The per-day reads every backend has; the range forms below are written over them (a
    # backend with a query language overrides them with one query each).
    def loaded_days(self, start: date, end: date) -> list[date]:
        """Implemented by each backend."""
        raise NotImplementedError

    def quality(self, day: date) -> DayQuality | None:
        """Implemented by each backend."""
        raise NotImplementedError

    def losses(self, day: date) -> list[LossEntry]:
        """Implemented by each backend."""
        raise NotImplementedError

    def quarantine(self, day: date) -> list[QuarantineEntry]:
        """Implemented by each backend."""
        raise NotImplementedError

    def archived_report(self, day: date, lang: str) -> tuple[str, dict[str, Any]] | None:
        """Implemented by each backend."""
        raise NotImplementedError

    def summed(
        self,
        keys: Sequence[str],
        start: date,
        end: date,
        where: Where | None = None,
        *,
        columns: Sequence[str] = SUM_COLUMNS,
    ) -> list[SummedRow]:
        """Sums of ``columns`` by ``keys`` (see :meth:`UsageStore.summed`), over :meth:`grouped`."""
        plain = check_summed(keys, columns)
        index = {c: i for i, c in enumerate(SUM_COLUMNS)}
        acc: dict[tuple[Any, ...], list[Any]] = {}
        for key, currency, sums, cost in self.grouped(plain, start, end, where):
            values = iter(key)
            full = tuple(currency if k == "currency" else next(values) for k in keys)
            slot = acc.setdefault(full, [None if c == "cost" else 0 for c in columns])
            for i, c in enumerate(columns):
                if c != "cost":
                    slot[i] += int(sums[index[c]] or 0)
                elif cost is not None:
                    slot[i] = (slot[i] or Decimal(0)) + cost
        return [(k, tuple(v)) for k, v in acc.items()]

    def quality_between(self, start: date, end: date) -> list[DayQuality]:
        """Quality counts of the loaded days in ``[start, end]``, by day."""
        return [q for d in self.loaded_days(start, end) if (q := self.quality(d)) is not None]

    def losses_between(self, start: date, end: date) -> list[LossEntry]:
        """What the services' loggers lost on the days ``[start, end]``."""
        return [e for d in self.loaded_days(start, end) for e in self.losses(d)]

    def quarantine_reasons(self, start: date, end: date) -> list[tuple[date, str, int]]:
        """Quarantined lines of the days ``[start, end]`` counted by day and reason."""
        counts: dict[tuple[date, str], int] = {}
        for d in self.loaded_days(start, end):
            for q in self.quarantine(d):
                counts[(d, q.reason)] = counts.get((d, q.reason), 0) + 1
        return [(d, reason, n) for (d, reason), n in sorted(counts.items())]

    def archived_days(self, start: date, end: date) -> list[tuple[date, str]]:
        """``(day, lang)`` of the archived reports of the loaded days in ``[start, end]``."""
        return [
            (d, lang)
            for d in self.loaded_days(start, end)
            for lang in ("en", "zh")
            if self.archived_report(d, lang) is not None
        ]

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside see one state of the store (a backend without concurrent writers: no-op)."""
        yield

    def daily_totals(self, start: date, end: date) -> dict[date, Totals]:
        """Totals per day in ``[start, end]`` (days without data are absent)."""
        return {k[0]: v for k, v in fold(self.grouped(["day"], start, end)).items()}

    def hourly_series(self, start: date, end: date) -> dict[datetime, Totals]:
        """Totals per local hour (its start, an aware instant) of the days ``[start, end]``."""
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


def check_summed(keys: Sequence[str], columns: Sequence[str]) -> list[str]:
    """Check the arguments of :meth:`UsageStore.summed`; returns ``keys`` without ``currency``."""
    plain = [k for k in keys if k != "currency"]
    check_keys(plain)
    bad = [c for c in columns if c not in SUMMABLE]
    if bad or not columns:
        raise ConfigError(f"cannot sum {', '.join(map(repr, bad)) or 'nothing'}; use {', '.join(SUMMABLE)}")
    if "cost" in columns and "currency" not in keys:
        raise ConfigError("cost is summed per currency: add 'currency' to the keys")
    if len(set(keys)) != len(keys):
        raise ConfigError(f"keys repeat: {', '.join(keys)}")
    return plain


def check_keys(keys: Sequence[str]) -> None:
    """Raise :class:`ConfigError` unless every key is a column of :data:`KEY_COLUMNS`."""
    bad = [k for k in keys if k not in KEY_COLUMNS]
    if bad:
        raise ConfigError(f"cannot group by {', '.join(map(repr, bad))}; use {', '.join(KEY_COLUMNS)}")


def filters(where: Where | None) -> dict[str, tuple[str | int, ...]]:
    """``where`` checked and normalised to ``{column: allowed values}``.

    Columns are :data:`FILTER_COLUMNS`; a value is one ``str`` (``int`` for ``http_status``) or a
    sequence of them (empty: nothing matches).  Anything else raises :class:`ConfigError`.
    """
    out: dict[str, tuple[str | int, ...]] = {}
    for column, value in (where or {}).items():
        if column not in FILTER_COLUMNS:
            raise ConfigError(f"cannot filter on {column!r}; use one of {', '.join(FILTER_COLUMNS)}")
        values: tuple[str | int, ...] = (value,) if isinstance(value, str | int) else tuple(value)
        kind = int if column == "http_status" else str
        if any(isinstance(v, bool) or not isinstance(v, kind) for v in values):
            raise ConfigError(f"filter {column} takes {kind.__name__} values, not {value!r}")
        out[column] = values
    return out
