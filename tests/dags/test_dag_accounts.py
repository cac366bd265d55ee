"""llm_usage_daily through ``dag.test()`` on real PostgreSQL, in a half-hour time zone
(Asia/Kolkata, +5:30): a day cut at local midnight ± 10 minutes, failed calls billed nothing, and
a week whose raw logs were purged, backfilled again without losing a token."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

import llmtally
from tests.e2e.expected import pipeline_env
from tests.support import REPO_ROOT, SHARED, environment

TZ = "Asia/Kolkata"
SCHEMA = "llmtally_kolkata"
DAY = date(2026, 11, 20)
WEEK = [DAY - timedelta(days=n) for n in range(6, -1, -1)]


def _stamps(rng: random.Random) -> list[datetime]:
    zone = ZoneInfo(TZ)
    out: list[datetime] = []
    for d in [*WEEK, DAY + timedelta(days=1)]:
        midnight = datetime(d.year, d.month, d.day, tzinfo=zone)
        out += [midnight + timedelta(minutes=m) for m in (-10, -3, 0, 3, 10)]
        out += [midnight - timedelta(seconds=1)]
        out += [midnight + timedelta(seconds=rng.uniform(600, 86400 - 600)) for _ in range(12)]
    return out


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """A week of records written by the real logger (text kept as digests: billed from usage);
    every seventh call rate limited (HTTP 429, no usage)."""
    rng = random.Random(11)
    root = tmp_path_factory.mktemp("kolkata-logs")
    logger = llmtally.UsageLogger(root / "api", service="api", text="hash")
    truth: list[dict[str, Any]] = []
    for i, ts in enumerate(_stamps(rng)):
        failed = i % 7 == 3
        p, c = rng.randint(5, 2000), rng.randint(1, 500)
        usage = None if failed else {"prompt_tokens": p, "completion_tokens": c}
        status = "error" if failed else "ok"
        extra = {"http_status": 429, "error": "RateLimitError"} if failed else {"finish_reason": "stop"}
        logger.log(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"问题 {i}"}], completion="好",
            usage=usage, tags={"feature": "客服问答", "user": f"u{i % 5}"}, ts=ts, status=status, **extra,
        )  # fmt: skip
        truth.append({"ts": ts, "status": status, "p": 0 if failed else p, "c": 0 if failed else c})
    logger.close(timeout=30)
    return root, truth


def _truth(truth: list[dict[str, Any]], day: date) -> tuple[int, int, int]:
    rows = [t for t in truth if t["ts"].astimezone(ZoneInfo(TZ)).date() == day]
    return len(rows), sum(t["p"] for t in rows), sum(t["c"] for t in rows)


@pytest.fixture(scope="module")
def env(
    airflow_db: str, logs: tuple[Path, Any], pg_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    values = {
        **pipeline_env(tmp_path_factory.mktemp("run"), logs[0], pg_dsn, SHARED),
        "LLMTALLY_DB_SCHEMA": SCHEMA,
        "LLMTALLY_TIMEZONE": TZ,  # the one source of the zone: schedule, day rule, report
    }
    with environment(values):
        yield values


@pytest.fixture(scope="module")
def dag(env: dict[str, str]) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(str(REPO_ROOT / "dags")).dags["llm_usage_daily"]
    assert str(dag.timetable.timezone) == TZ  # the schedule reads the one time-zone function
    return dag


def _sql(dsn: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query.replace("{s}", SCHEMA), params).fetchall()


def test_half_hour_zone_day_agrees_in_usage_daily_quality_and_report(
    dag: Any, env: dict[str, str], logs: tuple[Path, list[dict[str, Any]]]
) -> None:
    dsn = env["AIRFLOW_CONN_LLM_USAGE_DB"]
    run = dag.test(run_conf={"day": DAY.isoformat(), "lang": "en"})
    assert run.state == "success"
    want = _truth(logs[1], DAY)
    assert want[0] > 0
    daily = _sql(
        dsn,
        "SELECT sum(requests), sum(prompt_tokens), sum(completion_tokens) FROM {s}.usage_daily WHERE day = %s",
        DAY,
    )
    assert tuple(int(v) for v in daily[0]) == want
    (quality,) = _sql(
        dsn,
        "SELECT records, prompt_tokens, completion_tokens, status_error, not_billed FROM {s}.quality WHERE day = %s",
        DAY,
    )
    assert quality[:3] == want
    failed = sum(
        1 for t in logs[1] if t["status"] == "error" and t["ts"].astimezone(ZoneInfo(TZ)).date() == DAY
    )
    assert failed > 0 and quality[3:] == (failed, failed)
    # every row of the day lies inside the local day (no bucket straddles midnight at :30 UTC)
    start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=ZoneInfo(TZ))
    (outside,) = _sql(dsn, "SELECT count(*) FROM {s}.usage_hourly WHERE day = %s AND (hour < %s OR hour >= %s)",
                      DAY, start, start + timedelta(days=1))  # fmt: skip
    assert outside == (0,)
    # failed calls: requests with their status, zero tokens, zero cost
    (err,) = _sql(dsn, "SELECT sum(requests), sum(prompt_tokens + completion_tokens), sum(cost) FROM {s}.usage_hourly"
                  " WHERE day = %s AND status = 'error' AND http_status = 429", DAY)  # fmt: skip
    assert (int(err[0]), int(err[1]), float(err[2])) == (failed, 0, 0.0)
    report = json.loads((Path(env["LLMTALLY_REPORT_DIR"]) / f"report-{DAY.isoformat()}.json").read_text())
    assert (report["requests"], report["prompt_tokens"], report["completion_tokens"]) == want
    assert report["timezone"] == TZ


def test_purged_week_backfilled_again_is_unchanged(
    dag: Any, env: dict[str, str], logs: tuple[Path, list[dict[str, Any]]], capfd: pytest.CaptureFixture[str]
) -> None:
    from llmtally.jobs.maintenance import purge_raw_logs

    dsn = env["AIRFLOW_CONN_LLM_USAGE_DB"]
    for day in WEEK:
        assert dag.test(run_conf={"day": day.isoformat()}).state == "success"
    table = "SELECT * FROM {s}.usage_hourly WHERE day BETWEEN %s AND %s ORDER BY hour, day, model, feature, user_id, status"
    loaded = _sql(dsn, table, WEEK[0], WEEK[-1])
    for day in WEEK:
        (got,) = _sql(
            dsn,
            "SELECT sum(requests), sum(prompt_tokens), sum(completion_tokens) FROM {s}.usage_daily WHERE day = %s",
            day,
        )
        assert tuple(int(v) for v in got) == _truth(logs[1], day), day
    ledger = _sql(dsn, "SELECT count(*) FROM {s}.ledger")
    # retention purges the raw logs (the maintenance DAG's own function), then the week is backfilled
    purged = purge_raw_logs([str(logs[0] / "*")], 0, now=time.time() + 86400)
    assert purged["deleted"] > 0 and not any(p.is_file() for p in logs[0].rglob("*"))
    capfd.readouterr()
    for day in WEEK:
        run = dag.test(run_conf={"day": day.isoformat()})
        assert run.state == "failed", day
        states = {ti.task_id: ti.state for ti in run.get_task_instances()}
        assert states["load"] == "failed" and states["report"] == "upstream_failed", states
    said = capfd.readouterr()
    assert "already holds" in said.out + said.err and '"force": true' in said.out + said.err
    assert _sql(dsn, table, WEEK[0], WEEK[-1]) == loaded
    assert _sql(dsn, "SELECT count(*) FROM {s}.ledger") == ledger  # refused loads leave no entry
    # forced, the day is replaced by what the run found (nothing), and the ledger says so
    assert dag.test(run_conf={"day": WEEK[0].isoformat(), "force": True}).state == "success"
    assert _sql(dsn, "SELECT coalesce(sum(requests), 0) FROM {s}.usage_hourly WHERE day = %s", WEEK[0]) == [
        (0,)
    ]
    assert _sql(dsn, "SELECT forced FROM {s}.ledger WHERE day = %s ORDER BY id DESC LIMIT 1", WEEK[0]) == [
        (True,)
    ]


def test_timezone_has_one_source(env: dict[str, str]) -> None:
    from llmtally._time import report_timezone

    cfg = Path(env["LLMTALLY_CONFIG"]).read_text(encoding="utf-8")
    assert 'timezone = "Asia/Shanghai"' in cfg
    assert report_timezone() == TZ  # LLMTALLY_TIMEZONE over the config file
