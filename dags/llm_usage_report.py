"""llm_usage_report: re-render and re-send the report of any past day from the aggregates.

No recount, no reload: the report reads PostgreSQL only.  Trigger from the UI with a day, and
optionally other recipients or language.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from llmtally._dag_params import REPORT_PARAMS
from llmtally._time import report_timezone

TZ = report_timezone()  # LLMTALLY_TIMEZONE > llmtally.toml > Asia/Shanghai


@dag(
    dag_id="llm_usage_report",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz=TZ),
    catchup=False,
    tags=["llmtally"],
    params={name: Param(**spec) for name, spec in REPORT_PARAMS.items()},  # titles, help: _dag_params
    doc_md=__doc__,
)
def llm_usage_report() -> None:
    @task(retries=3, retry_delay=timedelta(minutes=2))
    def send_report() -> dict[str, object]:
        from llmtally.jobs import daily

        return daily.resend(get_current_context())

    send_report()


llm_usage_report()
