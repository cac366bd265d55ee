"""The PostgreSQL store (psycopg 3): migrations, atomic day loads with checks, the report's queries.

A load of day D runs in one transaction: lock D, delete D from every day table, COPY the new rows,
record the ledger entry, run the data-quality checks, commit.  Any error rolls back, so readers see
the old day or the new one, never a mix.  Driver errors become :class:`StorageError`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import astuple, fields
from datetime import UTC, date, datetime
from types import TracebackType
from typing import Any, Self

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from .._exceptions import ConfigError, DataQualityError, StorageError
from ._base import SUM_COLUMNS, GroupedRow, StoreQueries, check_totals, raise_problems, totals_of
from ._dsn import DEFAULT_SCHEMA
from ._migrations import MIGRATIONS
from ._rows import (
    DIMENSIONS,
    DayLoad,
    DayQuality,
    HourlyRow,
    LedgerEntry,
    PromptDigestRow,
    QuarantineEntry,
    ReconciliationRow,
    TopRequest,
    Totals,
)

__all__ = ["PostgresStore"]

_LOCK_NS = 0x11A7  # advisory-lock namespace of llmtally
_DAY_TABLES = ("usage_hourly", "reconciliation", "quality", "top_requests", "quarantine", "prompt_digests")
_HOURLY = [f.name for f in fields(HourlyRow)]
_RECON = [f.name for f in fields(ReconciliationRow)]
_TOP = [f.name for f in fields(TopRequest)]
_QUAR = [f.name for f in fields(QuarantineEntry)]
_DIGEST = [f.name for f in fields(PromptDigestRow)]
_QUALITY = [f.name for f in fields(DayQuality)]
_LEDGER = [f.name for f in fields(LedgerEntry)]
_GROUP_KEYS = frozenset({"day", "hour", *DIMENSIONS})


def _months(hours: Iterable[datetime]) -> list[tuple[datetime, datetime]]:
    firsts = {datetime(h.astimezone(UTC).year, h.astimezone(UTC).month, 1, tzinfo=UTC) for h in hours}
    out = []
    for first in sorted(firsts):
        nxt = datetime(first.year + (first.month == 12), first.month % 12 + 1, 1, tzinfo=UTC)
        out.append((first, nxt))
    return out


class PostgresStore(StoreQueries):
    """Aggregates in PostgreSQL schema ``schema`` (default ``llmtally``), reached with ``dsn``.

    ``migrate=True`` applies pending migrations on connect.  Use as a context manager.
    """

    def __init__(self, dsn: str, *, schema: str = DEFAULT_SCHEMA, migrate: bool = True) -> None:
        if not schema.isidentifier():
            raise ConfigError(f"schema name {schema!r} must be a plain identifier such as 'llmtally'")
        self.schema = schema
        self._s = sql.Identifier(schema)
        try:
            self._conn = psycopg.connect(dsn, autocommit=True)
        except psycopg.Error as exc:
            raise StorageError(f"cannot connect to the usage database: {exc}".strip()) from exc
        if migrate:
            self.migrate()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

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

    def _fetch(self, query: sql.Composed, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._errors("query"), self._conn.cursor() as cur:
            cur.execute(query, params)
            return list(cur.fetchall())

    # ------------------------------------------------------------------ schema

    def migrate(self) -> list[str]:
        """Apply pending migrations (serialised by an advisory lock); returns the names applied."""
        applied: list[str] = []
        with self._errors("migration"), self._conn.transaction(), self._conn.cursor() as cur:
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
        with self._errors("creating partitions"), self._conn.transaction(), self._conn.cursor() as cur:
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

    def load_day(self, load: DayLoad) -> None:
        """Replace ``load.day`` atomically; the checks run before commit (see the module docstring)."""
        day = load.day
        for rows in (load.hourly, load.reconciliation, load.top_requests, load.quarantine, load.digests):
            if any(r.day != day for r in rows):
                raise StorageError(f"rows for another day in the load of {day}")
        self._ensure_partitions(h.hour for h in load.hourly)
        with self._errors(f"loading {day}"), self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_NS, day.toordinal()))
            for table in _DAY_TABLES:
                cur.execute(self._q("DELETE FROM {s}.{t} WHERE day = %s", t=table), (day,))
            self._copy(cur, "usage_hourly", _HOURLY, map(astuple, load.hourly))
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
            self._copy(cur, "quality", [*_QUALITY, "timezone"], [(*astuple(load.quality), load.timezone)])
            if load.ledger is not None:
                e = load.ledger
                self._copy(
                    cur, "ledger", _LEDGER,
                    [(*astuple(e)[:-2], Jsonb(dict(e.durations)), Jsonb(dict(e.details)))],
                )  # fmt: skip
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
        return check_totals(quality, totals, int(recon), int(negatives))

    def check_day(self, day: date) -> None:
        """Re-run the post-load checks of a loaded day."""
        with self._errors("check"), self._conn.cursor() as cur:
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
        with self._errors("query"), self._conn.cursor() as cur:
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
        order = "hour, model, feature, user_id, tenant, service"
        return [HourlyRow(*r) for r in self._select("usage_hourly", _HOURLY, "day = %s", (day,), order)]

    def grouped(self, keys: Sequence[str], start: date, end: date) -> list[GroupedRow]:
        """Sum ``usage_hourly`` by ``keys`` and currency in SQL."""
        bad = [k for k in keys if k not in _GROUP_KEYS]
        if bad:
            raise ConfigError(f"cannot group by {bad}; use {sorted(_GROUP_KEYS)}")
        key_sql = sql.SQL(", ").join(map(sql.Identifier, [*keys, "currency"]))
        sums = sql.SQL(", ").join(sql.SQL("sum({})").format(sql.Identifier(c)) for c in SUM_COLUMNS)
        query = sql.SQL(
            "SELECT {k}, {sums}, sum(cost) FROM {s}.usage_hourly WHERE day BETWEEN %s AND %s GROUP BY {k}"
        ).format(k=key_sql, sums=sums, s=self._s)
        n = len(keys)
        return [(tuple(r[:n]), r[n], r[n + 1 : -1], r[-1]) for r in self._fetch(query, (start, end))]

    def reconciliation(self, day: date) -> list[ReconciliationRow]:
        """A day's reconciliation rows."""
        rows = self._select("reconciliation", _RECON, "day = %s", (day,), "model, service, fingerprint")
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

    def ledger(self, day: date) -> list[LedgerEntry]:
        """Every run recorded for a day."""
        return [LedgerEntry(*r) for r in self._select("ledger", _LEDGER, "day = %s", (day,), "id")]

    def purge_quarantine(self, before: date) -> int:
        """Delete quarantined lines of days before ``before``."""
        with self._errors("purging quarantine"), self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute(self._q("DELETE FROM {s}.quarantine WHERE day < %s"), (before,))
            return int(cur.rowcount)

    def archive_report(self, day: date, lang: str, html: str, summary: Mapping[str, Any]) -> None:
        """Store (replace) a rendered report."""
        doc = Jsonb(json.loads(json.dumps(summary, default=str)))
        with self._errors("archiving the report"), self._conn.transaction(), self._conn.cursor() as cur:
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
