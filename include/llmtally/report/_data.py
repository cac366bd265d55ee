"""Read what a daily report needs through the store's query layer, never from raw logs.

Every read goes through a :class:`~llmtally.store.UsageStore` (``grouped``,
``reconciliation_between``, ``top_requests``, ``prompt_digests``, ``quality``, ``losses``,
``folds``) inside one
:meth:`~llmtally.store.UsageStore.snapshot`, so a report is consistent even while the pipeline
reloads a day (PostgreSQL: one ``REPEATABLE READ READ ONLY`` transaction).  Days are the rows'
``day`` column, the local day the pipeline bucketed them in; hours are the stored local-hour starts
shown in the report's time zone.  ``''`` in a dimension means "not given".  There is no SQL here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .._exceptions import ConfigError, StorageError
from .._time import zone
from ..store import (
    SUM_COLUMNS,
    FoldEntry,
    LossEntry,
    PromptDigestRow,
    ReconciliationRow,
    TopRequest,
    UsageStore,
    fold,
)
from ..store._base import GroupedRow

if TYPE_CHECKING:
    from typing import TypeAlias

    import psycopg

    StoreSource: TypeAlias = UsageStore | str | psycopg.Connection[Any]
    """What the report reads from: a store, a DSN, or a psycopg connection the caller owns."""

__all__ = [
    "DailyUsage",
    "HourUsage",
    "OutcomeUsage",
    "ReportData",
    "ServiceHour",
    "UserDay",
    "fetch_feature_usage",
    "fetch_report_data",
    "hours_of",
    "report_store",
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
    """Usage of one local hour: ``hour`` is naive local time, ``day`` the rows' day column."""

    hour: datetime
    requests: int
    total_tokens: int
    day: date | None = None

    @property
    def local_day(self) -> date:
        """The day the hour belongs to (its rows' ``day``; the hour's date when not given)."""
        return self.day if self.day is not None else self.hour.date()


@dataclass(frozen=True, slots=True)
class ServiceHour:
    """Requests and billed tokens of one local hour (naive local start) for one (service, model)."""

    day: date
    hour: datetime
    service: str
    model: str
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
class OutcomeUsage:
    """Requests of one local day for one (service, model) by how the calls ended.

    ``status`` is the outcome (ok | error | timeout | abandoned | other), ``http_status`` the HTTP
    status (0: not known); ``uncertain_requests`` were billed from the recount of a timeout.
    """

    day: date
    service: str
    model: str
    status: str
    http_status: int
    requests: int
    total_tokens: int
    uncertain_requests: int = 0


@dataclass(frozen=True)
class ReportData:
    """Everything read for the report of ``day``: ``start`` is the first day of the history window."""

    day: date
    timezone: str
    start: date
    daily: tuple[DailyUsage, ...]
    hourly: tuple[HourUsage, ...]
    users: tuple[UserDay, ...]
    top_requests: tuple[TopRequest, ...]
    digests: tuple[PromptDigestRow, ...]
    reconciliation: tuple[Mapping[str, Any], ...]
    earlier_fingerprints: tuple[tuple[str, str, date, str], ...] = ()
    """``(model, service, day, fingerprint)`` of recounts in the week before ``day``."""
    outcomes: tuple[OutcomeUsage, ...] = ()
    """Requests by outcome and HTTP status per (day, service, model) over the history window."""
    losses: tuple[LossEntry, ...] = ()
    """What the services' loggers lost on ``day`` and wrote down (merged loss markers)."""
    folds: tuple[FoldEntry, ...] = ()
    """Users or tenants over the cardinality limit on ``day``, folded into ``(other)``."""
    lost_records: int = 0
    """Records lost on ``day`` by the loggers' count (``quality.lost_records``)."""
    service_hours: tuple[ServiceHour, ...] = ()
    """Hours by (service, model) over the history window: ``hourly`` split, for spotting silence."""
    provisional_through: datetime | None = None
    """Set when ``day`` is provisional (an intraday load of the records logged until then)."""


def _schema() -> str:
    from ..store import schema_from_env

    return schema_from_env()


@contextmanager
def report_store(source: StoreSource) -> Iterator[UsageStore]:
    """The store to read: ``source`` itself; a :class:`~llmtally.store.PostgresStore` over a psycopg
    connection the caller owns (left open); or one opened for a DSN (closed after).  The schema of
    the last two is ``LLMTALLY_DB_SCHEMA`` (default ``llmtally``); nothing is migrated."""
    if isinstance(source, UsageStore):
        yield source
        return
    import psycopg

    from ..store import PostgresStore

    if isinstance(source, str):
        with PostgresStore(source, schema=_schema(), migrate=False) as store:
            yield store
    elif isinstance(source, psycopg.Connection):
        with PostgresStore.from_connection(source, schema=_schema()) as borrowed:
            yield borrowed
    else:
        raise ConfigError(
            f"cannot read a report from a {type(source).__name__}: give a UsageStore, a psycopg "
            "connection or a PostgreSQL DSN"
        )


def _sums(values: Sequence[int]) -> dict[str, int]:
    return {c: int(v or 0) for c, v in zip(SUM_COLUMNS, values, strict=True)}


def _daily(rows: Iterable[GroupedRow]) -> list[DailyUsage]:
    out = []
    for (day, feature, model, service), currency, values, cost in rows:
        s = _sums(values)
        out.append(
            DailyUsage(
                day=day, feature=feature, model=model, service=service, currency=currency,
                requests=s["requests"], prompt_tokens=s["prompt_tokens"],
                completion_tokens=s["completion_tokens"], cached_tokens=s["cached_tokens"],
                reasoning_tokens=s["reasoning_tokens"], cost=cost, unpriced_requests=s["unpriced_requests"],
            )
        )  # fmt: skip
    return sorted(out, key=lambda r: (r.day, r.feature, r.model, r.service, r.currency or ""))


def _hours(
    store: UsageStore, start: date, end: date, tz: str
) -> tuple[tuple[HourUsage, ...], tuple[ServiceHour, ...]]:
    """The local hours, in all and by (service, model), from one read."""
    z = zone(tz)
    acc: dict[tuple[date, datetime, str, str], list[int]] = {}
    keys = ["day", "hour", "service", "model"]
    for (day, hour, service, model), totals in fold(store.grouped(keys, start, end)).items():
        local = hour.astimezone(z).replace(tzinfo=None, fold=0)  # a DST repeated hour: one row
        slot = acc.setdefault((day, local, service, model), [0, 0])
        slot[0] += totals.requests
        slot[1] += totals.total_tokens
    return hours_of(acc)


def hours_of(
    acc: Mapping[tuple[date, datetime, str, str], Sequence[int]],
) -> tuple[tuple[HourUsage, ...], tuple[ServiceHour, ...]]:
    """``hourly`` and ``service_hours`` from ``(day, local hour, service, model) -> (requests, tokens)``."""
    total: dict[tuple[date, datetime], list[int]] = {}
    for (day, hour, _, _), (requests, tokens) in acc.items():
        slot = total.setdefault((day, hour), [0, 0])
        slot[0] += requests
        slot[1] += tokens
    return (
        tuple(HourUsage(h, r, t, d) for (d, h), (r, t) in sorted(total.items())),
        tuple(ServiceHour(d, h, s, m, r, t) for (d, h, s, m), (r, t) in sorted(acc.items())),
    )


def _users(store: UsageStore, start: date, end: date) -> tuple[UserDay, ...]:
    out = []
    for (day, user), currency, values, cost in store.grouped(["day", "user_id"], start, end):
        s = _sums(values)
        out.append(
            UserDay(day, user, currency, s["requests"], s["prompt_tokens"] + s["completion_tokens"], cost)
        )
    return tuple(sorted(out, key=lambda u: (u.day, u.user_id, u.currency or "")))


def _outcomes(store: UsageStore, start: date, end: date) -> tuple[OutcomeUsage, ...]:
    keys = ["day", "service", "model", "status", "http_status"]
    return tuple(
        OutcomeUsage(day, service, model, status, int(http), t.requests, t.total_tokens, t.uncertain_requests)
        for (day, service, model, status, http), t in sorted(fold(store.grouped(keys, start, end)).items())
    )


def _recon(r: ReconciliationRow) -> dict[str, Any]:
    return {**asdict(r), "estimate_mape_pct": r.estimate_mape_pct, "estimate_bias_pct": r.estimate_bias_pct}


def _read(store: UsageStore, day: date, tz: str, start: date, users_from: date) -> ReportData:
    week = store.reconciliation_between(day - timedelta(days=7), day - timedelta(days=1))
    earlier = sorted(
        {(r.model, r.service, r.day, r.fingerprint) for r in week if r.recounted and r.fingerprint}
    )
    losses = tuple(store.losses(day))
    quality = store.quality(day)
    hourly, service_hours = _hours(store, start, day, tz)
    return ReportData(
        day=day,
        timezone=tz,
        start=start,
        daily=tuple(_daily(store.grouped(["day", "feature", "model", "service"], start, day))),
        hourly=hourly,
        users=_users(store, users_from, day),
        top_requests=tuple(store.top_requests(day)),
        digests=tuple(store.prompt_digests(day)),
        reconciliation=tuple(_recon(r) for r in store.reconciliation(day)),
        earlier_fingerprints=tuple(earlier),
        outcomes=_outcomes(store, start, day),
        losses=losses,
        folds=tuple(store.folds(day)),
        lost_records=quality.lost_records if quality is not None else sum(e.records for e in losses),
        service_hours=service_hours,
        provisional_through=quality.through if quality is not None and quality.provisional else None,
    )


def _context(store: UsageStore, what: str, exc: StorageError) -> StorageError:
    schema = getattr(store, "schema", None)
    where = f" from schema {schema!r}" if schema else ""
    return StorageError(
        f"cannot read {what}{where}: {exc}; has the pipeline's migration run (llmtally db migrate)?"
    )


def fetch_report_data(
    source: StoreSource,
    day: date,
    timezone: str,
    *,
    history_days: int = 35,
    user_days: int = 15,
) -> ReportData:
    """Read the aggregates for the report of ``day`` and the ``history_days`` before it, in one
    snapshot of ``source`` (a store, a DSN or a psycopg connection: see :func:`report_store`)."""
    zone(timezone)
    start = day - timedelta(days=history_days)
    with report_store(source) as store:
        try:
            with store.snapshot():
                return _read(store, day, timezone, start, day - timedelta(days=user_days))
        except StorageError as exc:
            raise _context(store, f"the aggregates for {day}", exc) from exc


def fetch_feature_usage(
    source: StoreSource, feature: str, models: Sequence[str], first: date, last: date
) -> list[DailyUsage]:
    """Daily usage of ``feature`` on ``models`` from local day ``first`` to ``last`` inclusive."""
    with report_store(source) as store:
        try:
            with store.snapshot():
                rows = store.grouped(
                    ["day", "feature", "model", "service"],
                    first,
                    last,
                    {"feature": feature, "model": list(models)},
                )
        except StorageError as exc:
            raise _context(store, f"the usage of feature {feature!r}", exc) from exc
    return _daily(rows)
