"""llm_usage_hourly: today's LLM usage so far, loaded as a provisional day; budgets and alerts.

Every hour (``LLMTALLY_INTRADAY_MINUTES``: 15, 20, 30 or 60) the run cuts the current local day at
its logical time, loads the records logged before the cut as a **provisional** day (the daily run
replaces it with the final one), then evaluates budgets and anomalies on the day so far and
notifies their channels.  Incremental: each run recounts only records no earlier run of the day
recounted.  Wiring only: every task is one call into ``llmtally.jobs``.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import CronTriggerTimetable, Param, dag, get_current_context, task

from llmtally._dag_params import INTRADAY_PARAMS
from llmtally._time import report_timezone

TZ = report_timezone()
RECOUNT_QUEUE = os.environ.get("LLMTALLY_RECOUNT_QUEUE", "gpu")
MINUTES = int(os.environ.get("LLMTALLY_INTRADAY_MINUTES", "60"))
if MINUTES not in (15, 20, 30, 60):
    raise ValueError(f"LLMTALLY_INTRADAY_MINUTES must be 15, 20, 30 or 60, not {MINUTES}")
CRON = "0 * * * *" if MINUTES == 60 else f"*/{MINUTES} * * * *"


@dag(
    dag_id="llm_usage_hourly",
    schedule=CronTriggerTimetable(CRON, timezone=TZ),
    start_date=pendulum.datetime(2026, 1, 1, tz=TZ),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=max(MINUTES * 2, 30)),
    default_args={"retries": 1, "retry_delay": timedelta(minutes=2), "execution_timeout": timedelta(hours=1)},
    tags=["llmtally"],
    params={name: Param(**spec) for name, spec in INTRADAY_PARAMS.items()},
    doc_md=__doc__,
)
def llm_usage_hourly() -> None:
    @task
    def plan() -> dict[str, object]:
        from llmtally.jobs import intraday

        return intraday.plan_from_context(get_current_context())

    @task
    def collect(p: dict[str, object]) -> dict[str, object]:
        from llmtally.jobs import daily

        return daily.collect(p)

    @task
    def parse(p: dict[str, object], files: dict[str, object]) -> dict[str, object]:
        from llmtally.jobs import daily

        return daily.parse(p, files)

    @task
    def shards(parsed: dict[str, Any]) -> list[int]:
        """The recount shards' numbers: Airflow maps over a task's return value, not over a key."""
        return list(parsed["shards"])

    @task(queue=RECOUNT_QUEUE, map_index_template="shard {{ task.op_kwargs['shard'] }}")
    def recount(p: dict[str, object], shard: int) -> dict[str, object]:
        from llmtally.jobs import daily

        return daily.recount(p, shard)

    @task
    def reconcile(p: dict[str, object], counted: list[dict[str, object]]) -> dict[str, object]:
        from llmtally.jobs import daily

        return daily.reconcile(p, counted)

    @task
    def load(p: dict[str, object], reconciled: dict[str, object]) -> dict[str, object]:
        from llmtally.jobs import daily

        return daily.load(p, reconciled)

    @task(retries=0)
    def alert(p: dict[str, object], loaded: dict[str, object]) -> dict[str, object]:
        from llmtally.jobs import intraday

        return intraday.alert(p, loaded)

    # Whatever the alerts did (their findings are claimed: a re-run would not resend them), the run's
    # staging goes; the day's recount cache stays for the next run.
    @task(retries=0, trigger_rule="all_done")
    def cleanup(p: dict[str, object]) -> None:
        from llmtally.jobs import daily

        daily.cleanup(p)

    p = plan()
    counted = recount.partial(p=p).expand(shard=shards(parse(p, collect(p))))
    loaded = load(p, reconcile(p, counted))
    alert(p, loaded) >> cleanup(p)


llm_usage_hourly()
