"""Read what a daily report needs from the aggregates in PostgreSQL, never from raw logs.

Everything is read in one ``REPEATABLE READ READ ONLY`` transaction, so a report is consistent even
while the pipeline reloads a day.  Days are cut in the report's time zone from the UTC ``hour``
buckets of ``usage_hourly`` (``hour AT TIME ZONE tz``), so the report does not depend on the zone
the pipeline loaded with.  ``''`` in a dimension means "not given".
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from .._exceptions import StorageError
from ..jobs._day import day_bounds

__all__ = [
    "DailyUsage",
    "DigestCount",
    "HourUsage",
    "ReportData",
    "TopRequestRow",
    "UserDay",
    "connect",
    "fetch_feature_usage",
    "fetch_report_data",
]


@dataclass(frozen=True, slots=True)
class DailyUsage:
    """Usage of one local day for one (feature, model, service, currency) group."""

    day: date
    feature: str
    model: str
    service: str
    currency: str | None
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    cost: Decimal | None
    unpriced_requests: int

    @property
    def total_tokens(self) -> int:
        """Billed prompt + completion tokens."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class HourUsage:
    """Usage of one local hour (``hour`` is naive local time)."""

    hour: datetime
    requests: int
    total_tokens: int


@dataclass(frozen=True, slots=True)
class UserDay:
    """One user's usage on one local day, per currency of its cost."""

    day: date
    user_id: str
    currency: str | None
    requests: int
    total_tokens: int
    cost: Decimal | None


@dataclass(frozen=True, slots=True)
class TopRequestRow:
    """One of the day's largest requests: digest, tags and counts, never text."""

    rank: int
    ts: datetime
    model: str
    service: str
    feature: str
    user_id: str
    prompt_sha256: str
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal | None
    currency: str | None
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        """Billed prompt + completion tokens."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class DigestCount:
    """How often one prompt digest was sent on the day, and when it peaked."""

    prompt_sha256: str
    feature: str
    requests: int
    total_tokens: int
    first_ts: datetime | None = None
    last_ts: datetime | None = None


@dataclass(frozen=True)
class ReportData:
    """Everything read for the report of ``day``: ``start`` is the first day of the history window."""

    day: date
    timezone: str
    start: date
    daily: tuple[DailyUsage, ...]
    hourly: tuple[HourUsage, ...]
    users: tuple[UserDay, ...]
    top_requests: tuple[TopRequestRow, ...]
    digests: tuple[DigestCount, ...]
    reconciliation: tuple[Mapping[str, Any], ...]
    earlier_fingerprints: tuple[tuple[str, str, date, str], ...] = ()
    """``(model, service, day, fingerprint)`` of recounts in the week before ``day``."""


def _schema() -> str:
    from ..store import schema_from_env

    return schema_from_env()


@contextmanager
def connect(conn_or_dsn: Any) -> Iterator[Any]:
    """Yield a psycopg connection: the one given (left open), or a new one for a DSN (closed after)."""
    import psycopg

    if isinstance(conn_or_dsn, str):
        try:
            conn = psycopg.connect(conn_or_dsn)
        except psycopg.Error as exc:
            raise StorageError(f"cannot connect to the aggregate database: {exc}") from exc
        try:
            yield conn
        finally:
            conn.close()
    else:
        yield conn_or_dsn


_DAILY = """
SELECT (hour AT TIME ZONE %(tz)s)::date AS day, feature, model, service, currency,
       SUM(requests), SUM(prompt_tokens), SUM(completion_tokens), SUM(cached_tokens),
       SUM(reasoning_tokens), SUM(cost), SUM(unpriced_requests)
FROM {s}.usage_hourly WHERE hour >= %(lo)s AND hour < %(hi)s
GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
"""
_HOURLY = """
SELECT date_trunc('hour', hour AT TIME ZONE %(tz)s) AS h, SUM(requests),
       SUM(prompt_tokens + completion_tokens)
FROM {s}.usage_hourly WHERE hour >= %(lo)s AND hour < %(hi)s GROUP BY 1 ORDER BY 1
"""
_USERS = """
SELECT (hour AT TIME ZONE %(tz)s)::date AS day, user_id, currency, SUM(requests),
       SUM(prompt_tokens + completion_tokens), SUM(cost)
FROM {s}.usage_hourly WHERE hour >= %(ulo)s AND hour < %(hi)s GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""
_TOP = """
SELECT rank, ts, model, service, feature, user_id, prompt_sha256, prompt_tokens, completion_tokens,
       cost, currency, tags
FROM {s}.top_requests WHERE day = %(day)s ORDER BY rank
"""
_DIGESTS = """
SELECT prompt_sha256, feature, SUM(requests), SUM(total_tokens), MIN(first_ts), MAX(last_ts)
FROM {s}.prompt_digests WHERE day = %(day)s GROUP BY 1, 2
"""
_RECON = "SELECT * FROM {s}.reconciliation WHERE day = %(day)s ORDER BY model, service, fingerprint"
_EARLIER_FPS = """
SELECT DISTINCT model, service, day, fingerprint FROM {s}.reconciliation
WHERE day < %(day)s AND day >= %(day)s - 7 AND recounted > 0 AND fingerprint <> ''
ORDER BY model, service, day, fingerprint
"""


def _daily(r: tuple[Any, ...]) -> DailyUsage:
    return DailyUsage(
        day=r[0],
        feature=r[1],
        model=r[2],
        service=r[3],
        currency=r[4],
        requests=int(r[5] or 0),
        prompt_tokens=int(r[6] or 0),
        completion_tokens=int(r[7] or 0),
        cached_tokens=int(r[8] or 0),
        reasoning_tokens=int(r[9] or 0),
        cost=r[10],
        unpriced_requests=int(r[11] or 0),
    )


def _top(r: tuple[Any, ...]) -> TopRequestRow:
    return TopRequestRow(
        rank=int(r[0]),
        ts=r[1],
        model=r[2],
        service=r[3],
        feature=r[4],
        user_id=r[5],
        prompt_sha256=r[6],
        prompt_tokens=int(r[7]),
        completion_tokens=int(r[8]),
        cost=r[9],
        currency=r[10],
        tags={str(k): str(v) for k, v in dict(r[11] or {}).items()},
    )


def fetch_report_data(
    conn_or_dsn: Any, day: date, timezone: str, *, history_days: int = 35, user_days: int = 15
) -> ReportData:
    """Read the aggregates for the report of ``day`` and the ``history_days`` before it."""
    import psycopg
    from psycopg import sql

    start = day - timedelta(days=history_days)
    lo, _ = day_bounds(start, timezone)
    ulo, _ = day_bounds(day - timedelta(days=user_days), timezone)
    _, hi = day_bounds(day, timezone)
    params = {"tz": timezone, "lo": lo, "hi": hi, "ulo": ulo, "day": day}
    schema = _schema()

    def q(cur: Any, text: str) -> list[tuple[Any, ...]]:
        cur.execute(sql.SQL(text).format(s=sql.Identifier(schema)), params)
        return list(cur.fetchall())

    with connect(conn_or_dsn) as conn:
        try:
            idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            with conn.transaction(), conn.cursor() as cur:
                if idle:  # a consistent snapshot (not possible inside the caller's transaction)
                    cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                daily = tuple(_daily(r) for r in q(cur, _DAILY))
                hourly = tuple(HourUsage(r[0], int(r[1]), int(r[2])) for r in q(cur, _HOURLY))
                users = tuple(UserDay(r[0], r[1], r[2], int(r[3]), int(r[4]), r[5]) for r in q(cur, _USERS))
                top = tuple(_top(r) for r in q(cur, _TOP))
                digests = tuple(
                    DigestCount(r[0], r[1], int(r[2]), int(r[3] or 0), r[4], r[5]) for r in q(cur, _DIGESTS)
                )
                cur.execute(sql.SQL(_RECON).format(s=sql.Identifier(schema)), params)
                names = [d.name for d in cur.description or ()]
                recon = tuple(dict(zip(names, row, strict=True)) for row in cur.fetchall())
                earlier = tuple((r[0], r[1], r[2], r[3]) for r in q(cur, _EARLIER_FPS))
        except psycopg.Error as exc:
            raise StorageError(
                f"cannot read the aggregates for {day} from schema {schema!r}: {exc}; "
                "has the pipeline's migration run (llmtally.store)?"
            ) from exc
    return ReportData(day, timezone, start, daily, hourly, users, top, digests, recon, earlier)


_FEATURE = """
SELECT (hour AT TIME ZONE %(tz)s)::date AS day, feature, model, service, currency,
       SUM(requests), SUM(prompt_tokens), SUM(completion_tokens), SUM(cached_tokens),
       SUM(reasoning_tokens), SUM(cost), SUM(unpriced_requests)
FROM {s}.usage_hourly
WHERE hour >= %(lo)s AND hour < %(hi)s AND feature = %(feature)s AND model = ANY(%(models)s)
GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
"""


def fetch_feature_usage(
    conn_or_dsn: Any, feature: str, models: Sequence[str], first: date, last: date, timezone: str
) -> list[DailyUsage]:
    """Daily usage of ``feature`` on ``models`` from local day ``first`` to ``last`` inclusive."""
    import psycopg
    from psycopg import sql

    lo, _ = day_bounds(first, timezone)
    _, hi = day_bounds(last, timezone)
    params = {"tz": timezone, "lo": lo, "hi": hi, "feature": feature, "models": list(models)}
    with connect(conn_or_dsn) as conn:
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL(_FEATURE).format(s=sql.Identifier(_schema())), params)
                return [_daily(r) for r in cur.fetchall()]
        except psycopg.Error as exc:
            raise StorageError(f"cannot read the usage of feature {feature!r}: {exc}") from exc
