"""What the store holds: the rows one day's load writes, and the totals its queries return.

No row type has a field for prompt or completion text: digests, tags and counts only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

__all__ = [
    "DIMENSIONS",
    "DayLoad",
    "DayQuality",
    "HourlyRow",
    "LedgerEntry",
    "PromptDigestRow",
    "QuarantineEntry",
    "ReconciliationRow",
    "TopRequest",
    "Totals",
]

DIMENSIONS = ("model", "feature", "user_id", "tenant", "service")
"""The dimensions of ``usage_hourly`` besides the hour (``''`` means "not given")."""


@dataclass(frozen=True, slots=True)
class HourlyRow:
    """One ``usage_hourly`` row: usage of one UTC hour of day ``day`` for one dimension combination.

    Token columns are billed numbers (reported, else exact recount, else the service's estimate);
    ``recounted_*`` / ``estimated_*`` sum those numbers where they exist.  ``cost`` sums the priced
    requests (``None`` when none was priced); ``unpriced_requests`` had no known price.
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


@dataclass(frozen=True, slots=True)
class ReconciliationRow:
    """Reported vs recounted vs estimated for one (model, service, tokenizer fingerprint) of a day.

    ``drift_records`` counts records whose reported prompt or completion tokens differ from the exact
    recount; the ``*_drift_tokens`` sums are reported minus recount.  The estimate error compares the
    service's estimate of prompt+completion tokens with the truth (reported, else recount) over
    ``estimated`` records: ``estimate_ape_sum`` (sum of |est-true|/true) and ``estimate_pe_sum``
    (signed), so groups can be re-aggregated; MAPE and bias are those sums over ``estimated``, in %.
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
class DayQuality:
    """Counts of one day's ingestion, and billed totals summed straight from the records.

    ``records`` are the day's unique records; the totals let the store check that ``usage_hourly``
    adds up to the same numbers.  ``billed_*`` count where each record's billed prompt number came
    from (reported usage, exact recount, the service's estimate, or nothing: billed as 0).
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
    billed_reported: int = 0
    billed_recount: int = 0
    billed_estimate: int = 0
    billed_missing: int = 0
    unpriced_records: int = 0


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One ingestion run of one day (the ledger keeps every run; it is never replaced)."""

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

    @property
    def total_tokens(self) -> int:
        """Billed prompt + completion tokens."""
        return self.prompt_tokens + self.completion_tokens
