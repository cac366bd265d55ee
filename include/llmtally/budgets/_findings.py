"""Budget alerts: each threshold fires once per period, claimed in a :class:`BudgetState`.

:func:`budget_findings` claims every threshold a status has reached, so none fires again that
period, and makes one :class:`~llmtally.alerts.Finding` when the run claimed the highest of them: a
run that finds a budget past 80% and 95% at once sends one message (for 95%), and of two overlapping
runs that see the same spend only the one that claimed the highest threshold sends.  Both stores
are budget states (:class:`~llmtally.store.PostgresStore` in ``budget_alerts``, so claims survive
restarts and re-runs and a claim is won by one session only; :class:`~llmtally.store.MemoryStore`
in memory).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..store import FiredThreshold
from ._config import Budget
from ._evaluate import BudgetStatus
from ._words import LANGS, budget_words, notes, projection, spend_line, threshold

if TYPE_CHECKING:
    from ..alerts import Finding, Severity

__all__ = ["BudgetState", "budget_findings", "severity_of"]

_DATA_KEYS = ("match", "period", "period_start", "period_end", "unit", "limit", "spend", "share", "projected",
              "runs_out", "unconverted", "unpriced_requests")  # fmt: skip


@runtime_checkable
class BudgetState(Protocol):
    """Remembers which budget thresholds fired in which period (shared by every run)."""

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
        """Fire ``threshold`` of ``budget`` for the period starting ``period_start``: ``True`` for
        the first claimer only, atomically (a second or concurrent claim gets ``False``)."""
        ...

    def fired_in(self, budget: str, period_start: date) -> list[FiredThreshold]:
        """The thresholds of ``budget`` fired in the period starting ``period_start``, lowest first."""
        ...


def severity_of(t: float) -> Severity:
    """``critical`` from 100% of the limit, ``warning`` from 95%, else ``info``."""
    return "critical" if t >= 1.0 else "warning" if t >= 0.95 else "info"


def _finding(status: BudgetStatus, top: float, claimed: list[float]) -> Finding:
    from ..alerts import Finding

    b = status.budget
    words = {lang: budget_words(lang) for lang in LANGS}
    text = {
        lang: ("；" if lang == "zh" else "; ").join(
            [spend_line(status, lang), projection(status, lang), *notes(status, lang)]
        )
        for lang in LANGS
    }
    raw = status.as_dict()
    return Finding(
        kind="budget",
        key=f"budget:{b.name}:{status.period.first.isoformat()}:{threshold(top)}",
        severity=severity_of(top),
        title={lang: words[lang]["title"].format(name=b.name, threshold=threshold(top)) for lang in LANGS},
        text=text,
        data={
            "budget": b.name,
            "threshold": top,
            "claimed": list(claimed),
            **{k: raw[k] for k in _DATA_KEYS},
        },
    )


def budget_findings(
    statuses: Iterable[BudgetStatus], state: BudgetState, now: datetime | None = None
) -> dict[Budget, list[Finding]]:
    """Claim the thresholds each status reached; the findings to send, by budget (a caller sends
    each to its budget's ``channels``).  A budget has one finding when this run claimed the highest
    threshold it reached (``data["claimed"]``: every threshold this run claimed); budgets with
    nothing new are left out.  ``now`` is when they fired (default: each status's ``through``)."""
    out: dict[Budget, list[Finding]] = {}
    for status in statuses:
        b = status.budget
        at = now or status.through
        claimed = [
            t
            for t in status.crossed  # every one is claimed, so none fires again this period
            if state.claim(
                b.name, status.period.first, t, at=at, spend=status.spend, unit=b.unit, share=status.share
            )
        ]
        if claimed and claimed[-1] == status.crossed[-1]:
            out.setdefault(b, []).append(_finding(status, claimed[-1], claimed))
    return out
