"""The report reads only through the store's query layer: its numbers are the store's, on every backend."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

import llmtally.report
from llmtally import ConfigError
from llmtally.pipeline.record import UsageRecord
from llmtally.pipeline.recount import Recount
from llmtally.report import fetch_report_data, make_report
from llmtally.store import DayLoad, MemoryStore, PostgresStore
from tests.report.records import SETTINGS, loads, open_store, record, summary

KOLKATA = "Asia/Kolkata"  # UTC+05:30: local hours start at :30 UTC
D = date(2026, 11, 26)


def at(day: date, hh: int, mm: int, tz: str = KOLKATA) -> datetime:
    """Local ``hh:mm`` on ``day`` in ``tz`` as a UTC instant."""
    from zoneinfo import ZoneInfo

    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=ZoneInfo(tz)).astimezone(UTC)


def around_midnight() -> list[tuple[UsageRecord, Recount | None]]:
    """Records ten minutes either side of local midnight, with distinct token counts."""
    week_ago = D - timedelta(days=7)
    plan = [
        (at(D - timedelta(days=1), 23, 50), 1_000),  # previous day, 23:00 local
        (at(D, 0, 10), 2_000),  # the day, 00:00 local (18:40 UTC the day before)
        (at(D, 0, 10), 2_000),
        (at(D, 23, 50), 4_000),  # the day, 23:00 local
        (at(D + timedelta(days=1), 0, 10), 8_000),  # the next day
        (at(week_ago, 0, 10), 16_000),  # same weekday last week
        (at(week_ago - timedelta(days=1), 23, 50), 32_000),  # D-8
    ]
    return [
        record(i, ts, prompt=p, completion=p // 10, recount=(p, p // 10)) for i, (ts, p) in enumerate(plan)
    ]


@pytest.mark.parametrize("kind", ["memory", "postgres"])
def test_report_numbers_are_the_stores_in_kolkata(kind: str, request: pytest.FixtureRequest) -> None:
    with open_store(kind, request) as store:
        for load in loads(around_midnight(), KOLKATA):
            store.load_day(load)
        hours = sorted(h.hour for h in store.hourly_rows(D))
        assert hours == [
            datetime(2026, 11, 25, 18, 30, tzinfo=UTC),
            datetime(2026, 11, 26, 17, 30, tzinfo=UTC),
        ]
        daily = store.daily_totals(D - timedelta(days=8), D + timedelta(days=1))
        for day in (D - timedelta(days=1), D, D + timedelta(days=1)):
            s, t = summary(store, day, KOLKATA), daily[day]
            assert (s["requests"], s["prompt_tokens"], s["completion_tokens"], s["total_tokens"]) == (
                t.requests,
                t.prompt_tokens,
                t.completion_tokens,
                t.total_tokens,
            )
            assert s["cost"] == {c: float(round(v, 6)) for c, v in t.cost.items()} and s["cost"]
            assert sum(h["total_tokens"] for h in s["hourly"]) == t.total_tokens
        s = summary(store, D, KOLKATA)
        assert s["total_tokens"] == daily[D].total_tokens == 2 * 2_200 + 4_400
        assert s["hourly"][0]["total_tokens"] == 4_400 and s["hourly"][0]["requests"] == 2
        assert s["hourly"][23]["total_tokens"] == 4_400
        assert s["previous_day"]["total_tokens"] == daily[D - timedelta(days=1)].total_tokens == 1_100
        assert s["same_day_last_week"]["total_tokens"] == 17_600
        assert s["hourly"][0]["same_day_last_week_total_tokens"] == 17_600
        assert s["daily"][-1] == {"day": "2026-11-26", "total_tokens": 8_800}
        assert s["daily"][-8] == {"day": "2026-11-19", "total_tokens": 17_600}
        assert s["daily"][-9] == {"day": "2026-11-18", "total_tokens": 35_200}  # 23:50 local on D-8
        assert s["top_requests"][0]["total_tokens"] == 4_400
        assert s["reconciliation"]["records"] == 3 and s["reconciliation"]["recounted"] == 3


def test_every_source_reads_the_same(pg_dsn: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store, a DSN and a borrowed psycopg connection (left open and idle) give the same data."""
    monkeypatch.setenv("LLMTALLY_DB_SCHEMA", pg_schema)
    with PostgresStore(pg_dsn, schema=pg_schema) as store:
        for load in loads(around_midnight(), KOLKATA):
            store.load_day(load)
        via_store = fetch_report_data(store, D, KOLKATA)
    assert fetch_report_data(pg_dsn, D, KOLKATA) == via_store
    with psycopg.connect(pg_dsn) as conn:
        assert fetch_report_data(conn, D, KOLKATA) == via_store
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE and not conn.closed
    mem = MemoryStore()
    for load in loads(around_midnight(), KOLKATA):
        mem.load_day(load)
    assert fetch_report_data(mem, D, KOLKATA) == via_store
    with pytest.raises(ConfigError, match="UsageStore"):
        fetch_report_data(42, D, KOLKATA)


class WatchedStore(MemoryStore):
    """A memory store that fails any read outside a snapshot and counts the snapshots."""

    def __init__(self) -> None:
        super().__init__()
        self.snapshots = 0
        self.depth = 0

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        self.snapshots += 1
        with super().snapshot():
            self.depth += 1
            try:
                yield
            finally:
                self.depth -= 1

    def _loads(self, start: date, end: date) -> list[DayLoad]:
        assert self.depth == 1, "a read outside the report's snapshot"
        return super()._loads(start, end)


def test_the_report_reads_in_one_snapshot() -> None:
    store = WatchedStore()
    for load in loads(around_midnight(), KOLKATA):
        store.load_day(load)
    report = make_report(store, D, timezone=KOLKATA, settings=SETTINGS)
    assert store.snapshots == 1 and report.summary["total_tokens"] == 8_800


def test_a_missing_schema_says_what_to_do(pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from llmtally import StorageError

    monkeypatch.setenv("LLMTALLY_DB_SCHEMA", "no_such_schema")
    with pytest.raises(StorageError, match=r"(?s)schema 'no_such_schema'.*migration"):
        fetch_report_data(pg_dsn, D, KOLKATA)


_SQL = re.compile(
    r"\b(SELECT|INSERT|UPDATE|DELETE|GROUP BY|AT TIME ZONE)\b|\bFROM \{|\bsql\.SQL\b|\.execute\("
)


def test_no_sql_in_the_report_package() -> None:
    """One query layer: the report composes the store's queries and holds no SQL of its own."""
    folder = Path(llmtally.report.__file__).parent
    found = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted(folder.rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if _SQL.search(line)
    ]
    assert found == []
