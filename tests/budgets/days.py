"""Small day loads for the budget tests: usage on a day, by tenant, feature, user, model, service."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from llmtally._time import day_bounds
from llmtally.store import DayLoad, DayQuality, HourlyRow, ReconciliationRow, UsageStore


@dataclass(frozen=True)
class Use:
    """Billed usage of one group on one day (``cost`` in ``currency``; ``None``: no price)."""

    prompt: int
    completion: int
    cost: str | None = None
    currency: str | None = None
    feature: str = "chat"
    tenant: str = "acme"
    user: str = "u1"
    model: str = "qwen-plus"
    service: str = "api"
    requests: int = 1


def usage_day(day: date, tz: str, *uses: Use) -> DayLoad:
    """A consistent load of ``day`` in ``tz`` holding ``uses``, each in its own local hour."""
    start = day_bounds(day, tz)[0]
    hourly = [
        HourlyRow(
            day, start + timedelta(hours=i), u.model, u.feature, u.user, u.tenant, u.service, u.requests, u.prompt, u.completion,
            cost=None if u.cost is None else Decimal(u.cost), currency=u.currency,
            unpriced_requests=u.requests if u.cost is None else 0,
        )
        for i, u in enumerate(uses)
    ]  # fmt: skip
    records = sum(u.requests for u in uses)
    quality = DayQuality(
        day, records=records, prompt_tokens=sum(u.prompt for u in uses),
        completion_tokens=sum(u.completion for u in uses),
    )  # fmt: skip
    recon = [ReconciliationRow(day, "qwen-plus", "api", "", records)] if records else []
    return DayLoad(day, hourly, recon, [], quality, timezone=tz)


def load(store: UsageStore, tz: str, days: dict[date, list[Use]]) -> None:
    """Load every day of ``days`` into ``store`` (forced: a test may reload a day with less)."""
    for day, uses in days.items():
        store.load_day(usage_day(day, tz, *uses), force=True)
