"""Reported vs estimated vs recounted: billed numbers per record, and the day's aggregates.

Billed numbers, per prompt and completion separately: the server's reported usage when present,
else the exact recount, else the service's own estimate (always the case for legacy lines, whose
numbers are both estimate and billed), else 0 (counted as ``billed_missing`` in the quality row).
Everything is summed in integers and exact decimals, one pass over the records.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from .._config import DEFAULT_TIMEZONE
from ..pricing import Cost, PriceBook
from ..store._rows import (
    DayLoad,
    DayQuality,
    HourlyRow,
    LedgerEntry,
    PromptDigestRow,
    QuarantineEntry,
    ReconciliationRow,
    TopRequest,
)
from .parse import ParseStats
from .record import UsageRecord
from .recount import Recount

__all__ = ["Billed", "billed", "reconcile"]

_NONE = Recount("not_recountable")
_CENT12 = Decimal("1e-12")  # the store keeps money as numeric(30, 12)
# requests, prompt, completion, cached, reasoning, recounted p/c, estimated p/c, unpriced
_SUMS = 10


@dataclass(frozen=True, slots=True)
class Billed:
    """A record's billed numbers, where each came from, and its cost (``None``: no known price)."""

    prompt_tokens: int
    completion_tokens: int
    prompt_source: str
    completion_source: str
    cost: Cost | None = None


def _pick(reported: int | None, recounted: int | None, estimated: int | None) -> tuple[int, str]:
    if reported is not None:
        return reported, "reported"
    if recounted is not None:
        return recounted, "recount"
    if estimated is not None:
        return estimated, "estimate"
    return 0, "missing"


def billed(rec: UsageRecord, rc: Recount | None = None, prices: PriceBook | None = None) -> Billed:
    """Billed numbers of one record given its recount (see the module docstring)."""
    rc = rc or _NONE
    p, ps = _pick(rec.reported_prompt_tokens, rc.prompt_tokens, rec.estimated_prompt_tokens)
    c, cs = _pick(rec.reported_completion_tokens, rc.completion_tokens, rec.estimated_completion_tokens)
    cost = prices.cost(rec.model, rec.ts, p, c, rec.cached_tokens, rec.reasoning_tokens) if prices else None
    return Billed(p, c, ps, cs, cost)


class _Recon:
    __slots__ = ("ape", "counts", "pe")

    def __init__(self) -> None:
        # records reported recounted drift p_drift p_abs c_drift c_abs estimated not_rc unknown errors
        self.counts = [0] * 12
        self.ape = 0.0
        self.pe = 0.0

    def add(self, rec: UsageRecord, rc: Recount, b: Billed) -> bool:
        n = self.counts
        n[0] += 1
        rp, rcp = rec.reported_prompt_tokens, rec.reported_completion_tokens
        n[1] += rp is not None or rcp is not None
        n[9] += rc.status == "not_recountable"
        n[10] += rc.status == "unknown_model"
        n[11] += rc.status == "error"
        drift = False
        if rc.status == "ok":
            n[2] += 1
            if rp is not None and rc.prompt_tokens is not None:
                d = rp - rc.prompt_tokens
                n[4] += d
                n[5] += abs(d)
                drift = drift or d != 0
            if rcp is not None and rc.completion_tokens is not None:
                d = rcp - rc.completion_tokens
                n[6] += d
                n[7] += abs(d)
                drift = drift or d != 0
        n[3] += drift
        ep, ec = rec.estimated_prompt_tokens, rec.estimated_completion_tokens
        truth = b.prompt_tokens + b.completion_tokens
        graded = b.prompt_source in ("reported", "recount") and b.completion_source in ("reported", "recount")
        if ep is not None and ec is not None and graded and truth > 0:
            n[8] += 1
            err = (ep + ec - truth) / truth
            self.ape += abs(err)
            self.pe += err
        return drift

    def row(self, day: date, key: tuple[str, str, str]) -> ReconciliationRow:
        n = self.counts
        return ReconciliationRow(
            day, *key, records=n[0], reported=n[1], recounted=n[2], drift_records=n[3],
            prompt_drift_tokens=n[4], prompt_drift_abs_tokens=n[5], completion_drift_tokens=n[6],
            completion_drift_abs_tokens=n[7], estimated=n[8], estimate_ape_sum=self.ape,
            estimate_pe_sum=self.pe, not_recountable=n[9], unknown_model=n[10], recount_errors=n[11],
        )  # fmt: skip


def _hourly_row(day: date, k: tuple[Any, ...], v: list[int], cost: tuple[Decimal, str] | None) -> HourlyRow:
    return HourlyRow(
        day=day,
        hour=k[0],
        model=k[1],
        feature=k[2],
        user_id=k[3],
        tenant=k[4],
        service=k[5],
        requests=v[0],
        prompt_tokens=v[1],
        completion_tokens=v[2],
        cached_tokens=v[3],
        reasoning_tokens=v[4],
        recounted_prompt_tokens=v[5],
        recounted_completion_tokens=v[6],
        estimated_prompt_tokens=v[7],
        estimated_completion_tokens=v[8],
        cost=cost[0].quantize(_CENT12) if cost else None,
        currency=cost[1] if cost else None,
        unpriced_requests=v[9],
    )


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
    top_n: int = 100,
    run_id: str | None = None,
    durations: Mapping[str, float] | None = None,
    details: Mapping[str, Any] | None = None,
) -> DayLoad:
    """Aggregate a day's records into the rows :meth:`UsageStore.load_day` writes.

    ``quality.records`` is the parser's count (``stats.records``), so the store's post-load check
    catches records lost between parse and load.  ``recounts`` maps record ids to :func:`recount`
    results (a missing id counts as not recountable).  ``stats`` and ``quarantine`` come from the
    parse; ``run_id``, ``durations`` and ``details`` go to the ledger entry.
    """
    hourly: dict[tuple[Any, ...], list[int]] = {}
    costs: dict[tuple[Any, ...], tuple[Decimal, str]] = {}
    recon: dict[tuple[str, str, str], _Recon] = {}
    sources = {"reported": 0, "recount": 0, "estimate": 0, "missing": 0}
    cands: list[_Cand] = []
    digests: dict[tuple[str, str], list[Any]] = {}
    totals = [0, 0, 0]  # records, prompt, completion
    q = {"legacy": 0, "recounted": 0, "not_recountable": 0, "unknown_model": 0, "error": 0, "drift": 0}
    for rec in records:
        rc = recounts.get(rec.id, _NONE)
        b = billed(rec, rc, prices)
        model, service = rec.model or "", rec.service or ""
        key = (rec.ts.replace(minute=0, second=0, microsecond=0), model, rec.feature, rec.user_id,
               rec.tenant, service)  # fmt: skip
        acc = hourly.get(key)
        if acc is None:
            acc = hourly[key] = [0] * _SUMS
        vals = (1, b.prompt_tokens, b.completion_tokens, rec.cached_tokens, rec.reasoning_tokens,
                rc.prompt_tokens or 0, rc.completion_tokens or 0, rec.estimated_prompt_tokens or 0,
                rec.estimated_completion_tokens or 0, b.cost is None)  # fmt: skip
        for i, v in enumerate(vals):
            acc[i] += v
        if b.cost is not None:
            prev = costs.get(key)
            costs[key] = (b.cost.amount + (prev[0] if prev else 0), b.cost.currency)
        rkey = (model, service, rc.fingerprint)
        group = recon.get(rkey)
        if group is None:
            group = recon[rkey] = _Recon()
        q["drift"] += group.add(rec, rc, b)
        q["legacy"] += rec.legacy
        q["recounted" if rc.status == "ok" else rc.status] += 1
        sources[b.prompt_source] += 1
        totals[0] += 1
        totals[1] += b.prompt_tokens
        totals[2] += b.completion_tokens
        cands.append((b.prompt_tokens + b.completion_tokens, rec.id, rec, b))
        if rec.prompt_sha256:
            dg = digests.get((rec.prompt_sha256, rec.feature))
            if dg is None:
                digests[(rec.prompt_sha256, rec.feature)] = [1, cands[-1][0], rec.ts, rec.ts]
            else:
                dg[0] += 1
                dg[1] += cands[-1][0]
                dg[2], dg[3] = min(dg[2], rec.ts), max(dg[3], rec.ts)
        if len(cands) > 4 * top_n + 1024:
            _top(cands, top_n)
    hourly_rows = [_hourly_row(day, k, v, costs.get(k)) for k, v in sorted(hourly.items())]
    top = [_top_request(day, rank, rec, b) for rank, (_, _, rec, b) in enumerate(_top(cands, top_n), start=1)]
    st = stats or ParseStats(records=totals[0])
    quality = DayQuality(
        day, records=st.records, prompt_tokens=totals[1], completion_tokens=totals[2], files=st.files,
        bytes=st.bytes, lines=st.lines, out_of_day=st.out_of_day, duplicates=st.duplicates,
        partial_lines=st.partial_lines, blank_lines=st.blank_lines, quarantined=st.quarantined,
        legacy_records=q["legacy"], recounted=q["recounted"], not_recountable=q["not_recountable"],
        unknown_model=q["unknown_model"], recount_errors=q["error"], drift_records=q["drift"],
        billed_reported=sources["reported"], billed_recount=sources["recount"],
        billed_estimate=sources["estimate"], billed_missing=sources["missing"],
        unpriced_records=sum(v[9] for v in hourly.values()),
    )  # fmt: skip
    ledger = LedgerEntry(
        run_id or f"manual__{uuid.uuid4().hex[:12]}", day, files=st.files, bytes=st.bytes,
        records=totals[0], quarantined=st.quarantined, partial_lines=st.partial_lines,
        duplicates=st.duplicates, recounted=q["recounted"], durations=dict(durations or {}),
        details=dict(details or {}),
    )  # fmt: skip
    return DayLoad(
        day,
        hourly_rows,
        [g.row(day, k) for k, g in sorted(recon.items())],
        top,
        quality,
        list(quarantine),
        ledger,
        tz,
        [PromptDigestRow(day, k[0], k[1], *v) for k, v in sorted(digests.items()) if v[0] > 1],
    )
