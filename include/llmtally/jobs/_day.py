"""Which calendar day a DAG run reports: one pure function, tested on its own.

``llm_usage_daily`` uses ``CronDataIntervalTimetable("0 2 * * *", timezone=TZ)``: the scheduled (and
backfilled) run whose data interval starts at 02:00 on day D (local time) reports day D and starts
at 02:00 on D+1, leaving two hours for late log files.  Its logical date is D 02:00 local.

Rules, first match wins:

1. the ``day`` param (``YYYY-MM-DD``), whatever the logical date;
2. the data interval's start, converted to the report time zone;
3. ``run_after`` minus one day in the report time zone (API triggers with ``logical_date: null``
   have no data interval).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .._exceptions import ConfigError

__all__ = ["day_bounds", "report_day"]


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"unknown time zone {tz!r}; use an IANA name such as 'Asia/Shanghai'") from exc


def report_day(
    tz: str,
    *,
    day_param: str | None = None,
    data_interval_start: datetime | None = None,
    run_after: datetime | None = None,
) -> date:
    """The day a run reports (see the module docstring for the rules)."""
    zone = _zone(tz)
    if day_param:
        try:
            return date.fromisoformat(str(day_param).strip())
        except ValueError as exc:
            raise ConfigError(f"day param {day_param!r} is not a date in YYYY-MM-DD form") from exc
    if data_interval_start is not None:
        return _aware(data_interval_start).astimezone(zone).date()
    if run_after is not None:
        return (_aware(run_after).astimezone(zone) - timedelta(days=1)).date()
    raise ConfigError("cannot tell which day to report: give the day param or a data interval")


def _aware(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        raise ConfigError(f"naive datetime {dt!r}: Airflow context datetimes are UTC-aware")
    return dt


def day_bounds(day: date, tz: str) -> tuple[datetime, datetime]:
    """``[start, end)`` of ``day`` in time zone ``tz``, as aware datetimes (DST-safe)."""
    zone = _zone(tz)
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    nxt = day + timedelta(days=1)
    return start, datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone)
