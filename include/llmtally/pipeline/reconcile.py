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
from dataclasses import fields
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

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
    FoldEntry,
    HourlyRow,
    LedgerEntry,
    LossEntry,
    PromptDigestRow,
    QuarantineEntry,
    ReconciliationRow,
    TopRequest,
)
from .billing import Billed, billed
from .parse import ParseStats
from .record import UsageRecord
from .recount import Recount

__all__ = ["LOSS_GAP", "MAX_DISTINCT", "OTHER", "Billed", "billed", "merge_losses", "reconcile"]

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
LOSS_GAP = timedelta(minutes=5)
"""Loss markers of one service, host and reason this close in time are one episode (one row)."""


def merge_losses(entries: Iterable[LossEntry], gap: timedelta = LOSS_GAP) -> list[LossEntry]:
    """One :class:`LossEntry` per service, host, reason and episode: markers whose windows overlap or
    lie within ``gap`` of each other are summed (a logger dropping under a long overload writes a
    marker per batch; one row says it).  Sorted by service, host, start and reason."""
    out: list[LossEntry] = []
    for e in sorted(entries, key=lambda e: (e.service, e.host, e.reason, e.first_ts, e.last_ts)):
        prev = out[-1] if out else None
        if (
            prev is not None
            and (prev.service, prev.host, prev.reason, prev.day) == (e.service, e.host, e.reason, e.day)
            and e.first_ts <= prev.last_ts + gap
        ):
            out[-1] = LossEntry(
                prev.day, prev.service, prev.host, prev.records + e.records, prev.first_ts,
                max(prev.last_ts, e.last_ts), prev.reason,
            )  # fmt: skip
        else:
            out.append(e)
    return sorted(out, key=lambda e: (e.service, e.host, e.first_ts, e.reason))


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


class _Recon:
    __slots__ = ("ape", "counts", "pe")

    def __init__(self) -> None:
        self.counts = dict.fromkeys(_RECON_COUNTS, 0)
        self.ape = 0.0
        self.pe = 0.0

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
            err = (ep + ec - truth) / truth
            self.ape += abs(err)
            self.pe += err
        return drift

    def row(self, day: date, key: tuple[str, str, str]) -> ReconciliationRow:
        values: dict[str, Any] = dict(self.counts)
        model, service, fingerprint = key
        return ReconciliationRow(
            day=day, model=model, service=service, fingerprint=fingerprint, **values,
            estimate_ape_sum=self.ape, estimate_pe_sum=self.pe,
        )  # fmt: skip


OTHER = "(other)"
"""The value users or tenants over the cardinality limit are folded into."""
MAX_DISTINCT: Mapping[str, int] = {"user_id": 100_000, "tenant": 100_000}
"""Default cardinality limits: distinct values per service and day kept in ``usage_hourly``."""
_DIM_AT = {"user_id": _KEY.index("user_id"), "tenant": _KEY.index("tenant")}
_SERVICE_AT = _KEY.index("service")
_P_AT, _C_AT = SUM_COLUMNS.index("prompt_tokens"), SUM_COLUMNS.index("completion_tokens")


def _fold(
    day: date,
    hourly: dict[tuple[Any, ...], list[int]],
    costs: dict[tuple[Any, ...], tuple[Decimal, str]],
    limits: Mapping[str, int],
) -> list[FoldEntry]:
    """Fold, per service, the values of each limited dimension beyond its limit into ``OTHER``.

    The values that billed the most tokens stay (ties: by name), so chargeback keeps its big
    spenders; ``''`` (not given) is never folded nor counted; sums and costs of folded rows merge
    exactly.  Changes ``hourly`` and ``costs``.
    """
    entries: list[FoldEntry] = []
    for dim, limit in sorted(limits.items()):
        at = _DIM_AT[dim]
        spent: dict[str, dict[str, list[int]]] = {}
        for key, acc in hourly.items():
            per = spent.setdefault(key[_SERVICE_AT], {}).setdefault(key[at], [0, 0])
            per[0] += acc[_P_AT] + acc[_C_AT]
            per[1] += acc[0]
        folded: dict[str, set[str]] = {}
        for service, values in sorted(spent.items()):
            values.pop("", None)  # "not given" is never folded
            if len(values) <= limit:
                continue
            ranked = sorted(values, key=lambda v: (-values[v][0], v))
            tail = ranked[limit:]
            folded[service] = set(tail)
            entries.append(
                FoldEntry(
                    day, service, dim, limit, len(values), len(tail),
                    requests=sum(values[v][1] for v in tail), tokens=sum(values[v][0] for v in tail),
                )
            )  # fmt: skip
        if not folded:
            continue
        for key in [k for k in hourly if k[at] in folded.get(k[_SERVICE_AT], ())]:
            acc = hourly.pop(key)
            new = (*key[:at], OTHER, *key[at + 1 :])
            into = hourly.setdefault(new, [0] * len(acc))
            for i, n in enumerate(acc):
                into[i] += n
            cost = costs.pop(key, None)
            if cost is not None:
                prev = costs.get(new)
                costs[new] = (cost[0] + (prev[0] if prev else 0), cost[1])
    return entries


_FIELD_ORDER = [HOURLY_COLUMNS.index(f.name) for f in fields(HourlyRow)]
"""Where each ``HourlyRow`` field sits in ``HOURLY_COLUMNS`` order (derived from the names)."""


def _hourly_row(
    day: date, key: tuple[Any, ...], sums: list[int], cost: tuple[Decimal, str] | None
) -> HourlyRow:
    values = (day, *key, *sums, cost[0].quantize(_CENT12) if cost else None, cost[1] if cost else None)
    return HourlyRow(*[values[i] for i in _FIELD_ORDER])


_Cand = tuple[int, str, UsageRecord, Billed]


def _top(cands: list[_Cand], n: int) -> list[_Cand]:
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
    """Aggregate a day's records into the rows :meth:`UsageStore.load_day` writes.

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
    hourly: dict[tuple[Any, ...], list[int]] = {}
    costs: dict[tuple[Any, ...], tuple[Decimal, str]] = {}
    recon: dict[tuple[str, str, str], _Recon] = {}
    cands: list[_Cand] = []
    digests: dict[tuple[str, str], list[Any]] = {}
    sources: dict[str, int] = {}
    totals = [0, 0, 0]  # records, prompt, completion
    q = {"legacy": 0, "drift": 0, "error": 0, "timeout": 0, "abandoned": 0}
    hour_of = _Hours(tz)
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
            prev = costs.get(key)
            costs[key] = (b.cost.amount + (prev[0] if prev else 0), b.cost.currency)
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
            dg = digests.get((rec.prompt_sha256, rec.feature))
            if dg is None:
                digests[(rec.prompt_sha256, rec.feature)] = [1, billable, rec.ts, rec.ts]
            else:
                dg[0] += 1
                dg[1] += billable
                dg[2], dg[3] = min(dg[2], rec.ts), max(dg[3], rec.ts)
        if len(cands) > 4 * top_n + 1024:
            _top(cands, top_n)
    limits = MAX_DISTINCT if max_distinct is None else max_distinct
    if set(limits) - set(_DIM_AT):
        raise ValueError(
            f"cardinality limits apply to {sorted(_DIM_AT)}, not {sorted(set(limits) - set(_DIM_AT))}"
        )
    folds = _fold(day, hourly, costs, limits)
    hourly_rows = [_hourly_row(day, k, v, costs.get(k)) for k, v in sorted(hourly.items())]
    top = [_top_request(day, rank, rec, b) for rank, (_, _, rec, b) in enumerate(_top(cands, top_n), start=1)]
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
