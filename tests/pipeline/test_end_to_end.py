"""Generated multi-day, multi-host logs → collect → parse → recount (real tokenizers) → reconcile →
PostgreSQL, checked against the generator's truth."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from llmtally.pipeline import collect, parse_day, reconcile, recount
from llmtally.pricing import load_prices
from llmtally.store import PostgresStore
from llmtally.tokens import TokenCounter
from tests.pipeline.logs import CANARY, TZ, ZONE, Truth, counter_for, counters, generate

DAYS = [date(2026, 11, 19), date(2026, 11, 20), date(2026, 11, 21)]


@pytest.fixture(scope="module")
def table() -> dict[str, TokenCounter]:
    return counters()


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory, table: dict[str, TokenCounter]) -> tuple[Path, Truth]:
    root = tmp_path_factory.mktemp("service-logs")
    return root, generate(root, DAYS, 45, table)


def run_day(
    store: PostgresStore, root: Path, day: date, table: dict[str, TokenCounter], run_id: str = "t"
) -> Any:
    files = collect([str(root / "*")], day=day, tz=TZ)
    parsed = parse_day(files.paths, day, TZ)
    counts = recount(parsed.records, counter_for(table))
    load = reconcile(
        parsed.records,
        counts,
        day=day,
        tz=TZ,
        prices=load_prices(),
        stats=parsed.stats,
        quarantine=parsed.quarantine,
        run_id=run_id,
    )
    store.load_day(load)
    return parsed, load


def expected_hourly(truth: Truth, day: date) -> dict[tuple[Any, ...], list[int]]:
    out: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for rec in truth.records[day]:
        if rec.get("_legacy"):
            ts = rec["ts_dt"].astimezone(UTC)
            key = (ts.replace(minute=0, second=0, microsecond=0), "", "", "", "", "legacy-svc")
        else:
            ts = datetime.fromisoformat(rec["ts"])
            t = rec["tags"]
            key = (
                ts.replace(minute=0, second=0, microsecond=0),
                rec["model"],
                t["feature"],
                t["user"],
                t["tenant"],
                rec["service"],
            )
        acc = out[key]
        acc[0] += 1
        acc[1] += rec["_truth"]["billed"][0]
        acc[2] += rec["_truth"]["billed"][1]
        acc[3] += rec["_truth"]["cached"]
    return dict(out)


def test_days_match_the_truth(
    pg_dsn: str, pg_schema: str, logs: tuple[Path, Truth], table: dict[str, TokenCounter]
) -> None:
    root, truth = logs
    with PostgresStore(pg_dsn, schema=pg_schema) as store:
        for day in DAYS:
            parsed, _ = run_day(store, root, day, table)
            st = parsed.stats
            assert st.records == len(truth.records[day])
            assert st.duplicates == truth.duplicates.get(day, 0)
            assert st.quarantined == truth.malformed
            assert st.partial_lines == truth.partial
            assert (
                st.lines
                == st.records
                + st.out_of_day
                + st.duplicates
                + st.partial_lines
                + st.blank_lines
                + st.quarantined
            )
            rows = store.hourly_rows(day)
            got = {
                (r.hour.astimezone(UTC), r.model, r.feature, r.user_id, r.tenant, r.service): [
                    r.requests,
                    r.prompt_tokens,
                    r.completion_tokens,
                    r.cached_tokens,
                ]
                for r in rows
            }
            assert got == expected_hourly(truth, day)
            recon = store.reconciliation(day)
            assert sum(r.drift_records for r in recon) == truth.drift[day]
            drifted = {r.service for r in recon if r.drift_records}
            assert drifted == ({"support-bot"} if truth.drift[day] else set())
            unknown = {r.model for r in recon if r.unknown_model}
            assert unknown == {"mystery-model"}
            q = store.quality(day)
            assert q is not None and q.records == st.records and q.legacy_records == 4
            assert q.prompt_recount > 0 and q.prompt_estimate == 4  # the 4 legacy lines
            assert len(store.quarantine(day)) == truth.malformed
            store.check_day(day)


def test_rerun_and_backfill_order_change_nothing(
    pg_dsn: str, logs: tuple[Path, Truth], table: dict[str, TokenCounter]
) -> None:
    root, _ = logs
    a, b = "t_order_a", "t_order_b"
    try:
        with PostgresStore(pg_dsn, schema=a) as sa, PostgresStore(pg_dsn, schema=b) as sb:
            for day in DAYS:
                run_day(sa, root, day, table)
            before = {
                d: (sa.hourly_rows(d), sa.reconciliation(d), sa.top_requests(d), sa.quality(d)) for d in DAYS
            }
            run_day(sa, root, DAYS[1], table, run_id="rerun")
            for day in reversed(DAYS):
                run_day(sb, root, day, table)
            for d in DAYS:
                after = (sa.hourly_rows(d), sa.reconciliation(d), sa.top_requests(d), sa.quality(d))
                assert after == before[d]
                assert (sb.hourly_rows(d), sb.reconciliation(d), sb.top_requests(d), sb.quality(d)) == before[
                    d
                ]
            assert [e.run_id for e in sa.ledger(DAYS[1])] == ["t", "rerun"]
            assert sa.daily_totals(DAYS[0], DAYS[-1]) == sb.daily_totals(DAYS[0], DAYS[-1])
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            for s in (a, b):
                conn.execute(f'DROP SCHEMA IF EXISTS "{s}" CASCADE')


def test_canary_is_nowhere_in_postgres(
    pg_dsn: str, pg_schema: str, logs: tuple[Path, Truth], table: dict[str, TokenCounter]
) -> None:
    root, _ = logs
    assert any(CANARY in line for p in root.rglob("*.jsonl") for line in p.read_text("utf-8").splitlines())
    with PostgresStore(pg_dsn, schema=pg_schema) as store:
        for day in DAYS:
            run_day(store, root, day, table)
        store.archive_report(DAYS[0], "en", "<html>report</html>", {"day": str(DAYS[0])})
    hits: list[str] = []
    with psycopg.connect(pg_dsn) as conn:
        cols = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = %s",
            (pg_schema,),
        ).fetchall()
        assert len({t for t, _ in cols}) >= 9
        for table_name, column in cols:
            n = conn.execute(
                f'SELECT count(*) FROM "{pg_schema}"."{table_name}" WHERE "{column}"::text LIKE %s',
                (f"%{CANARY[:12]}%",),
            ).fetchone()
            if n and n[0]:
                hits.append(f"{table_name}.{column}")
        rows = conn.execute(f'SELECT count(*) FROM "{pg_schema}".usage_hourly').fetchone()
        assert rows and rows[0] > 0
    assert hits == []


def test_midnight_records_land_on_their_local_day(logs: tuple[Path, Truth]) -> None:
    root, _ = logs
    files = collect([str(root)], day=DAYS[1], tz=TZ)
    parsed = parse_day(files.paths, DAYS[1], TZ)
    local = Counter(r.ts.astimezone(ZONE).date() for r in parsed.records)
    assert set(local) == {DAYS[1]}
    first = min(r.ts for r in parsed.records)
    last = max(r.ts for r in parsed.records)
    assert first.astimezone(ZONE).strftime("%H:%M:%S.%f") == "00:00:00.001000"
    assert last.astimezone(ZONE).strftime("%H:%M:%S.%f") == "23:59:59.999000"
    assert first == datetime(2026, 11, 19, 16, 0, 0, 1000, tzinfo=UTC)
