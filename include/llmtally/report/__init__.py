"""The daily report: aggregates in PostgreSQL → JSON summary, charts, HTML email, archive.

The DAG's report task calls :func:`run_daily_report`; ``llmtally report`` and ``llmtally compare``
are thin layers over the same functions.  Reports are built from aggregates only and never contain
prompt or completion text.  Needs the ``pipeline`` extra (psycopg, matplotlib) and, for Chinese
charts, a CJK font (Debian: ``fonts-noto-cjk``).
"""

from ._anomalies import Anomaly, Thresholds, detect_anomalies
from ._compare import ModelStats, detect_model_changes, model_stats, tokenizer_efficiency
from ._compute import summarize
from ._data import ReportData, fetch_report_data
from ._render import Report, build_report
from ._run import ReportResult, ReportSettings, archive_report, make_report, run_daily_report, write_report
from ._send import AirflowSmtpNotifier, Notifier, SmtpNotifier, build_message, parse_recipients, send_report

__all__ = [
    "AirflowSmtpNotifier",
    "Anomaly",
    "ModelStats",
    "Notifier",
    "Report",
    "ReportData",
    "ReportResult",
    "ReportSettings",
    "SmtpNotifier",
    "Thresholds",
    "archive_report",
    "build_message",
    "build_report",
    "detect_anomalies",
    "detect_model_changes",
    "fetch_report_data",
    "make_report",
    "model_stats",
    "parse_recipients",
    "run_daily_report",
    "send_report",
    "summarize",
    "tokenizer_efficiency",
    "write_report",
]
