"""What the store holds: the rows one day's load writes, and the totals its queries return.

No row type has a field for prompt or completion text: digests, tags and counts only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from decimal import Decimal
from typing import Any

__all__ = [
    "DIMENSIONS",
    "HOURLY_COLUMNS",
    "KEY_COLUMNS",
    "OUTCOMES",
    "SOURCES",
    "SUM_COLUMNS",
    "DayLoad",
    "DayQuality",
    "FoldEntry",
    "HourlyRow",
    "LedgerEntry",
    "LossEntry",
    "PromptDigestRow",
    "QuarantineEntry",
    "ReconciliationRow",
    "TopRequest",
    "Totals",
]

DIMENSIONS = ("model", "feature", "user_id", "tenant", "service", "status")
"""The text dimensions of ``usage_hourly`` besides the hour (``''`` means "not given")."""

KEY_COLUMNS = ("day", "hour", *DIMENSIONS, "http_status")
"""The key of a ``usage_hourly`` row: local day, local-hour start, dimensions, HTTP status (0: none)."""

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
    "uncertain_requests",
)
"""The additive integer columns of ``usage_hourly`` (and fields of :class:`Totals`)."""

HOURLY_COLUMNS = (*KEY_COLUMNS, *SUM_COLUMNS, "cost", "currency")
"""Every column of ``usage_hourly``: the one declaration writers and readers use (by name)."""

OUTCOMES = ("ok", "error", "timeout", "abandoned", "other")
"""A record's ``status``: how the call ended (see :mod:`llmtally.pipeline.billing` for what each bills)."""

SOURCES = ("reported", "recount", "estimate", "missing", "not_billed")
"""Where a billed prompt or completion number came from (``not_billed``: a failed call, billed 0)."""


@dataclass(frozen=True, slots=True)
class HourlyRow:
    """One ``usage_hourly`` row: one local hour of day ``day`` for one dimension combination.

    ``hour`` is the start of the local hour (an aware instant; see :mod:`llmtally._time`).  Token
    columns are billed numbers under the billing rule (:mod:`llmtally.pipeline.billing`);
    ``recounted_*`` / ``estimated_*`` sum those numbers where they exist.  ``cost`` sums the priced
    requests (``None`` when none was priced); ``unpriced_requests`` billed tokens without a known
    price; ``uncertain_requests`` were billed from the recount of a call that timed out.
    ``status`` is the call's outcome, ``http_status`` its HTTP status where known (0: not known).
    """

    day: date
    hour: datetime
    model: str
    feature: str
    user_id: str
    tenant: str
    service: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    recounted_prompt_tokens: int = 0
    recounted_completion_tokens: int = 0
    estimated_prompt_tokens: int = 0
    estimated_completion_tokens: int = 0
    cost: Decimal | None = None
    currency: str | None = None
    unpriced_requests: int = 0
    status: str = "ok"
    http_status: int = 0
    uncertain_requests: int = 0


@dataclass(frozen=True, slots=True)
class ReconciliationRow:
    """Reported vs recounted vs estimated for one (model, service, tokenizer fingerprint) of a day.

    ``drift_records`` counts records whose reported prompt or completion tokens differ from the exact
    recount; the ``*_drift_tokens`` sums are reported minus recount.  The estimate error compares the
    service's estimate of prompt+completion tokens with the truth (reported, else recount) over
    ``estimated`` records: ``estimate_ape_sum`` (sum of |est-true|/true) and ``estimate_pe_sum``
    (signed), so groups can be re-aggregated; MAPE and bias are those sums over ``estimated``, in %.
    ``prompt_*`` / ``completion_*`` count where each record's billed numbers came from
    (:data:`SOURCES`): ``completion_missing`` are records that billed 0 completion tokens because
    nothing reported or recountable was there.
    """

    day: date
    model: str
    service: str
    fingerprint: str
    records: int
    reported: int = 0
    recounted: int = 0
    drift_records: int = 0
    prompt_drift_tokens: int = 0
    prompt_drift_abs_tokens: int = 0
    completion_drift_tokens: int = 0
    completion_drift_abs_tokens: int = 0
    estimated: int = 0
    estimate_ape_sum: float = 0.0
    estimate_pe_sum: float = 0.0
    not_recountable: int = 0
    unknown_model: int = 0
    recount_errors: int = 0
    prompt_reported: int = 0
    prompt_recount: int = 0
    prompt_estimate: int = 0
    prompt_missing: int = 0
    completion_reported: int = 0
    completion_recount: int = 0
    completion_estimate: int = 0
    completion_missing: int = 0
    not_billed: int = 0
    uncertain: int = 0

    @property
    def estimate_mape_pct(self) -> float | None:
        """Mean absolute percentage error of the services' estimates (``None`` without estimates)."""
        return 100.0 * self.estimate_ape_sum / self.estimated if self.estimated else None

    @property
    def estimate_bias_pct(self) -> float | None:
        """Mean signed percentage error (positive: services over-estimate)."""
        return 100.0 * self.estimate_pe_sum / self.estimated if self.estimated else None


@dataclass(frozen=True, slots=True)
class TopRequest:
    """One of the day's largest requests by billed tokens: digest, tags and counts, never text."""

    day: date
    rank: int
    record_id: str
    ts: datetime
    model: str
    service: str
    feature: str
    user_id: str
    tenant: str
    prompt_sha256: str
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal | None = None
    currency: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        """Billed prompt + completion tokens."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class PromptDigestRow:
    """A prompt digest sent more than once in a day (per feature): for spotting bursts of one prompt."""

    day: date
    prompt_sha256: str
    feature: str
    requests: int
    total_tokens: int
    first_ts: datetime
    last_ts: datetime


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    """A malformed line: where it was and why, with a truncated SHA-256 of its bytes (never its text)."""

    day: date
    source: str
    line: int
    reason: str
    line_sha256: str


@dataclass(frozen=True, slots=True)
class LossEntry:
    """Usage records a service's logger lost and wrote down (loss markers, :mod:`llmtally._record`).

    One entry per service, host and reason for markers whose windows lie within a few minutes of
    each other: ``records`` lost between ``first_ts`` and ``last_ts`` (when they were logged), for
    ``reason`` (``queue full``, ``disk full``, ``read-only``, ``write error: <errno name>``,
    ``unwritten at exit``, ...).  A loss belongs to the day its window starts on.
    """

    day: date
    service: str
    host: str
    records: int
    first_ts: datetime
    last_ts: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class FoldEntry:
    """A dimension whose distinct values on a day outgrew its limit for one service.

    ``usage_hourly`` keeps the ``limit`` values that billed the most tokens (ties by name) and
    folds the other ``folded`` of the ``distinct`` values, with their ``requests`` and ``tokens``,
    into the value ``(other)``: totals stay exact, only the attribution of the tail is merged.
    ``dimension`` is ``user_id`` or ``tenant``.
    """

    day: date
    service: str
    dimension: str
    limit: int
    distinct: int
    folded: int
    requests: int
    tokens: int


@dataclass(frozen=True, slots=True)
class DayQuality:
    """Counts of one day's ingestion, and billed totals summed straight from the records.

    ``records`` are the day's unique records; the totals let the store check that ``usage_hourly``
    adds up to the same numbers.  ``prompt_*`` and ``completion_*`` count where each record's billed
    numbers came from (:data:`SOURCES`); ``not_billed`` failed calls billed nothing; ``uncertain``
    timeouts billed from the recount; ``status_*`` count records by outcome.  ``loss_markers`` are
    the loss markers the services' loggers wrote for the day, ``lost_records`` the records they say
    were lost (never in the totals: the day's bill is short by them; see :class:`LossEntry`).
    ``folded_values`` users and tenants over the cardinality limit were folded into ``(other)``,
    with ``folded_requests`` requests (still in the totals; see :class:`FoldEntry`).
    ``provisional`` days were loaded by an intraday run (``llm_usage_hourly``) from the records
    logged until ``through`` (UTC); the daily run replaces them with the final day.
    """

    day: date
    records: int
    prompt_tokens: int
    completion_tokens: int
    files: int = 0
    bytes: int = 0
    lines: int = 0
    out_of_day: int = 0
    duplicates: int = 0
    partial_lines: int = 0
    blank_lines: int = 0
    quarantined: int = 0
    legacy_records: int = 0
    recounted: int = 0
    not_recountable: int = 0
    unknown_model: int = 0
    recount_errors: int = 0
    drift_records: int = 0
    prompt_reported: int = 0
    prompt_recount: int = 0
    prompt_estimate: int = 0
    prompt_missing: int = 0
    unpriced_records: int = 0
    completion_reported: int = 0
    completion_recount: int = 0
    completion_estimate: int = 0
    completion_missing: int = 0
    not_billed: int = 0
    uncertain: int = 0
    status_error: int = 0
    status_timeout: int = 0
    status_abandoned: int = 0
    loss_markers: int = 0
    lost_records: int = 0
    folded_values: int = 0
    folded_requests: int = 0
    provisional: bool = False
    through: datetime | None = None


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One ingestion run of one day (the ledger keeps every run; it is never replaced).

    ``sources`` maps each file that contributed records to how many: the evidence a later re-run of
    the day is compared against (a load never replaces a day with fewer records or files unless
    forced; ``forced`` says it was).
    """

    run_id: str
    day: date
    files: int
    bytes: int
    records: int
    quarantined: int
    partial_lines: int
    duplicates: int
    recounted: int
    durations: Mapping[str, float] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)
    sources: Mapping[str, int] = field(default_factory=dict)
    forced: bool = False


@dataclass(frozen=True)
class DayLoad:
    """Everything one day's load writes; :meth:`UsageStore.load_day` replaces the day with it."""

    day: date
    hourly: Sequence[HourlyRow]
    reconciliation: Sequence[ReconciliationRow]
    top_requests: Sequence[TopRequest]
    quality: DayQuality
    quarantine: Sequence[QuarantineEntry] = ()
    ledger: LedgerEntry | None = None
    timezone: str = "Asia/Shanghai"
    digests: Sequence[PromptDigestRow] = ()
    losses: Sequence[LossEntry] = ()
    folds: Sequence[FoldEntry] = ()


@dataclass(frozen=True)
class Totals:
    """Summed usage (billed numbers) with cost per currency; ``unpriced_requests`` had no price."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    recounted_prompt_tokens: int = 0
    recounted_completion_tokens: int = 0
    estimated_prompt_tokens: int = 0
    estimated_completion_tokens: int = 0
    cost: Mapping[str, Decimal] = field(default_factory=dict)
    unpriced_requests: int = 0
    uncertain_requests: int = 0

    @property
    def total_tokens(self) -> int:
        """Billed prompt + completion tokens."""
        return self.prompt_tokens + self.completion_tokens


def _check_declaration() -> None:
    names = {f.name for f in fields(HourlyRow)}
    if names != set(HOURLY_COLUMNS) or not set(SUM_COLUMNS) <= {f.name for f in fields(Totals)}:
        raise AssertionError("HourlyRow / Totals and the usage_hourly column declaration disagree")


_check_declaration()
