"""llm_usage_maintenance: enforce retention ([retention] in llmtally.toml) once a day.

Deletes raw usage logs past ``raw_log_days`` where their volume is writable, quarantined lines past
``quarantine_days`` and staging folders of failed or killed runs.  Aggregates are never purged.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task

from llmtally._dag_params import MAINTENANCE_PARAMS
from llmtally._time import report_timezone

TZ = report_timezone()  # LLMTALLY_TIMEZONE > llmtally.toml > Asia/Shanghai


@dag(
    dag_id="llm_usage_maintenance",
    schedule="30 3 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz=TZ),
    catchup=False,
    default_args={
        "retries": 1,
        "retry_delay": timedelta(minutes=10),
        "execution_timeout": timedelta(hours=1),
    },
    tags=["llmtally"],
    params={name: Param(**spec) for name, spec in MAINTENANCE_PARAMS.items()},  # see _dag_params
    doc_md=__doc__,
)
def llm_usage_maintenance() -> None:
    @task
    def purge_raw_logs(params: dict[str, object] | None = None) -> dict[str, object]:
        from llmtally.jobs import maintenance

        return maintenance.purge_from_airflow("raw_logs", params or {})

    @task
    def purge_quarantine(params: dict[str, object] | None = None) -> dict[str, object]:
        from llmtally.jobs import maintenance

        return maintenance.purge_from_airflow("quarantine", params or {})

    @task
    def purge_staging(params: dict[str, object] | None = None) -> dict[str, object]:
        from llmtally.jobs import maintenance

        return maintenance.purge_from_airflow("staging", params or {})

    purge_raw_logs()
    purge_quarantine()
    purge_staging()


llm_usage_maintenance()
