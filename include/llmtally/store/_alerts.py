"""What the stores remember for alerts: budget thresholds fired, and messages sent per channel.

Both stores implement :class:`llmtally.budgets.BudgetState` (``claim``, ``fired_in``) and
:class:`llmtally.alerts.SentLog` (``sent_since``, ``record_sent``) with these rows; PostgreSQL keeps
them in ``budget_alerts`` and ``alert_log`` (migration 0007), so they survive restarts and re-runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from .._exceptions import ConfigError

__all__ = ["FiredThreshold", "check_claim", "check_sent"]


@dataclass(frozen=True, slots=True)
class FiredThreshold:
    """A budget threshold that fired: ``budget`` reached ``share >= threshold`` in the period
    starting ``period_start``, first seen at ``fired_at`` with ``spend`` (in ``unit``: ``tokens`` or
    a currency code) spent so far."""

    budget: str
    period_start: date
    threshold: float
    fired_at: datetime
    spend: Decimal
    unit: str
    share: float


def check_claim(budget: str, threshold: float, at: datetime, share: float) -> None:
    """Refuse a claim no store could keep (:class:`ConfigError`)."""
    if not budget:
        raise ConfigError("a budget claim needs the budget's name")
    if not math.isfinite(threshold) or threshold <= 0:
        raise ConfigError(f"budget {budget!r}: threshold {threshold!r} must be a number > 0")
    if not math.isfinite(share):
        raise ConfigError(f"budget {budget!r}: share {share!r} must be a finite number")
    if at.tzinfo is None:
        raise ConfigError(f"budget {budget!r}: fired_at must be an aware datetime, not {at!r}")


def check_sent(channel: str, at: datetime, findings: int) -> None:
    """Refuse a sent-log entry no store could keep (:class:`ConfigError`)."""
    if not channel:
        raise ConfigError("a sent-log entry needs the channel's name")
    if at.tzinfo is None:
        raise ConfigError(f"channel {channel!r}: sent_at must be an aware datetime, not {at!r}")
    if findings < 0:
        raise ConfigError(f"channel {channel!r}: findings must not be negative, not {findings}")
