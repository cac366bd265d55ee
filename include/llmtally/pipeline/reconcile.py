"""Reported vs estimated vs recounted: billed numbers per record, and the day's aggregates.

What each record bills is the billing rule of :mod:`llmtally.pipeline.billing` (by outcome:
reported, else exact recount, else the service's estimate; failed calls bill nothing).  Records
are bucketed by their *local* hour (:func:`llmtally._time.local_hour`) and the day, outcome and
HTTP status, so every reader cuts days by the ``day`` column.  Everything is summed in integers
and exact decimals, one pass over the records.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any, NamedTuple, TypeVar

from .._config import DEFAULT_TIMEZONE
from .._time import local_hour, zone
from ..pricing import PriceBook
from ..store._rows import (
    HOURLY_COLUMNS,
    KEY_COLUMNS,
    SOURCES,
    SUM_COLUMNS,
    DayLoad,
    DayQuality,
    HourlyRow,
    LedgerEntry,
    LossEntry,
    PromptDigestRow,
    QuarantineEntry,
    ReconciliationRow,
    TopRequest,
)
from ._fold import LOSS_GAP, MAX_DISTINCT, OTHER, add_cost, check_limits, fold, merge_losses
from .billing import Billed, billed
from .parse import ParseStats
from .record import UsageRecord
from .recount import Recount

__all__ = [
    "LOSS_GAP",
    "MAX_DISTINCT",
    "OTHER",
    "Billed",
    "DayAggregator",
    "DayPartial",
    "PartialRecon",
    "PartialRow",
    "billed",
    "finish",
    "merge_losses",
    "reconcile",
]

_NONE = Recount("not_recountable")
_CENT12 = Decimal("1e-12")  # the store keeps money as numeric(30, 12)


class _Sums(NamedTuple):
    """One record's contribution to its ``usage_hourly`` row, by column name (checked below)."""

    requests: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    recounted_prompt_tokens: int
    recounted_completion_tokens: int
    estimated_prompt_tokens: int
    estimated_completion_tokens: int
    unpriced_requests: int
    uncertain_requests: int


_KEY = ("hour", "model", "feature", "user_id", "tenant", "service", "status", "http_status")
if _Sums._fields != SUM_COLUMNS or KEY_COLUMNS[1:] != _KEY:
    raise AssertionError("reconcile's row key and sums must follow store._rows' column declaration")
_RECON_COUNTS = ("records", "reported", "recounted", "drift_records", "prompt_drift_tokens",
                 "prompt_drift_abs_tokens", "completion_drift_tokens", "completion_drift_abs_tokens",
                 "estimated", "not_recountable", "unknown_model", "recount_errors",
                 *(f"prompt_{s}" for s in SOURCES[:4]), *(f"completion_{s}" for s in SOURCES[:4]),
                 "not_billed", "uncertain")  # fmt: skip
_PROMPT_SOURCE = {**{s: f"prompt_{s}" for s in SOURCES[:4]}, "not_billed": "not_billed"}
_COMPLETION_SOURCE = {s: f"completion_{s}" for s in SOURCES[:4]}
_RECOUNT_STATUS = {"not_recountable": "not_recountable", "unknown_model": "unknown_model",
                   "error": "recount_errors"}  # fmt: skip
_GRADED = frozenset({"reported", "recount"})
_QUARTER, _TICK = timedelta(minutes=15), timedelta(microseconds=1)


class _Hours:
    """``local_hour`` memoised per UTC quarter-hour where that is exact: the zone's offset is a
    multiple of 15 minutes and the same at both ends of the quarter (no transition inside it);
    elsewhere (rare historic offsets and transitions) it is computed per record."""

    __slots__ = ("_memo", "_zone", "tz")

    def __init__(self, tz: str) -> None:
        self.tz = tz
        self._zone = zone(tz)
        self._memo: dict[datetime, datetime] = {}

    def __call__(self, ts: datetime) -> datetime:
        q = ts.replace(minute=ts.minute - ts.minute % 15, second=0, microsecond=0)
        hit = self._memo.get(q)
        if hit is None:
            offset = q.astimezone(self._zone).utcoffset() or timedelta(0)
            end = (q + _QUARTER - _TICK).astimezone(self._zone).utcoffset() or timedelta(0)
            if offset % _QUARTER or end != offset:
                return local_hour(ts, self.tz)
            hit = self._memo[q] = local_hour(q, self.tz)
        return hit


_ULP = 2**1074  # every finite float is a whole multiple of 2**-1074: sums of them kept as whole numbers


def _exact(x: float) -> int:
    """``x`` in units of 2**-1074: floats summed this way give one result in any order or split."""
    n, d = x.as_integer_ratio()
    return n * (_ULP // d)


def _float(units: int) -> float:
    """The float nearest to a sum kept by :func:`_exact` (correctly rounded)."""
    return float(Fraction(units, _ULP))


class _Recon:
    __slots__ = ("ape", "counts", "pe")

    def __init__(self) -> None:
        self.counts = dict.fromkeys(_RECON_COUNTS, 0)
        self.ape = 0  # in units of 2**-1074 (_exact)
        self.pe = 0

    def add(self, rec: UsageRecord, rc: Recount, b: Billed) -> bool:
        n = self.counts
        n["records"] += 1
        rp, rcp = rec.reported_prompt_tokens, rec.reported_completion_tokens
        n["reported"] += rp is not None or rcp is not None
        n[_PROMPT_SOURCE[b.prompt_source]] += 1
        if b.completion_source != "not_billed":
            n[_COMPLETION_SOURCE[b.completion_source]] += 1
        n["uncertain"] += b.uncertain
        drift = False
        if rc.status == "ok":
            n["recounted"] += 1
            if rp is not None and rc.prompt_tokens is not None:
                d = rp - rc.prompt_tokens
                n["prompt_drift_tokens"] += d
                n["prompt_drift_abs_tokens"] += abs(d)
                drift = drift or d != 0
            if rcp is not None and rc.completion_tokens is not None:
                d = rcp - rc.completion_tokens
                n["completion_drift_tokens"] += d
                n["completion_drift_abs_tokens"] += abs(d)
                drift = drift or d != 0
        else:
            n[_RECOUNT_STATUS[rc.status]] += 1
        n["drift_records"] += drift
        ep, ec = rec.estimated_prompt_tokens, rec.estimated_completion_tokens
        truth = b.prompt_tokens + b.completion_tokens
        graded = b.prompt_source in _GRADED and b.completion_source in _GRADED
        if ep is not None and ec is not None and graded and truth > 0:
            n["estimated"] += 1
            err = _exact((ep + ec - truth) / truth)
            self.ape += abs(err)
            self.pe += err
        return drift

    def merge(self, counts: Mapping[str, int], ape: int, pe: int) -> None:
        n = self.counts
        for name, v in counts.items():
            n[name] += v
        self.ape += ape
        self.pe += pe

    def row(self, day: date, key: tuple[str, str, str]) -> ReconciliationRow:
        values: dict[str, Any] = dict(self.counts)
        model, service, fingerprint = key
        return ReconciliationRow(
            day=day, model=model, service=service, fingerprint=fingerprint, **values,
            estimate_ape_sum=_float(self.ape), estimate_pe_sum=_float(self.pe),
        )  # fmt: skip


_FIELD_ORDER = [HOURLY_COLUMNS.index(f.name) for f in fields(HourlyRow)]
"""Where each ``HourlyRow`` field sits in ``HOURLY_COLUMNS`` order (derived from the names)."""


def _hourly_row(
    day: date, key: tuple[Any, ...], sums: list[int], cost: tuple[Decimal, str] | None
) -> HourlyRow:
    values = (day, *key, *sums, cost[0].quantize(_CENT12) if cost else None, cost[1] if cost else None)
    return HourlyRow(*[values[i] for i in _FIELD_ORDER])


_OUTCOME_COUNTS = ("legacy", "drift", "error", "timeout", "abandoned")
_C = TypeVar("_C", tuple[int, str, UsageRecord, Billed], tuple[int, str, TopRequest])
"""A candidate for the largest requests: billed tokens, record id (ties), then what makes its row."""


def _top(cands: list[_C], n: int) -> list[_C]:
    cands.sort(key=lambda t: (-t[0], t[1]))
    del cands[n:]
    return cands


def _top_request(day: date, rank: int, rec: UsageRecord, b: Billed) -> TopRequest:
    return TopRequest(
        day=day,
        rank=rank,
        record_id=rec.id,
        ts=rec.ts,
        model=rec.model or "",
        service=rec.service or "",
        feature=rec.feature,
        user_id=rec.user_id,
        tenant=rec.tenant,
        prompt_sha256=rec.prompt_sha256 or "",
        prompt_tokens=b.prompt_tokens,
        completion_tokens=b.completion_tokens,
        cost=b.cost.amount.quantize(_CENT12) if b.cost else None,
        currency=b.cost.currency if b.cost else None,
        tags=dict(rec.tags),
    )


def _add_digest(digests: dict[tuple[str, str], list[Any]], key: tuple[str, str], requests: int,
                tokens: int, first: datetime, last: datetime) -> None:  # fmt: skip
    """Add requests of one prompt digest and feature: ``[requests, tokens, first ts, last ts]``."""
    dg = digests.get(key)
    if dg is None:
        digests[key] = [requests, tokens, first, last]
    else:
        dg[0] += requests
        dg[1] += tokens
        dg[2], dg[3] = min(dg[2], first), max(dg[3], last)


@dataclass(frozen=True, slots=True)
class PartialRow:
    """One ``usage_hourly`` key's sums over part of a day, before the cardinality fold (exact cost)."""

    hour: datetime
    model: str
    feature: str
    user_id: str
    tenant: str
    service: str
    status: str
    http_status: int
    sums: Sequence[int]
    cost: Decimal | None = None
    currency: str | None = None


@dataclass(frozen=True, slots=True)
class PartialRecon:
    """One reconciliation group's counts over part of a day; the estimate errors summed exactly (in
    units of 2**-1074), so any split of the day adds up to the same floats."""

    model: str
    service: str
    fingerprint: str
    counts: Mapping[str, int]
    ape: int
    pe: int


@dataclass(frozen=True)
class DayPartial:
    """What :class:`DayAggregator` made of part of a day's records: mergeable sums (hourly, per
    reconciliation group, per prompt digest, per source file), the part's largest requests and its
    totals.  :func:`finish` merges any number of parts into the day's :class:`DayLoad`."""

    hourly: Sequence[PartialRow]
    recon: Sequence[PartialRecon]
    top: Sequence[TopRequest]
    digests: Sequence[PromptDigestRow]
    sources: Mapping[str, int]
    records: int
    prompt_tokens: int
    completion_tokens: int
    outcomes: Mapping[str, int]


class DayAggregator:
    """Sums a day's records as they stream by (:meth:`add`, any number of times) into a
    :class:`DayPartial` (:meth:`partial`).  One pass, integers and exact decimals."""

    def __init__(self, day: date, tz: str = DEFAULT_TIMEZONE, *, prices: PriceBook | None = None,
                 top_n: int = 100) -> None:  # fmt: skip
        self.day, self.tz, self.prices, self.top_n = day, tz, prices, top_n
        self._hourly: dict[tuple[Any, ...], list[int]] = {}
        self._costs: dict[tuple[Any, ...], tuple[Decimal, str]] = {}
        self._recon: dict[tuple[str, str, str], _Recon] = {}
        self._cands: list[tuple[int, str, UsageRecord, Billed]] = []  # rows built for the top only
        self._digests: dict[tuple[str, str], list[Any]] = {}
        self._sources: dict[str, int] = {}
        self._totals = [0, 0, 0]  # records, prompt, completion
        self._q = dict.fromkeys(_OUTCOME_COUNTS, 0)
        self._hour_of = _Hours(tz)

    def add(self, records: Iterable[UsageRecord], recounts: Mapping[str, Recount]) -> DayAggregator:
        """Add ``records`` (``recounts`` maps their ids to recount results; a missing id counts as not
        recountable)."""
        hourly, costs, recon, cands, digests = (
            self._hourly,
            self._costs,
            self._recon,
            self._cands,
            self._digests,
        )
        sources, totals, q, hour_of, prices = self._sources, self._totals, self._q, self._hour_of, self.prices
        width = len(SUM_COLUMNS)
        for rec in records:
            rc = recounts.get(rec.id, _NONE)
            b = billed(rec, rc, prices)
            model, service = rec.model or "", rec.service or ""
            key = (hour_of(rec.ts), model, rec.feature, rec.user_id, rec.tenant, service, b.outcome,
                   rec.http_status or 0)  # fmt: skip  # _KEY: KEY_COLUMNS after "day"
            acc = hourly.get(key)
            if acc is None:
                acc = hourly[key] = [0] * width
            billable = b.prompt_tokens + b.completion_tokens
            sums = _Sums(
                requests=1,
                prompt_tokens=b.prompt_tokens,
                completion_tokens=b.completion_tokens,
                cached_tokens=rec.cached_tokens,
                reasoning_tokens=rec.reasoning_tokens,
                recounted_prompt_tokens=rc.prompt_tokens or 0,
                recounted_completion_tokens=rc.completion_tokens or 0,
                estimated_prompt_tokens=rec.estimated_prompt_tokens or 0,
                estimated_completion_tokens=rec.estimated_completion_tokens or 0,
                unpriced_requests=int(b.cost is None and billable > 0),
                uncertain_requests=int(b.uncertain),
            )
            for i, n in enumerate(sums):
                acc[i] += n
            if b.cost is not None:
                add_cost(costs, key, b.cost.amount, b.cost.currency)
            rkey = (model, service, rc.fingerprint)
            group = recon.get(rkey)
            if group is None:
                group = recon[rkey] = _Recon()
            q["drift"] += group.add(rec, rc, b)
            q["legacy"] += rec.legacy
            if b.outcome in q:
                q[b.outcome] += 1
            sources[rec.source] = sources.get(rec.source, 0) + 1
            totals[0] += 1
            totals[1] += b.prompt_tokens
            totals[2] += b.completion_tokens
            cands.append((billable, rec.id, rec, b))
            if rec.prompt_sha256:
                _add_digest(digests, (rec.prompt_sha256, rec.feature), 1, billable, rec.ts, rec.ts)
            if len(cands) > 4 * self.top_n + 1024:
                _top(cands, self.top_n)
        return self

    def partial(self) -> DayPartial:
        """What was added so far, as plain data (a recount shard stages it for the merge)."""
        rows = []
        for k, v in self._hourly.items():
            cost = self._costs.get(k)
            hour, model, feature, user, tenant, service, status, http = k
            rows.append(PartialRow(hour, model, feature, user, tenant, service, status, http, list(v),
                                   cost[0] if cost else None, cost[1] if cost else None))  # fmt: skip
        return DayPartial(
            hourly=rows,
            recon=[
                PartialRecon(*k, counts=dict(g.counts), ape=g.ape, pe=g.pe) for k, g in self._recon.items()
            ],
            top=[_top_request(self.day, 0, rec, b) for _, _, rec, b in _top(self._cands, self.top_n)],
            digests=[PromptDigestRow(self.day, k[0], k[1], *v) for k, v in self._digests.items()],
            sources=dict(self._sources),
            records=self._totals[0],
            prompt_tokens=self._totals[1],
            completion_tokens=self._totals[2],
            outcomes=dict(self._q),
        )


def finish(
    parts: Iterable[DayPartial],
    *,
    day: date,
    tz: str = DEFAULT_TIMEZONE,
    stats: ParseStats | None = None,
    quarantine: Sequence[QuarantineEntry] = (),
    losses: Sequence[LossEntry] = (),
    top_n: int = 100,
    run_id: str | None = None,
    durations: Mapping[str, float] | None = None,
    details: Mapping[str, Any] | None = None,
    max_distinct: Mapping[str, int] | None = None,
) -> DayLoad:
    """Merge the parts of a day (any split of its records gives the same result) into the rows
    :meth:`UsageStore.load_day` writes; the arguments are :func:`reconcile`'s."""
    limits = check_limits(MAX_DISTINCT if max_distinct is None else max_distinct)
    hourly: dict[tuple[Any, ...], list[int]] = {}
    costs: dict[tuple[Any, ...], tuple[Decimal, str]] = {}
    recon: dict[tuple[str, str, str], _Recon] = {}
    cands: list[tuple[int, str, TopRequest]] = []
    digests: dict[tuple[str, str], list[Any]] = {}
    sources: dict[str, int] = {}
    totals = [0, 0, 0]
    q = dict.fromkeys(_OUTCOME_COUNTS, 0)
    for part in parts:
        for r in part.hourly:
            key = (r.hour, r.model, r.feature, r.user_id, r.tenant, r.service, r.status, r.http_status)
            acc = hourly.get(key)
            if acc is None:
                hourly[key] = list(r.sums)
            else:
                for i, n in enumerate(r.sums):
                    acc[i] += n
            if r.cost is not None and r.currency is not None:
                add_cost(costs, key, r.cost, r.currency)
        for g in part.recon:
            rkey = (g.model, g.service, g.fingerprint)
            group = recon.get(rkey)
            if group is None:
                group = recon[rkey] = _Recon()
            group.merge(g.counts, g.ape, g.pe)
        cands.extend((t.prompt_tokens + t.completion_tokens, t.record_id, t) for t in part.top)
        _top(cands, top_n)
        for d in part.digests:
            _add_digest(digests, (d.prompt_sha256, d.feature), d.requests, d.total_tokens, d.first_ts,
                        d.last_ts)  # fmt: skip
        for source, n in part.sources.items():
            sources[source] = sources.get(source, 0) + n
        totals[0] += part.records
        totals[1] += part.prompt_tokens
        totals[2] += part.completion_tokens
        for name, n in part.outcomes.items():
            q[name] += n
    folds = fold(day, hourly, costs, limits)
    hourly_rows = [_hourly_row(day, k, v, costs.get(k)) for k, v in sorted(hourly.items())]
    top = [replace(t, rank=rank) for rank, (_, _, t) in enumerate(_top(cands, top_n), start=1)]
    recon_rows = [g.row(day, k) for k, g in sorted(recon.items())]
    st = stats or ParseStats(
        records=totals[0], loss_markers=len(losses), lost_records=sum(e.records for e in losses)
    )
    counts = {name: sum(getattr(r, name) for r in recon_rows) for name in _RECON_COUNTS}
    quality = DayQuality(
        day, records=st.records, prompt_tokens=totals[1], completion_tokens=totals[2], files=st.files,
        bytes=st.bytes, lines=st.lines, out_of_day=st.out_of_day, duplicates=st.duplicates,
        partial_lines=st.partial_lines, blank_lines=st.blank_lines, quarantined=st.quarantined,
        legacy_records=q["legacy"], recounted=counts["recounted"], not_recountable=counts["not_recountable"],
        unknown_model=counts["unknown_model"], recount_errors=counts["recount_errors"],
        drift_records=q["drift"], unpriced_records=sum(r.unpriced_requests for r in hourly_rows),
        **{k: counts[k] for k in _RECON_COUNTS if k.startswith(("prompt_", "completion_"))
           and not k.endswith("_tokens")},
        not_billed=counts["not_billed"], uncertain=counts["uncertain"], status_error=q["error"],
        status_timeout=q["timeout"], status_abandoned=q["abandoned"], loss_markers=st.loss_markers,
        lost_records=st.lost_records, folded_values=sum(f.folded for f in folds),
        folded_requests=sum(f.requests for f in folds),
    )  # fmt: skip
    ledger = LedgerEntry(
        run_id or f"manual__{uuid.uuid4().hex[:12]}", day, files=st.files, bytes=st.bytes,
        records=totals[0], quarantined=st.quarantined, partial_lines=st.partial_lines,
        duplicates=st.duplicates, recounted=counts["recounted"], durations=dict(durations or {}),
        details=dict(details or {}), sources=dict(sorted(sources.items())),
    )  # fmt: skip
    return DayLoad(
        day,
        hourly_rows,
        recon_rows,
        top,
        quality,
        list(quarantine),
        ledger,
        tz,
        [PromptDigestRow(day, k[0], k[1], *v) for k, v in sorted(digests.items()) if v[0] > 1],
        merge_losses(losses),
        folds,
    )


def reconcile(
    records: Iterable[UsageRecord],
    recounts: Mapping[str, Recount],
    *,
    day: date,
    tz: str = DEFAULT_TIMEZONE,
    prices: PriceBook | None = None,
    stats: ParseStats | None = None,
    quarantine: Sequence[QuarantineEntry] = (),
    losses: Sequence[LossEntry] = (),
    top_n: int = 100,
    run_id: str | None = None,
    durations: Mapping[str, float] | None = None,
    details: Mapping[str, Any] | None = None,
    max_distinct: Mapping[str, int] | None = None,
) -> DayLoad:
    """Aggregate a day's records into the rows :meth:`UsageStore.load_day` writes (one
    :class:`DayAggregator` over every record, then :func:`finish`).

    ``quality.records`` is the parser's count (``stats.records``), so the store's post-load check
    catches records lost between parse and load.  ``recounts`` maps record ids to :func:`recount`
    results (a missing id counts as not recountable).  ``stats``, ``quarantine`` and ``losses`` (the
    day's loss markers; merged here by :func:`merge_losses`) come from the parse; ``quality.lost_records``
    is the parser's count of lost records (the markers' sum without ``stats``).  ``run_id``,
    ``durations`` and ``details`` go to the ledger entry.

    ``max_distinct`` (default :data:`MAX_DISTINCT`) caps the distinct ``user_id`` and ``tenant``
    values per service and day: beyond it the values that billed least are folded into
    :data:`OTHER` and the fold is written down (``DayLoad.folds``, ``quality.folded_*``), so random
    ids cannot blow up ``usage_hourly``.  Totals and costs are unchanged by a fold.
    """
    part = DayAggregator(day, tz, prices=prices, top_n=top_n).add(records, recounts).partial()
    return finish(
        [part], day=day, tz=tz, stats=stats, quarantine=quarantine, losses=losses, top_n=top_n,
        run_id=run_id, durations=durations, details=details, max_distinct=max_distinct,
    )  # fmt: skip
