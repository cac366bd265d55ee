"""What Airflow's tasks call: the daily job's steps (:mod:`llmtally.jobs.daily`) and maintenance.

Imported by tasks only (never at DAG parse time).  The day rule lives in :mod:`llmtally._time`, below
every layer, so the pipeline and the report never import this package.
"""

from .._time import day_bounds, report_day

__all__ = ["day_bounds", "report_day"]
