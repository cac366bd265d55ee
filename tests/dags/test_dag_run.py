"""llm_usage_daily end to end in-process (``dag.test()``): sample logs written by the real logger,
exact recount, real PostgreSQL, report files.  Which logical date reports which day, re-runs,
backfill order and dry runs."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from tests.e2e.expected import day_totals, expected_totals, pipeline_env
from tests.support import REPO_ROOT, SHARED, environment

TZ = "Asia/Shanghai"
LAST = date(2026, 11, 20)
DAYS = [LAST - timedelta(days=n) for n in range(2, -1, -1)]


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sys.path.insert(0, str(REPO_ROOT / "examples"))
    from sample_traffic import generate

    root = tmp_path_factory.mktemp("service-logs")
    generate(root, days=len(DAYS), per_day=80, shared=SHARED, end=LAST)
    return root


@pytest.fixture(scope="module")
def env(
    airflow_db: str, logs: Path, pg_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    values = {
        **pipeline_env(tmp_path_factory.mktemp("run"), logs, pg_dsn, SHARED),
        "LLMTALLY_DB_SCHEMA": "llmtally",
    }
    with environment(values):
        yield values


@pytest.fixture(scope="module")
def dag(env: dict[str, str]) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(REPO_ROOT / "dags")).dags["llm_usage_daily"]


def _table(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT * FROM llmtally.usage_hourly ORDER BY 1, 2, 3, 4, 5, 6, 7").fetchall()


def test_day_param_run_loads_exact_totals_and_writes_the_report(
    dag: Any, env: dict[str, str], logs: Path
) -> None:
    run = dag.test(run_conf={"day": LAST.isoformat()})
    assert run.state == "success"
    want = expected_totals(logs, LAST)
    assert want.requests > 0
    # the oracle covers every billing path: reported usage, the recount (no usage), failed calls
    assert {"reported", "ok", "error", "timeout", "abandoned"} <= set(want.by_source), want.by_source
    assert day_totals(env["AIRFLOW_CONN_LLM_USAGE_DB"], LAST) == (
        want.requests,
        want.prompt_tokens,
        want.completion_tokens,
    )
    report = Path(env["LLMTALLY_REPORT_DIR"]) / f"report-{LAST.isoformat()}.html"
    assert report.is_file() and report.with_suffix(".json").is_file()
    assert not any(Path(env["LLMTALLY_STAGING_DIR"]).rglob("*.json.gz")), "staging not cleaned up"


def test_logical_date_reports_the_day_its_interval_starts(dag: Any, env: dict[str, str], logs: Path) -> None:
    # A scheduled run's logical date is the interval start: 02:00 Shanghai on the day it reports.
    # dag.test infers the interval that ended last before the given time, so 02:00 on the 20th + 1 day
    run = dag.test(logical_date=datetime(2026, 11, 21, 2, 0, tzinfo=ZoneInfo(TZ)))
    assert run.state == "success"
    assert run.data_interval_start.astimezone(ZoneInfo(TZ)).date() == LAST
    want = expected_totals(logs, LAST)
    assert day_totals(env["AIRFLOW_CONN_LLM_USAGE_DB"], LAST)[0] == want.requests


def test_reruns_and_any_backfill_order_give_the_same_tables(
    dag: Any, env: dict[str, str], logs: Path
) -> None:
    dsn = env["AIRFLOW_CONN_LLM_USAGE_DB"]
    for day in DAYS:
        assert dag.test(run_conf={"day": day.isoformat()}).state == "success"
    in_order = _table(dsn)
    for day in reversed(DAYS):
        assert dag.test(run_conf={"day": day.isoformat()}).state == "success"
    assert _table(dsn) == in_order
    for day in DAYS:
        want = expected_totals(logs, day)
        assert day_totals(dsn, day) == (want.requests, want.prompt_tokens, want.completion_tokens)


def test_dry_run_loads_nothing(dag: Any, env: dict[str, str]) -> None:
    dsn = env["AIRFLOW_CONN_LLM_USAGE_DB"]
    day = LAST - timedelta(days=5)  # no logs were generated for it
    before = _table(dsn)
    run = dag.test(run_conf={"day": day.isoformat(), "dry_run": True})
    assert run.state == "success"
    assert _table(dsn) == before


def test_resend_dag_mails_a_past_day_from_the_aggregates(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import email
    import json
    from email.policy import default

    from airflow.dag_processing.dagbag import DagBag

    from tests.report.smtp_sink import SmtpSink

    day = DAYS[0]
    dag = DagBag(str(REPO_ROOT / "dags")).dags["llm_usage_daily"]
    assert dag.test(run_conf={"day": day.isoformat()}).state == "success"
    resend = DagBag(str(REPO_ROOT / "dags")).dags["llm_usage_report"]
    with SmtpSink() as sink:
        conn = {"conn_type": "smtp", "host": "127.0.0.1", "port": sink.port,
                "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "llmtally@example.com"}}  # fmt: skip
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(conn))
        run = resend.test(run_conf={"day": day.isoformat(), "recipients": ["ops@example.com"], "lang": "en"})
    assert run.state == "success"
    assert len(sink.messages) == 1 and sink.messages[0].recipients == ["ops@example.com"]
    msg = email.message_from_bytes(sink.messages[0].data, policy=default)
    assert day.isoformat() in str(msg["Subject"])
    html = msg.get_body(preferencelist=("html",))
    assert html is not None
    _, prompt, completion = day_totals(env["AIRFLOW_CONN_LLM_USAGE_DB"], day)
    assert f"{prompt + completion:,}" in html.get_content()
    assert sum(1 for part in msg.walk() if part.get_content_type() == "image/png") >= 3


def test_recount_in_small_slices_gives_the_same_day(
    dag: Any, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmtally.jobs import daily

    dsn = env["AIRFLOW_CONN_LLM_USAGE_DB"]
    assert dag.test(run_conf={"day": LAST.isoformat()}).state == "success"
    whole = _table(dsn)
    monkeypatch.setattr(daily, "RECOUNT_CHUNK", 7)  # the day streams through in many slices
    assert dag.test(run_conf={"day": LAST.isoformat()}).state == "success"
    assert _table(dsn) == whole
