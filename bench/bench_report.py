"""Daily report generation time over a year of hourly aggregates (charts included), and the usage
page (the Airflow plugin's) over the same rows in the same run.

    python bench/bench_report.py [--days 365] [--combos 60] [--runs 7] [--dsn "host=127.0.0.1 user=postgres dbname=test"]

Creates a scratch database, migrates it with the store, COPYs ``days`` x 24 hours x ``combos``
(feature, model, user, service) rows into ``usage_hourly`` (plus top requests, digests and
reconciliation for the report day), then times :func:`llmtally.report.make_report` (read the
aggregates, compute, detect anomalies, draw three charts, render zh HTML twice): the first run in
a fresh process (imports, font lookup) and the median of ``runs`` warm runs, with a per-stage
breakdown.  Baseline in the same run: the same rows summed client-side by a naive
``SELECT * ... WHERE day = D`` + Python loop (what a report without aggregated SQL would do).
Target: under 2 s.  The database is dropped at the end.

The page: ``GET /llmtally/`` of :func:`llmtally.web.create_app` over a :class:`PostgresStore` of the
same database, through FastAPI's test client (in process: server time, no network), for the
default range (29 days) and for the whole year (365 days), warm median of ``runs`` with the read
(the store's queries and anomalies) and the render (tables, SVG charts, HTML) split out.  Target:
the year in under 1 s.  The store also gets one quality row per day and reconciliation rows, so
the page's data-quality and reconciliation sections have a year to read too.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import secrets
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

TZ = "Asia/Shanghai"
DAY = date(2026, 11, 26)
FEATURES = ["客服问答", "写作", "翻译", "摘要", "代码助手", "检索问答"]
MODELS = [("qwen-plus", "CNY"), ("gpt-4o", "USD"), ("deepseek-chat", "CNY"), ("qwen3-8b", None)]
SERVICES = ["cs-bot", "writer", "search", "ide"]


def generate(dsn: str, schema: str, days: int, combos: int) -> int:
    from llmtally.store import PostgresStore

    store = PostgresStore(dsn, schema=schema)
    # the monthly partitions a real load creates (rows would otherwise all land in the default one)
    zone = ZoneInfo(TZ)
    store._ensure_partitions(
        datetime(d.year, d.month, d.day, tzinfo=zone) for d in (DAY - timedelta(days=i) for i in range(days))
    )
    store.close()
    rng = random.Random(1)
    keys = [
        (
            FEATURES[i % len(FEATURES)],
            *MODELS[(i // 3) % len(MODELS)],
            f"user{i:03d}",
            SERVICES[i % len(SERVICES)],
        )
        for i in range(combos)
    ]
    cols = ("day, hour, model, feature, user_id, tenant, service, requests, prompt_tokens, completion_tokens, "
            "cached_tokens, reasoning_tokens, recounted_prompt_tokens, recounted_completion_tokens, "
            "estimated_prompt_tokens, estimated_completion_tokens, unpriced_requests, cost, currency")  # fmt: skip
    n = 0
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy(f'COPY "{schema}".usage_hourly ({cols}) FROM STDIN') as copy:
            for i in range(days - 1, -1, -1):
                d = DAY - timedelta(days=i)
                for h in range(24):
                    hour = datetime(d.year, d.month, d.day, h, tzinfo=zone).astimezone(UTC)
                    for feature, model, currency, user, service in keys:
                        reqs = rng.randint(1, 30)
                        p, c = reqs * rng.randint(300, 1500), reqs * rng.randint(100, 800)
                        cost = None if currency is None else Decimal(p * 2 + c * 8) / 1_000_000
                        copy.write_row((d, hour, model, feature, user, "acme", service, reqs, p, c, p // 4, 0,
                                        p, c, p, c, reqs if cost is None else 0, cost, currency))  # fmt: skip
                        n += 1
        for rank in range(1, 101):
            cur.execute(
                f'INSERT INTO "{schema}".top_requests (day, rank, record_id, ts, model, service, feature, user_id, '
                "tenant, prompt_sha256, prompt_tokens, completion_tokens, total_tokens, tags) "
                "VALUES (%s, %s, %s, now(), 'gpt-4o', 'writer', '写作', 'user001', 'acme', %s, 5000, 1000, 6000, '{}')",
                (DAY, rank, f"r{rank}", f"{rank:064x}"),
            )
        for i in range(days):
            d = DAY - timedelta(days=i)
            per_day = n // days
            cur.execute(
                f'INSERT INTO "{schema}".quality (day, records, prompt_tokens, completion_tokens, files, timezone) '
                "VALUES (%s, %s, 0, 0, 4, %s)",
                (d, per_day, TZ),
            )
            for model, _ in MODELS:
                cur.execute(
                    f'INSERT INTO "{schema}".reconciliation (day, model, service, fingerprint, records, reported, '
                    "recounted, drift_records, estimated, estimate_ape_sum, estimate_pe_sum) "
                    "VALUES (%s, %s, 'writer', 'fp', 1000, 1000, 1000, 3, 500, 25.0, 5.0)",
                    (d, model),
                )
    return n


def naive_baseline(dsn: str, schema: str) -> float:
    t = time.perf_counter()
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            f'SELECT * FROM "{schema}".usage_hourly WHERE day >= %s', (DAY - timedelta(days=35),)
        ).fetchall()
    sum(r[8] + r[9] for r in rows)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--combos", type=int, default=60)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--dsn", default="host=127.0.0.1 port=5432 user=postgres dbname=test")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.runs)
    name = f"llmtally_bench_report_{secrets.token_hex(3)}"
    admin = psycopg.connect(args.dsn, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(args.dsn)
    params["dbname"] = name
    dsn = make_conninfo("", **params)
    try:
        t = time.perf_counter()
        rows = generate(dsn, "bench", args.days, args.combos)
        from llmtally.store import PostgresStore

        with PostgresStore(dsn, schema="bench") as store:  # rows COPYed by hand: sum them per day too
            store.rebuild_daily(DAY - timedelta(days=args.days), DAY)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute('ANALYZE "bench".usage_hourly')  # and its partitions
            conn.execute('ANALYZE "bench".usage_daily')
            daily_rows = conn.execute('SELECT count(*) FROM "bench".usage_daily').fetchone()
        print(
            f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        )
        print(
            f"usage_hourly: {rows:,} rows ({args.days} days x 24 h x {args.combos} combos), loaded in {time.perf_counter() - t:.1f} s; "
            f"usage_daily: {daily_rows[0] if daily_rows else 0:,} rows"
        )
        print(f"baseline: SELECT * of the 36 days needed + Python sum: {naive_baseline(dsn, 'bench'):.3f} s")
        import subprocess

        env = dict(os.environ, LLMTALLY_DB_SCHEMA="bench", LLMTALLY_TIMEZONE=TZ)
        subprocess.run(
            [sys.executable, __file__, "--child", dsn, "--runs", str(args.runs)], env=env, check=True
        )
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def child(dsn: str, runs: int) -> None:
    t0 = time.perf_counter()
    from llmtally.report import make_report

    make_report(dsn, DAY, lang="zh", timezone=TZ)
    cold = time.perf_counter() - t0
    from llmtally.pricing import ExchangeRates
    from llmtally.report._charts import render_charts
    from llmtally.report._compute import summarize
    from llmtally.report._data import fetch_report_data
    from llmtally.report._render import _chart_inputs, render_html

    stages: dict[str, list[float]] = {k: [] for k in ("total", "read", "compute", "charts", "render")}
    for _ in range(runs):
        t = time.perf_counter()
        make_report(dsn, DAY, lang="zh", timezone=TZ)
        stages["total"].append(time.perf_counter() - t)
        t = time.perf_counter()
        data = fetch_report_data(dsn, DAY, TZ)
        stages["read"].append(time.perf_counter() - t)
        t = time.perf_counter()
        s = summarize(data)
        stages["compute"].append(time.perf_counter() - t)
        t = time.perf_counter()
        render_charts(s, *_chart_inputs(data, ExchangeRates()), "zh")
        stages["charts"].append(time.perf_counter() - t)
        t = time.perf_counter()
        for images in (
            {"hourly": "cid:a", "trend": "cid:b", "cost": "cid:c"},
            {"hourly": "", "trend": "", "cost": ""},
        ):
            render_html({**s, "headline": ""}, "zh", images)
        stages["render"].append(time.perf_counter() - t)
    print(f"cold (fresh process, incl. imports): {cold:.3f} s")
    for k, v in stages.items():
        print(
            f"warm {k:<8} median {statistics.median(v):.3f} s  (min {min(v):.3f}, max {max(v):.3f}, n={len(v)})"
        )
    print("target < 2 s:", "met" if cold < 2 and statistics.median(stages["total"]) < 2 else "NOT met")
    page(dsn, runs)


def page(dsn: str, runs: int) -> None:
    """The usage page over the same aggregates: default range and a whole year."""
    from contextlib import contextmanager

    from fastapi.testclient import TestClient

    from llmtally.report import ReportSettings
    from llmtally.store import PostgresStore, schema_from_env
    from llmtally.web import create_app
    from llmtally.web._currency import exchange_rates
    from llmtally.web._data import read_page
    from llmtally.web._page import render_page
    from llmtally.web._query import parse_query

    store = PostgresStore(dsn, schema=schema_from_env(), migrate=False)

    @contextmanager
    def opener():  # type: ignore[no-untyped-def]
        yield store

    today = DAY + timedelta(days=1)
    app = create_app(opener, timezone=TZ, today=lambda: today)
    client = TestClient(app)
    th = ReportSettings.from_config().thresholds
    for label, params in (
        ("29 days (default)", {}),
        ("a year", {"start": (DAY - timedelta(days=364)).isoformat()}),
    ):
        t = time.perf_counter()
        r = client.get("/", params=params)
        first = time.perf_counter() - t
        assert r.status_code == 200, r.text[:500]
        stages: dict[str, list[float]] = {k: [] for k in ("request", "read", "render")}
        q = parse_query(params, today=today, default_lang="zh")
        for _ in range(runs):
            t = time.perf_counter()
            client.get("/", params=params)
            stages["request"].append(time.perf_counter() - t)
            t = time.perf_counter()
            data = read_page(store, q, TZ, th)
            stages["read"].append(time.perf_counter() - t)
            t = time.perf_counter()
            render_page(data, exchange_rates(), base="")
            stages["render"].append(time.perf_counter() - t)
        print(f"page, {label}: first request {first:.3f} s, {len(r.content):,} bytes of HTML")
        for k, v in stages.items():
            print(
                f"  warm {k:<8} median {statistics.median(v):.3f} s  (min {min(v):.3f}, max {max(v):.3f}, n={len(v)})"
            )
        if label == "a year":
            print(
                "page target (a year) < 1 s:",
                "met" if statistics.median(stages["request"]) < 1 else "NOT met",
            )
    store.close()


if __name__ == "__main__":
    main()
