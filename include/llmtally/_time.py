"""Time: the one report time zone, the one day rule, and the local hour every row is bucketed by.

Every part of llmtally that cuts days uses this module: the DAG's schedule, the parser (which
records belong to day D), the reconcile step (which ``usage_hourly`` bucket a record lands in) and
the report (which reads rows by their ``day`` column and shows hours in local time).

* **The time zone** comes from :func:`report_timezone`: ``LLMTALLY_TIMEZONE`` > ``timezone`` in
  llmtally.toml > ``Asia/Shanghai``.
* **Day D** is ``[local midnight of D, local midnight of D+1)`` in that zone (DST-safe: 23 or 25
  hours on change days).
* **Hours are local hours**: a record is bucketed by the start of the *local* hour it falls in,
  stored as an instant (``timestamptz``).  A local hour never straddles two local days, also in
  half-hour and 45-minute zones (Asia/Kolkata, Asia/Kathmandu, Australia/Adelaide), so summing a
  day's rows and reading its ``day`` column always agree.  In whole-hour zones this is the UTC hour.

Which day a DAG run reports (:func:`report_day`), first match wins:

1. the ``day`` param (``YYYY-MM-DD``), whatever the logical date;
2. the data interval's start, converted to the report time zone (``llm_usage_daily`` uses
   ``CronDataIntervalTimetable("0 2 * * *", timezone=TZ)``: the run whose interval starts at 02:00
   on D reports D and starts at 02:00 on D+1, two hours for late files);
3. ``run_after`` minus one day in the report time zone (API triggers with ``logical_date: null``
   have no data interval).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ._exceptions import ConfigError

__all__ = ["day_bounds", "local_day", "local_hour", "report_day", "report_timezone", "zone"]


@lru_cache(maxsize=64)
def zone(tz: str) -> ZoneInfo:
    """The :class:`ZoneInfo` of an IANA name; :class:`ConfigError` naming the fix when unknown."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"unknown time zone {tz!r}; use an IANA name such as 'Asia/Shanghai'") from exc


def report_timezone() -> str:
    """The report time zone: ``LLMTALLY_TIMEZONE`` > llmtally.toml ``timezone`` > ``Asia/Shanghai``.

    The one source of the zone for the DAG schedule, the day rule and the report; validated here.
    """
    from ._config import load_config

    tz = load_config().timezone  # the config applies the LLMTALLY_TIMEZONE override
    zone(tz)
    return tz


def _aware(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        raise ConfigError(f"naive datetime {dt!r}: Airflow context datetimes are UTC-aware")
    return dt


def report_day(
    tz: str,
    *,
    day_param: str | None = None,
    data_interval_start: datetime | None = None,
    run_after: datetime | None = None,
) -> date:
    """The day a run reports (see the module docstring for the rules)."""
    z = zone(tz)
    if day_param:
        try:
            return date.fromisoformat(str(day_param).strip())
        except ValueError as exc:
            raise ConfigError(f"day param {day_param!r} is not a date in YYYY-MM-DD form") from exc
    if data_interval_start is not None:
        return _aware(data_interval_start).astimezone(z).date()
    if run_after is not None:
        return (_aware(run_after).astimezone(z) - timedelta(days=1)).date()
    raise ConfigError("cannot tell which day to report: give the day param or a data interval")


def day_bounds(day: date, tz: str) -> tuple[datetime, datetime]:
    """``[start, end)`` of ``day`` in time zone ``tz``, as aware datetimes (DST-safe)."""
    z = zone(tz)
    start = datetime(day.year, day.month, day.day, tzinfo=z)
    nxt = day + timedelta(days=1)
    return start, datetime(nxt.year, nxt.month, nxt.day, tzinfo=z)


def local_day(ts: datetime, tz: str) -> date:
    """The local day an aware instant falls on."""
    return _aware(ts).astimezone(zone(tz)).date()


def local_hour(ts: datetime, tz: str) -> datetime:
    """The bucket of ``ts``: the start of its local (wall-clock) hour, as an aware UTC instant.

    Always on the same local day as ``ts`` and never after it.  The repeated hour of a DST
    fall-back gives two buckets (``fold`` is kept).  Where a transition falls inside a wall-clock
    hour (30- and 45-minute shifts: Australia/Lord_Howe, Pacific/Chatham), that hour's bucket starts
    where its wall clock says, or at ``ts`` itself when that start was skipped by the transition.
    """
    local = _aware(ts).astimezone(zone(tz))
    start = local.replace(minute=0, second=0, microsecond=0)
    bucket = start.astimezone(UTC)
    if bucket > ts:  # the wall-clock start lies in a gap: read it with the other offset
        bucket = start.replace(fold=1 - start.fold).astimezone(UTC)
    return min(bucket, ts.astimezone(UTC))
