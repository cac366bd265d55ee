"""What Airflow's tasks call: the daily job's steps (:mod:`llmtally.jobs.daily`) and maintenance.

Imported by tasks only (never at DAG parse time); :func:`report_day` is the one pure rule of which
day a run reports.
"""

from ._day import day_bounds, report_day

__all__ = ["day_bounds", "report_day"]
