"""llm_usage_hourly's alert task in real ``dag.test()`` runs: a budget passed on the day so far is
sent once per threshold and period to its channels (a webhook and a signed DingTalk robot, local
receivers that check the vendor's signature), re-runs send nothing again, and a channel that is down
fails the task only after the others were delivered."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from tests.alerts.receivers import DingTalk, Receiver, Webhook, closed_port_url
from tests.e2e.expected import pipeline_env
from tests.support import REPO_ROOT, SHARED, environment

TZ = "Asia/Shanghai"
DAY = date(2026, 11, 12)  # a day no other test module loads
SCHEMA = "llmtally_alerts"
SECRET = "SEC-test-secret"


def local(hour: int) -> datetime:
    return datetime(DAY.year, DAY.month, DAY.day, tzinfo=ZoneInfo(TZ)) + timedelta(hours=hour)


@pytest.fixture(scope="module")
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    with Receiver(Webhook(secret=SECRET)) as hook, Receiver(DingTalk("tok", secret=SECRET)) as ding:
        yield hook, ding


@pytest.fixture(scope="module")
def env(
    airflow_db: str,
    pg_dsn: str,
    receivers: tuple[Receiver, Receiver],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, str]]:
    sys.path.insert(0, str(REPO_ROOT / "examples"))
    from sample_traffic import generate

    logs = tmp_path_factory.mktemp("service-logs")
    generate(logs, days=1, per_day=120, shared=SHARED, end=DAY)
    hook, ding = receivers
    values = {
        **pipeline_env(tmp_path_factory.mktemp("run"), logs, pg_dsn, SHARED),
        "LLMTALLY_DB_SCHEMA": SCHEMA,
    }
    config = Path(values["LLMTALLY_CONFIG"])
    config.write_text(
        config.read_text("utf-8")
        + """
[[budgets]]
name = "chat-api daily tokens"
match = { service = "chat-api" }
limit = 2000
unit = "tokens"
period = "day"
thresholds = [0.5, 1.0]
channels = ["alerts_hook", "alerts_ding", "alerts_down"]
""",
        "utf-8",
    )
    values |= {
        "AIRFLOW_CONN_ALERTS_HOOK": json.dumps(
            {
                "conn_type": "http",
                "host": f"{hook.base}/hook",
                "password": SECRET,
                "extra": {"channel": "webhook"},
            }
        ),
        "AIRFLOW_CONN_ALERTS_DING": json.dumps(
            {
                "conn_type": "http",
                "host": f"{ding.base}/robot/send?access_token=tok",
                "password": SECRET,
                "extra": {"channel": "dingtalk", "lang": "zh"},
            }
        ),
        "AIRFLOW_CONN_ALERTS_DOWN": json.dumps(
            {"conn_type": "http", "host": closed_port_url(), "extra": {"channel": "webhook"}}
        ),
    }
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
    with environment(values):
        yield values


def _budget_findings(request: Any) -> list[dict[str, Any]]:
    return [f for f in request.json()["findings"] if f["kind"] == "budget"]


def test_a_budget_alert_reaches_every_working_channel_once_per_threshold(
    env: dict[str, str], receivers: tuple[Receiver, Receiver]
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    hook, ding = receivers
    dag = DagBag(str(REPO_ROOT / "dags")).dags["llm_usage_hourly"]
    run = dag.test(logical_date=local(18))
    states = {t.task_id: t.state for t in run.get_task_instances()}
    assert states["load"] == "success"
    assert states["alert"] == "failed"  # the channel that is down fails it, after the others were sent
    assert len(hook.requests) == 1 and len(ding.requests) == 1
    (finding,) = _budget_findings(hook.requests[0])
    assert finding["severity"] == "critical" and finding["data"]["budget"] == "chat-api daily tokens"
    assert "chat-api daily tokens" in ding.requests[0].json()["markdown"]["text"]
    with psycopg.connect(env["AIRFLOW_CONN_LLM_USAGE_DB"]) as conn:
        fired = conn.execute(
            f'SELECT threshold FROM "{SCHEMA}".budget_alerts WHERE budget = %s ORDER BY 1',
            ("chat-api daily tokens",),
        ).fetchall()
    assert [t for (t,) in fired] == [0.5, 1.0]

    # the next runs of the day: the thresholds already fired, nothing is sent again
    for hour in (19, 18):
        dag.test(logical_date=local(hour))
        assert len(hook.requests) == 1 and len(ding.requests) == 1
