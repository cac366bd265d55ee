"""llm_usage_daily: yesterday's LLM usage, recounted exactly, loaded into PostgreSQL, reported.

Scheduled at 02:00 Asia/Shanghai; the run whose data interval starts on day D reports D (see
``llmtally._time``).  Trigger with ``{"day": "YYYY-MM-DD"}`` to (re)process any day; a re-run
replaces that day.  Wiring only: every task is one call into ``llmtally.jobs.daily``.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, dag, get_current_context, task

from llmtally._dag_params import DAILY_PARAMS
from llmtally._time import report_timezone

# The report time zone: LLMTALLY_TIMEZONE > llmtally.toml > Asia/Shanghai, the same function the
# day rule and the report use (a light import: no tokenizer, database or pandas).
TZ = report_timezone()
RECOUNT_QUEUE = os.environ.get("LLMTALLY_RECOUNT_QUEUE", "gpu")
# History to catch up on when the DAG is first unpaused (backfills can go further back).
START = pendulum.parse(os.environ.get("LLMTALLY_START_DATE", "2026-01-01"), tz=TZ)
CATCHUP = os.environ.get("LLMTALLY_CATCHUP", "true").lower() in ("1", "true", "yes")


@dag(
    dag_id="llm_usage_daily",
    schedule=CronDataIntervalTimetable("0 2 * * *", timezone=TZ),
    start_date=START,
    catchup=CATCHUP,
    max_active_runs=4,
    dagrun_timeout=timedelta(hours=6),
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5), "execution_timeout": timedelta(hours=2)},
    tags=["llmtally"],
    params={name: Param(**spec) for name, spec in DAILY_PARAMS.items()},  # titles, help: _dag_params
    doc_md=__doc__,
)
def llm_usage_daily() -> None:
    @task
    def plan() -> dict[str, object]:
        from llmtally.jobs import daily

        return daily.plan_from_context(get_current_context())

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

    @task(retries=3, retry_delay=timedelta(minutes=2))
    def report(p: dict[str, object], loaded: dict[str, object]) -> dict[str, object]:
        from llmtally.jobs import daily

        return daily.report(p, loaded)

    # Only after a successful run (the default all_success): a failed run keeps its staging, so a
    # cleared task re-runs; llm_usage_maintenance purges what failed runs leave behind.
    @task(retries=0)
    def cleanup(p: dict[str, object]) -> None:
        from llmtally.jobs import daily

        daily.cleanup(p)

    p = plan()
    counted = recount.partial(p=p).expand(shard=shards(parse(p, collect(p))))
    loaded = load(p, reconcile(p, counted))
    report(p, loaded) >> cleanup(p)


llm_usage_daily()
