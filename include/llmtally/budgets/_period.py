"""Budget periods: the local day, week (Monday to Sunday) or calendar month a moment falls in.

Periods are whole local days of the report time zone (:mod:`llmtally._time`), so a period's spend
is the sum of its days' ``day`` column, as every other reader cuts days; its length is measured
between local midnights (DST-safe: a month with a change day is an hour shorter or longer).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from .._exceptions import ConfigError
from .._time import day_bounds, local_day

__all__ = ["Period", "period_of"]


@dataclass(frozen=True)
class Period:
    """The days ``[first, last]`` of one budget period, and its instants ``[start, end)``."""

    kind: str
    first: date
    last: date
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        """How long the period is."""
        return (self.end - self.start).total_seconds()

    def elapsed(self, now: datetime) -> float:
        """Seconds of the period before ``now`` (0 before it starts, its length after it ends)."""
        return min(max((now - self.start).total_seconds(), 0.0), self.seconds)


def _first(kind: str, day: date) -> tuple[date, date]:
    if kind == "day":
        return day, day
    if kind == "week":
        monday = day - timedelta(days=day.weekday())
        return monday, monday + timedelta(days=6)
    if kind == "month":
        first = day.replace(day=1)
        following = date(first.year + (first.month == 12), first.month % 12 + 1, 1)
        return first, following - timedelta(days=1)
    raise ConfigError(f"unknown budget period {kind!r}; use day, week or month")


def period_of(kind: str, now: datetime, tz: str) -> Period:
    """The ``kind`` period (``day`` | ``week`` | ``month``) in ``tz`` that the moment just before
    ``now`` falls in: a ``now`` at local midnight is the end of the day before, so a check run at
    the cut of a day (or a report of a day, evaluated at its end) sees that day's period."""
    day = local_day(now - timedelta(microseconds=1), tz)
    first, last = _first(kind, day)
    return Period(kind, first, last, day_bounds(first, tz)[0], day_bounds(last, tz)[1])
