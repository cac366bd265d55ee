"""An in-memory store: the test double for everything above the store, same contract as PostgreSQL."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Self

from .._exceptions import StorageError
from ._alerts import FiredThreshold, check_claim, check_sent
from ._base import (
    SUM_COLUMNS,
    GroupedRow,
    StoreQueries,
    Where,
    check_evidence,
    check_keys,
    check_totals,
    filters,
    fold,
    raise_problems,
)
from ._rows import (
    KEY_COLUMNS,
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

__all__ = ["MemoryStore"]


def _negatives(load: DayLoad) -> int:
    bad = 0
    for h in load.hourly:
        bad += any(getattr(h, c) < 0 for c in SUM_COLUMNS) or (h.cost is not None and h.cost < 0)
    for r in load.reconciliation:
        bad += min(r.records, r.reported, r.recounted, r.drift_records, r.estimated, r.not_recountable,
                   r.unknown_model, r.recount_errors) < 0  # fmt: skip
    for t in load.top_requests:
        bad += min(t.prompt_tokens, t.completion_tokens) < 0
    return bad


class MemoryStore(StoreQueries):
    """Keeps each loaded day as one immutable :class:`DayLoad`; a load swaps it in after the checks.

    A :meth:`snapshot` reads from a copy of the day index taken on entry (per thread), so loads
    that swap days in meanwhile are not seen inside it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._days: dict[date, DayLoad] = {}
        self._local = threading.local()
        self._ledger: list[LedgerEntry] = []
        self._reports: dict[tuple[date, str], tuple[str, str]] = {}
        self._fired: dict[tuple[str, date, float], FiredThreshold] = {}
        self._sent: list[tuple[str, datetime, int]] = []
        self._closed = False

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _open(self) -> None:
        if self._closed:
            raise StorageError("the store is closed")

    def migrate(self) -> list[str]:
        """Nothing to migrate in memory."""
        return []

    @staticmethod
    def _problems(load: DayLoad) -> list[str]:
        hours = fold((0, h.currency, [getattr(h, c) for c in SUM_COLUMNS], h.cost) for h in load.hourly)
        totals = hours.get(0, Totals())
        return check_totals(
            load.quality, totals, sum(r.records for r in load.reconciliation), _negatives(load)
        )

    def load_day(self, load: DayLoad, *, force: bool = False) -> None:
        """Check ``load``, then swap it in for its day (the old day stays on failure)."""
        self._open()
        for rows in (load.hourly, load.reconciliation, load.top_requests, load.quarantine, load.digests,
                     load.losses, load.folds):  # fmt: skip
            if any(r.day != load.day for r in rows):
                raise StorageError(f"rows for another day in the load of {load.day}")
        raise_problems(load.day, self._problems(load))
        with self._lock:
            held = self._days.get(load.day)
            entries = [e for e in self._ledger if e.day == load.day]
            sources = entries[-1].sources if entries else {}
            check_evidence(load.day, held.quality if held else None, sources, load, force=force)
            ledger = replace(load.ledger, forced=force) if load.ledger is not None else None
            self._days[load.day] = copy.deepcopy(replace(load, ledger=ledger))
            if ledger is not None:
                self._ledger.append(ledger)

    def check_day(self, day: date) -> None:
        """Re-check a loaded day."""
        load = self._days.get(day)
        if load is not None:
            raise_problems(day, self._problems(load))

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside see the days as they were on entry (nested snapshots share the outer one)."""
        self._open()
        if getattr(self._local, "view", None) is not None:
            yield
            return
        with self._lock:
            self._local.view = dict(self._days)
        try:
            yield
        finally:
            self._local.view = None

    def _loads(self, start: date, end: date) -> list[DayLoad]:
        self._open()
        view: dict[date, DayLoad] | None = getattr(self._local, "view", None)
        days = self._days if view is None else view
        return [days[d] for d in sorted(days) if start <= d <= end]

    def loaded_days(self, start: date, end: date) -> list[date]:
        """Loaded days in ``[start, end]``."""
        return [ld.day for ld in self._loads(start, end)]

    def hourly_rows(self, day: date) -> list[HourlyRow]:
        """A day's hourly rows, sorted."""
        loads = self._loads(day, day)
        rows = list(loads[0].hourly) if loads else []
        return sorted(rows, key=lambda h: tuple(getattr(h, c) for c in KEY_COLUMNS[1:]))

    def grouped(
        self, keys: Sequence[str], start: date, end: date, where: Where | None = None
    ) -> list[GroupedRow]:
        """Sum the hourly rows matching ``where`` by ``keys`` and currency."""
        check_keys(keys)
        wanted = filters(where)
        acc: dict[tuple[tuple[Any, ...], str | None], tuple[list[int], Decimal | None]] = {}
        for ld in self._loads(start, end):
            for h in ld.hourly:
                if any(getattr(h, c) not in values for c, values in wanted.items()):
                    continue
                k = (tuple(getattr(h, c) for c in keys), h.currency)
                sums, cost = acc.get(k, ([0] * len(SUM_COLUMNS), None))
                sums = [a + getattr(h, c) for a, c in zip(sums, SUM_COLUMNS, strict=True)]
                if h.cost is not None:
                    cost = (cost or Decimal(0)) + h.cost
                acc[k] = (sums, cost)
        return [(k[0], k[1], sums, cost) for k, (sums, cost) in acc.items()]

    def reconciliation_between(self, start: date, end: date) -> list[ReconciliationRow]:
        """Reconciliation rows of the days ``[start, end]``."""
        return sorted(
            [r for ld in self._loads(start, end) for r in ld.reconciliation],
            key=lambda r: (r.day, r.model, r.service, r.fingerprint),
        )

    def quality(self, day: date) -> DayQuality | None:
        """A day's quality counts."""
        loads = self._loads(day, day)
        return loads[0].quality if loads else None

    def top_requests(self, day: date, limit: int = 100) -> list[TopRequest]:
        """A day's top requests by rank."""
        rows = [t for ld in self._loads(day, day) for t in ld.top_requests]
        return sorted(rows, key=lambda t: t.rank)[:limit]

    def quarantine(self, day: date) -> list[QuarantineEntry]:
        """A day's quarantined lines."""
        rows = [q for ld in self._loads(day, day) for q in ld.quarantine]
        return sorted(rows, key=lambda q: (q.source, q.line))

    def folds(self, day: date) -> list[FoldEntry]:
        """Where users or tenants over the cardinality limit were folded into ``(other)``."""
        rows = [e for ld in self._loads(day, day) for e in ld.folds]
        return sorted(rows, key=lambda e: (e.service, e.dimension))

    def prompt_digests(self, day: date) -> list[PromptDigestRow]:
        """A day's repeated prompt digests."""
        rows = [d for ld in self._loads(day, day) for d in ld.digests]
        return sorted(rows, key=lambda d: (d.prompt_sha256, d.feature))

    def losses(self, day: date) -> list[LossEntry]:
        """What the services' loggers lost on a day."""
        rows = [e for ld in self._loads(day, day) for e in ld.losses]
        return sorted(rows, key=lambda e: (e.service, e.host, e.first_ts, e.reason))

    def ledger(self, day: date) -> list[LedgerEntry]:
        """Every run recorded for a day."""
        self._open()
        return [e for e in self._ledger if e.day == day]

    def purge_quarantine(self, before: date) -> int:
        """Drop quarantined lines of days before ``before``."""
        self._open()
        with self._lock:
            purged = 0
            for d, ld in list(self._days.items()):
                if d < before and ld.quarantine:
                    purged += len(ld.quarantine)
                    self._days[d] = replace(ld, quarantine=())
            return purged

    def archive_report(self, day: date, lang: str, html: str, summary: Mapping[str, Any]) -> None:
        """Keep a rendered report."""
        self._open()
        self._reports[(day, lang)] = (html, json.dumps(summary, default=str))

    def archived_days(self, start: date, end: date) -> list[tuple[date, str]]:
        """``(day, lang)`` of the kept reports of the days ``[start, end]``."""
        self._open()
        return sorted(k for k in self._reports if start <= k[0] <= end)

    def archived_report(self, day: date, lang: str) -> tuple[str, dict[str, Any]] | None:
        """A kept report."""
        self._open()
        hit = self._reports.get((day, lang))
        return (hit[0], json.loads(hit[1])) if hit else None

    def claim(
        self,
        budget: str,
        period_start: date,
        threshold: float,
        *,
        at: datetime,
        spend: Decimal,
        unit: str,
        share: float,
    ) -> bool:
        """Fire ``threshold`` of ``budget`` for the period starting ``period_start``: ``True`` for the
        first claim only (atomic under the store's lock)."""
        self._open()
        check_claim(budget, threshold, at, share)
        key = (budget, period_start, float(threshold))
        with self._lock:
            if key in self._fired:
                return False
            self._fired[key] = FiredThreshold(
                budget, period_start, float(threshold), at, Decimal(spend), unit, float(share)
            )
            return True

    def fired_in(self, budget: str, period_start: date) -> list[FiredThreshold]:
        """The thresholds of ``budget`` fired in the period starting ``period_start``, lowest first."""
        self._open()
        with self._lock:
            rows = [f for (b, p, _), f in self._fired.items() if b == budget and p == period_start]
        return sorted(rows, key=lambda f: f.threshold)

    def sent_since(self, channel: str, since: datetime) -> int:
        """How many alert messages ``channel`` was sent at or after ``since``."""
        self._open()
        with self._lock:
            return sum(1 for name, at, _ in self._sent if name == channel and at >= since)

    def record_sent(self, channel: str, at: datetime, findings: int) -> None:
        """Note one alert message to ``channel`` at ``at`` carrying ``findings`` findings."""
        self._open()
        check_sent(channel, at, findings)
        with self._lock:
            self._sent.append((channel, at, findings))

    def close(self) -> None:
        """Mark closed (data is dropped)."""
        self._closed = True
        self._days.clear()
