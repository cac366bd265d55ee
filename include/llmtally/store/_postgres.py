"""The PostgreSQL store (psycopg 3): migrations, atomic day loads with checks, the report's queries.

A load of day D runs in one transaction: lock D, refuse it when it brings less evidence than the
day holds (:func:`~llmtally.store._base.check_evidence`), delete D from every day table, COPY the
new rows, sum them into ``usage_daily``, record the ledger entry, run the data-quality checks,
commit.  Any error rolls back, so readers see the old day or the new one, never a mix.  A reader
that needs several queries to agree (the report) runs them in :meth:`PostgresStore.snapshot`, one
``REPEATABLE READ READ ONLY`` transaction.  Driver errors become :class:`StorageError`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import astuple, fields
from datetime import UTC, date, datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Self

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

from .._exceptions import ConfigError, DataQualityError, StorageError
from ._alerts import FiredThreshold, check_claim, check_sent
from ._base import (
    SUM_COLUMNS,
    GroupedRow,
    StoreQueries,
    SummedRow,
    Where,
    check_evidence,
    check_keys,
    check_summed,
    check_totals,
    filters,
    raise_problems,
    totals_of,
)
from ._dsn import DEFAULT_SCHEMA
from ._migrations import MIGRATIONS
from ._rows import (
    DIMENSIONS,
    HOURLY_COLUMNS,
    KEY_COLUMNS,
    DayLoad,
    DayQuality,
    FoldEntry,
    HourlyRow,
    LedgerEntry,
    LossEntry,
    PromptDigestRow,
    QuarantineEntry,
    ReconciliationRow,
    TopRequest,
    Totals,
)

__all__ = ["PostgresStore"]

_LOCK_NS = 0x11A7  # advisory-lock namespace of llmtally
_DAY_TABLES = (
    "usage_hourly", "usage_daily", "reconciliation", "quality", "top_requests", "quarantine",
    "prompt_digests", "losses", "folds",
)  # fmt: skip
_HOURLY = list(HOURLY_COLUMNS)
_DAILY_KEY = sql.SQL(", ").join(map(sql.Identifier, ["day", *DIMENSIONS, "http_status", "currency"]))
_DAILY_SUMS = [*SUM_COLUMNS, "cost"]
_RECON = [f.name for f in fields(ReconciliationRow)]
_TOP = [f.name for f in fields(TopRequest)]
_QUAR = [f.name for f in fields(QuarantineEntry)]
_DIGEST = [f.name for f in fields(PromptDigestRow)]
_LOSS = [f.name for f in fields(LossEntry)]
_FOLD = [f.name for f in fields(FoldEntry)]
_FOLD_COLUMNS = ["distinct_values" if c == "distinct" else c for c in _FOLD]
_QUALITY = [f.name for f in fields(DayQuality)]
_LEDGER = [f.name for f in fields(LedgerEntry)]


def _rollup(schema: sql.Composable) -> sql.Composed:
    """Sum one day (``%s``) of ``usage_hourly`` into ``usage_daily`` (its old rows already deleted)."""
    sums = sql.SQL(", ").join(map(sql.Identifier, _DAILY_SUMS))
    summed = sql.SQL(", ").join(sql.SQL("sum({})").format(sql.Identifier(c)) for c in _DAILY_SUMS)
    return sql.SQL(
        "INSERT INTO {s}.usage_daily ({k}, {sums}) SELECT {k}, {summed} "
        "FROM {s}.usage_hourly WHERE day = %s GROUP BY {k}"
    ).format(s=schema, k=_DAILY_KEY, sums=sums, summed=summed)


def _table_for(keys: Sequence[str]) -> sql.Identifier:
    """``usage_daily`` unless the sums are by hour (the same sums: it is ``usage_hourly`` per day)."""
    return sql.Identifier("usage_hourly" if "hour" in keys else "usage_daily")


def _months(hours: Iterable[datetime]) -> list[tuple[datetime, datetime]]:
    firsts = {datetime(h.astimezone(UTC).year, h.astimezone(UTC).month, 1, tzinfo=UTC) for h in hours}
    out = []
    for first in sorted(firsts):
        nxt = datetime(first.year + (first.month == 12), first.month % 12 + 1, 1, tzinfo=UTC)
        out.append((first, nxt))
    return out


def _check_schema(schema: str) -> None:
    if not schema.isidentifier():
        raise ConfigError(f"schema name {schema!r} must be a plain identifier such as 'llmtally'")


class PostgresStore(StoreQueries):
    """Aggregates in PostgreSQL schema ``schema`` (default ``llmtally``), reached with ``dsn``.

    ``migrate=True`` applies pending migrations on connect.  Use as a context manager.  Over a
    connection the caller owns: :meth:`from_connection`.
    """

    def __init__(self, dsn: str, *, schema: str = DEFAULT_SCHEMA, migrate: bool = True) -> None:
        _check_schema(schema)
        try:
            conn = psycopg.connect(dsn, autocommit=True)
        except psycopg.Error as exc:
            raise StorageError(f"cannot connect to the usage database: {exc}".strip()) from exc
        self._attach(conn, schema, owned=True)
        if migrate:
            self.migrate()

    @classmethod
    def from_connection(
        cls, conn: psycopg.Connection[Any], *, schema: str = DEFAULT_SCHEMA, migrate: bool = False
    ) -> Self:
        """A store over a psycopg connection the caller owns: :meth:`close` leaves it open.

        Writes run in transactions of their own (savepoints inside a transaction the caller has
        open); run reads in :meth:`snapshot` so a connection without autocommit is left idle.
        """
        _check_schema(schema)
        store = cls.__new__(cls)
        store._attach(conn, schema, owned=False)
        if migrate:
            store.migrate()
        return store

    def _attach(self, conn: psycopg.Connection[Any], schema: str, *, owned: bool) -> None:
        self.schema = schema
        self._s = sql.Identifier(schema)
        self._conn = conn
        self._owned = owned

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (one from :meth:`from_connection` stays open)."""
        if self._owned:
            self._conn.close()

    def _cursor(self) -> psycopg.Cursor[tuple[Any, ...]]:
        return self._conn.cursor(row_factory=tuple_row)  # a borrowed connection may return dicts

    def _q(self, text: str, **idents: str) -> sql.Composed:
        return sql.SQL(text).format(s=self._s, **{k: sql.Identifier(v) for k, v in idents.items()})

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except (DataQualityError, StorageError, ConfigError):
            raise
        except psycopg.Error as exc:
            raise StorageError(f"{what} failed: {type(exc).__name__}: {exc}".strip()) from exc

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Run the reads inside in one ``REPEATABLE READ READ ONLY`` transaction: every query sees the
        same committed state, also while another session reloads a day.

        Nested in another snapshot, or in a transaction the caller opened on a borrowed connection,
        the reads join that transaction (a savepoint; its isolation level applies).
        """
        idle = self._conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with self._errors("opening a snapshot"), self._conn.transaction(), self._cursor() as cur:
            if idle:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield

    def _fetch(self, query: sql.Composed, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._errors("query"), self._cursor() as cur:
            cur.execute(query, params)
            return list(cur.fetchall())

    # ------------------------------------------------------------------ schema

    def migrate(self) -> list[str]:
        """Apply pending migrations (serialised by an advisory lock); returns the names applied."""
        applied: list[str] = []
        with self._errors("migration"), self._conn.transaction(), self._cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s, 0)", (_LOCK_NS,))
            cur.execute(self._q("CREATE SCHEMA IF NOT EXISTS {s}"))
            cur.execute(self._q(
                "CREATE TABLE IF NOT EXISTS {s}.schema_migrations "
                "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            ))  # fmt: skip
            cur.execute(self._q("SELECT name FROM {s}.schema_migrations"))
            done = {r[0] for r in cur.fetchall()}
            for name, text in MIGRATIONS:
                if name in done:
                    continue
                cur.execute(self._q(text))
                cur.execute(self._q("INSERT INTO {s}.schema_migrations (name) VALUES (%s)"), (name,))
                applied.append(name)
        return applied

    def _ensure_partitions(self, hours: Iterable[datetime]) -> None:
        months = _months(hours)
        if not months:
            return
        with self._errors("creating partitions"), self._conn.transaction(), self._cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s, 1)", (_LOCK_NS,))
            for start, end in months:
                query = sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {s}.{p} PARTITION OF {s}.usage_hourly "
                    "FOR VALUES FROM ({a}) TO ({b})"
                ).format(
                    s=self._s,
                    p=sql.Identifier(f"usage_hourly_p{start:%Y%m}"),
                    a=sql.Literal(start),
                    b=sql.Literal(end),
                )
                cur.execute(query)

    # ------------------------------------------------------------------ loading

    def _copy(
        self, cur: psycopg.Cursor[Any], table: str, cols: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> None:
        query = sql.SQL("COPY {s}.{t} ({c}) FROM STDIN").format(
            s=self._s, t=sql.Identifier(table), c=sql.SQL(", ").join(map(sql.Identifier, cols))
        )
        with cur.copy(query) as copy:
            for row in rows:
                copy.write_row(row)

    def load_day(self, load: DayLoad, *, force: bool = False) -> None:
        """Replace ``load.day`` atomically; the checks run before commit (see the module docstring)."""
        day = load.day
        for rows in (load.hourly, load.reconciliation, load.top_requests, load.quarantine, load.digests,
                     load.losses, load.folds):  # fmt: skip
            if any(r.day != day for r in rows):
                raise StorageError(f"rows for another day in the load of {day}")
        self._ensure_partitions(h.hour for h in load.hourly)
        with self._errors(f"loading {day}"), self._conn.transaction(), self._cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_NS, day.toordinal()))
            cur.execute(
                self._q("SELECT sources FROM {s}.ledger WHERE day = %s ORDER BY id DESC LIMIT 1"), (day,)
            )
            last = cur.fetchone()
            check_evidence(day, self._quality(cur, day), dict(last[0]) if last else {}, load, force=force)
            for table in _DAY_TABLES:
                cur.execute(self._q("DELETE FROM {s}.{t} WHERE day = %s", t=table), (day,))
            self._copy(cur, "usage_hourly", _HOURLY, ([getattr(h, c) for c in _HOURLY] for h in load.hourly))
            cur.execute(_rollup(self._s), (day,))
            self._copy(
                cur, "reconciliation", [*_RECON, "estimate_mape_pct", "estimate_bias_pct"],
                ((*astuple(r), r.estimate_mape_pct, r.estimate_bias_pct) for r in load.reconciliation),
            )  # fmt: skip
            self._copy(
                cur, "top_requests", [*_TOP[:-1], "total_tokens", "tags"],
                ((*astuple(t)[:-1], t.total_tokens, Jsonb(dict(t.tags))) for t in load.top_requests),
            )  # fmt: skip
            self._copy(cur, "quarantine", _QUAR, map(astuple, load.quarantine))
            self._copy(cur, "prompt_digests", _DIGEST, map(astuple, load.digests))
            self._copy(cur, "losses", _LOSS, ([getattr(e, c) for c in _LOSS] for e in load.losses))
            self._copy(cur, "folds", _FOLD_COLUMNS, map(astuple, load.folds))
            self._copy(cur, "quality", [*_QUALITY, "timezone"], [(*astuple(load.quality), load.timezone)])
            if load.ledger is not None:
                e = load.ledger
                row = {c: getattr(e, c) for c in _LEDGER}
                for c in ("durations", "details", "sources"):
                    row[c] = Jsonb(dict(row[c]))
                row["forced"] = force
                self._copy(cur, "ledger", _LEDGER, [[row[c] for c in _LEDGER]])
            raise_problems(day, self._problems(cur, day))

    def _problems(self, cur: psycopg.Cursor[Any], day: date) -> list[str]:
        sums = ", ".join(f"coalesce(sum({c}), 0)" for c in SUM_COLUMNS)
        cur.execute(self._q(f"SELECT {sums} FROM {{s}}.usage_hourly WHERE day = %s"), (day,))
        row = cur.fetchone()
        totals = totals_of(row) if row else Totals()
        quality = self._quality(cur, day)
        if quality is None:
            return ["no quality row"]
        neg = " OR ".join(f"{c} < 0" for c in SUM_COLUMNS)
        cur.execute(
            self._q(
                f"SELECT (SELECT count(*) FROM {{s}}.usage_hourly WHERE day = %s AND ({neg} OR cost < 0))"
                " + (SELECT count(*) FROM {s}.top_requests WHERE day = %s"
                " AND (prompt_tokens < 0 OR completion_tokens < 0)),"
                " (SELECT coalesce(sum(records), 0) FROM {s}.reconciliation WHERE day = %s)"
            ),
            (day, day, day),
        )
        negatives, recon = cur.fetchone() or (0, 0)
        problems = check_totals(quality, totals, int(recon), int(negatives))
        cur.execute(self._q(f"SELECT {sums} FROM {{s}}.usage_daily WHERE day = %s"), (day,))
        daily = cur.fetchone()
        if (totals_of(daily) if daily else Totals()) != totals:
            problems.append("usage_daily does not sum to usage_hourly")
        return problems

    def rebuild_daily(self, start: date, end: date) -> int:
        """Rebuild ``usage_daily`` of the days ``[start, end]`` from ``usage_hourly`` (for rows written
        there by hand, e.g. an import of history); returns the days rebuilt.  Loads keep it current."""
        with self._errors("rebuilding usage_daily"), self._conn.transaction(), self._cursor() as cur:
            cur.execute(
                self._q("SELECT DISTINCT day FROM {s}.usage_hourly WHERE day BETWEEN %s AND %s"), (start, end)
            )
            days = [r[0] for r in cur.fetchall()]
            for day in days:  # each under the day's load lock, so a load of it cannot interleave
                cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_NS, day.toordinal()))
                cur.execute(self._q("DELETE FROM {s}.usage_daily WHERE day = %s"), (day,))
                cur.execute(_rollup(self._s), (day,))
            cur.execute(
                self._q("DELETE FROM {s}.usage_daily WHERE day BETWEEN %s AND %s AND NOT day = ANY(%s)"),
                (start, end, days),
            )  # days whose hours are gone
            problems = [f"{d}: {p}" for d in days for p in self._problems(cur, d) if "usage_daily" in p]
            if problems:
                raise DataQualityError("usage_daily rebuild rolled back: " + "; ".join(problems))
        return len(days)

    def check_day(self, day: date) -> None:
        """Re-run the post-load checks of a loaded day."""
        with self._errors("check"), self._cursor() as cur:
            if self._quality(cur, day) is not None:
                raise_problems(day, self._problems(cur, day))

    # ------------------------------------------------------------------ reads

    def _quality(self, cur: psycopg.Cursor[Any], day: date) -> DayQuality | None:
        cols = sql.SQL(", ").join(map(sql.Identifier, _QUALITY))
        cur.execute(sql.SQL("SELECT {c} FROM {s}.quality WHERE day = %s").format(c=cols, s=self._s), (day,))
        row = cur.fetchone()
        return DayQuality(*row) if row else None

    def quality(self, day: date) -> DayQuality | None:
        """A day's quality counts."""
        with self._errors("query"), self._cursor() as cur:
            return self._quality(cur, day)

    def _select(
        self, table: str, cols: Sequence[str], where: str, params: Sequence[Any], order: str
    ) -> list[Any]:
        query = sql.SQL("SELECT {c} FROM {s}.{t} WHERE " + where + " ORDER BY " + order).format(
            c=sql.SQL(", ").join(map(sql.Identifier, cols)), s=self._s, t=sql.Identifier(table)
        )
        return self._fetch(query, params)

    def loaded_days(self, start: date, end: date) -> list[date]:
        """Loaded days in ``[start, end]``."""
        return [r[0] for r in self._select("quality", ["day"], "day BETWEEN %s AND %s", (start, end), "day")]

    def hourly_rows(self, day: date) -> list[HourlyRow]:
        """A day's hourly rows."""
        order = ", ".join(KEY_COLUMNS[1:])
        rows = self._select("usage_hourly", _HOURLY, "day = %s", (day,), order)
        return [HourlyRow(**dict(zip(_HOURLY, r, strict=True))) for r in rows]

    def grouped(
        self, keys: Sequence[str], start: date, end: date, where: Where | None = None
    ) -> list[GroupedRow]:
        """Sum the ``usage_hourly`` rows matching ``where`` by ``keys`` and currency, in SQL."""
        check_keys(keys)
        wanted = filters(where)
        if any(not values for values in wanted.values()):
            return []
        key_sql = sql.SQL(", ").join(map(sql.Identifier, [*keys, "currency"]))
        sums = sql.SQL(", ").join(sql.SQL("sum({})").format(sql.Identifier(c)) for c in SUM_COLUMNS)
        cond = sql.SQL("").join(sql.SQL(" AND {} = ANY(%s)").format(sql.Identifier(c)) for c in wanted)
        query = sql.SQL(
            "SELECT {k}, {sums}, sum(cost) FROM {s}.{t} WHERE day BETWEEN %s AND %s{cond} GROUP BY {k}"
        ).format(k=key_sql, sums=sums, s=self._s, t=_table_for(keys), cond=cond)
        params = [start, end, *(list(values) for values in wanted.values())]
        n = len(keys)
        return [(tuple(r[:n]), r[n], r[n + 1 : -1], r[-1]) for r in self._fetch(query, params)]

    def summed(
        self,
        keys: Sequence[str],
        start: date,
        end: date,
        where: Where | None = None,
        *,
        columns: Sequence[str] = SUM_COLUMNS,
    ) -> list[SummedRow]:
        """Sums of ``columns`` of the rows matching ``where`` by ``keys``, in one SQL aggregate."""
        check_summed(keys, columns)
        wanted = filters(where)
        if any(not values for values in wanted.values()):
            return []
        key_sql = sql.SQL(", ").join(map(sql.Identifier, keys))
        sums = sql.SQL(", ").join(sql.SQL("sum({})").format(sql.Identifier(c)) for c in columns)
        cond = sql.SQL("").join(sql.SQL(" AND {} = ANY(%s)").format(sql.Identifier(c)) for c in wanted)
        query = sql.SQL(
            "SELECT {k}, {sums} FROM {s}.{t} WHERE day BETWEEN %s AND %s{cond} GROUP BY {k}"
        ).format(k=key_sql, sums=sums, s=self._s, t=_table_for(keys), cond=cond)
        params = [start, end, *(list(values) for values in wanted.values())]
        n = len(keys)
        ints = [c != "cost" for c in columns]
        return [
            (tuple(r[:n]), tuple(int(v or 0) if i else v for i, v in zip(ints, r[n:], strict=True)))
            for r in self._fetch(query, params)
        ]

    def quality_between(self, start: date, end: date) -> list[DayQuality]:
        """Quality counts of the loaded days in ``[start, end]``, by day."""
        rows = self._select("quality", _QUALITY, "day BETWEEN %s AND %s", (start, end), "day")
        return [DayQuality(*r) for r in rows]

    def losses_between(self, start: date, end: date) -> list[LossEntry]:
        """What the services' loggers lost on the days ``[start, end]``."""
        order = "day, service, host, first_ts, reason"
        return [
            LossEntry(*r) for r in self._select("losses", _LOSS, "day BETWEEN %s AND %s", (start, end), order)
        ]

    def quarantine_reasons(self, start: date, end: date) -> list[tuple[date, str, int]]:
        """Quarantined lines of the days ``[start, end]`` counted by day and reason."""
        query = self._q(
            "SELECT day, reason, count(*) FROM {s}.quarantine WHERE day BETWEEN %s AND %s "
            "GROUP BY day, reason ORDER BY day, reason"
        )
        return [(r[0], r[1], int(r[2])) for r in self._fetch(query, (start, end))]

    def archived_days(self, start: date, end: date) -> list[tuple[date, str]]:
        """``(day, lang)`` of the reports archived for the days ``[start, end]``."""
        rows = self._select(
            "report_archive", ["day", "lang"], "day BETWEEN %s AND %s", (start, end), "day, lang"
        )
        return [(r[0], r[1]) for r in rows]

    def reconciliation_between(self, start: date, end: date) -> list[ReconciliationRow]:
        """Reconciliation rows of the days ``[start, end]``."""
        order = "day, model, service, fingerprint"
        rows = self._select("reconciliation", _RECON, "day BETWEEN %s AND %s", (start, end), order)
        return [ReconciliationRow(*r) for r in rows]

    def top_requests(self, day: date, limit: int = 100) -> list[TopRequest]:
        """A day's top requests by rank."""
        rows = self._select("top_requests", _TOP, "day = %s AND rank <= %s", (day, limit), "rank")
        return [TopRequest(*r) for r in rows]

    def quarantine(self, day: date) -> list[QuarantineEntry]:
        """A day's quarantined lines."""
        return [
            QuarantineEntry(*r) for r in self._select("quarantine", _QUAR, "day = %s", (day,), "source, line")
        ]

    def prompt_digests(self, day: date) -> list[PromptDigestRow]:
        """A day's repeated prompt digests."""
        rows = self._select("prompt_digests", _DIGEST, "day = %s", (day,), "prompt_sha256, feature")
        return [PromptDigestRow(*r) for r in rows]

    def losses(self, day: date) -> list[LossEntry]:
        """What the services' loggers lost on a day."""
        rows = self._select("losses", _LOSS, "day = %s", (day,), "service, host, first_ts, reason")
        return [LossEntry(*r) for r in rows]

    def folds(self, day: date) -> list[FoldEntry]:
        """Where users or tenants over the cardinality limit were folded into ``(other)``."""
        rows = self._select("folds", _FOLD_COLUMNS, "day = %s", (day,), "service, dimension")
        return [FoldEntry(*r) for r in rows]

    def ledger(self, day: date) -> list[LedgerEntry]:
        """Every run recorded for a day."""
        rows = self._select("ledger", _LEDGER, "day = %s", (day,), "id")
        return [LedgerEntry(**dict(zip(_LEDGER, r, strict=True))) for r in rows]

    def purge_quarantine(self, before: date) -> int:
        """Delete quarantined lines of days before ``before``."""
        with self._errors("purging quarantine"), self._conn.transaction(), self._cursor() as cur:
            cur.execute(self._q("DELETE FROM {s}.quarantine WHERE day < %s"), (before,))
            return int(cur.rowcount)

    def archive_report(self, day: date, lang: str, html: str, summary: Mapping[str, Any]) -> None:
        """Store (replace) a rendered report."""
        doc = Jsonb(json.loads(json.dumps(summary, default=str)))
        with self._errors("archiving the report"), self._conn.transaction(), self._cursor() as cur:
            cur.execute(
                self._q(
                    "INSERT INTO {s}.report_archive (day, lang, html, json) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (day, lang) DO UPDATE SET html = EXCLUDED.html, json = EXCLUDED.json, "
                    "created_at = now()"
                ),
                (day, lang, html, doc),
            )

    def archived_report(self, day: date, lang: str) -> tuple[str, dict[str, Any]] | None:
        """An archived report."""
        rows = self._select("report_archive", ["html", "json"], "day = %s AND lang = %s", (day, lang), "day")
        return (rows[0][0], rows[0][1]) if rows else None

    # ------------------------------------------------------------------ alert state

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
        """Fire ``threshold`` of ``budget`` for the period starting ``period_start``: ``True`` for the
        first claim only, in every session (``INSERT … ON CONFLICT DO NOTHING RETURNING`` on
        ``budget_alerts``' primary key, so two overlapping runs cannot both fire)."""
        check_claim(budget, threshold, at, share)
        query = self._q(
            "INSERT INTO {s}.budget_alerts (budget, period_start, threshold, fired_at, spend, unit, share) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING budget"
        )
        params = (budget, period_start, float(threshold), at, Decimal(spend), unit, float(share))
        with self._errors("claiming a budget threshold"), self._conn.transaction(), self._cursor() as cur:
            cur.execute(query, params)
            return cur.fetchone() is not None

    def fired_in(self, budget: str, period_start: date) -> list[FiredThreshold]:
        """The thresholds of ``budget`` fired in the period starting ``period_start``, lowest first."""
        cols = ["budget", "period_start", "threshold", "fired_at", "spend", "unit", "share"]
        rows = self._select(
            "budget_alerts", cols, "budget = %s AND period_start = %s", (budget, period_start), "threshold"
        )
        return [FiredThreshold(*r) for r in rows]

    def sent_since(self, channel: str, since: datetime) -> int:
        """How many alert messages ``channel`` was sent at or after ``since`` (``alert_log``)."""
        query = self._q("SELECT count(*) FROM {s}.alert_log WHERE channel = %s AND sent_at >= %s")
        rows = self._fetch(query, (channel, since))
        return int(rows[0][0]) if rows else 0

    def record_sent(self, channel: str, at: datetime, findings: int) -> None:
        """Note one alert message to ``channel`` at ``at`` carrying ``findings`` findings."""
        check_sent(channel, at, findings)
        query = self._q("INSERT INTO {s}.alert_log (channel, sent_at, findings) VALUES (%s, %s, %s)")
        with self._errors("recording an alert sent"), self._conn.transaction(), self._cursor() as cur:
            cur.execute(query, (channel, at, findings))
