"""The DAGs' trigger-form fields: titles, descriptions and examples in the README's words.

Plain JSON-schema keyword dicts (no Airflow import, so DAG files stay fast to parse); a DAG file
wraps each in ``airflow.sdk.Param(**spec)``.  Airflow's form shows ``title`` as the label,
``description_md`` (Markdown) under the field, ``examples`` as proposals for a text field,
``values_display`` as the labels of a drop-down, and groups fields by ``section``, a group shown
collapsed: what to process (day, sources, dry run, force) has no section, so it shows open at the
top.  Free-text lists (``sources``, ``recipients``) and the day give their examples in the
description: ``examples`` on an array would turn the field into a pick list of those values only,
and on the day it would replace the form's date picker (the UI test types into that picker).
"""

from __future__ import annotations

from typing import Any

__all__ = ["DAILY_PARAMS", "INTRADAY_PARAMS", "MAINTENANCE_PARAMS", "REPORT_PARAMS"]

_REPORT = "Report"

_DAY = {
    "default": None,
    "type": ["null", "string"],
    "format": "date",
    "title": "Day to process",
    "description_md": (
        "The **local day** (in the report time zone, Asia/Shanghai unless `LLMTALLY_TIMEZONE` or "
        "`timezone` in llmtally.toml says otherwise) whose usage is collected, recounted, loaded into "
        "PostgreSQL and reported, e.g. `2026-11-20`.  Leave empty for the day this run's schedule "
        "covers (a manual run: yesterday).  Re-running a day replaces it; it never double counts."
    ),
}

_LANG = {
    "default": None,
    "type": ["null", "string"],
    "enum": [None, "zh", "en"],
    "values_display": {
        None: "As configured ([report] lang, else Chinese)",
        "zh": "中文 (Chinese)",
        "en": "English",
    },
    "title": "Report language",
    "description_md": (
        "Language of the report email and its charts: `zh` (中文) or `en` (English).  Empty: "
        "`LLMTALLY_REPORT_LANG`, else `[report] lang` in llmtally.toml, else Chinese."
    ),
    "section": _REPORT,
}

_RECIPIENTS = {
    "default": None,
    "type": ["null", "array"],
    "items": {"type": "string"},
    "title": "Send the report to",
    "description_md": (
        "Email addresses, one per line, e.g. `finops@example.com`.  Empty: the Airflow Variable "
        "`llm_usage_report_recipients`; when that is empty too, the report is written and archived "
        "but not mailed.  Mail goes out through the `smtp_default` connection."
    ),
    "section": _REPORT,
}

DAILY_PARAMS: dict[str, dict[str, Any]] = {
    "day": _DAY,
    "sources": {
        "default": None,
        "type": ["null", "array"],
        "items": {"type": "string"},
        "title": "Usage log folders",
        "description_md": (
            "Where the services' raw usage logs are: folders or glob patterns, one per line, e.g. "
            "`/app/logs/cs-bot` or `/var/log/llm/*/usage-*.jsonl`.  Empty: the Airflow Variable "
            "`llm_usage_log_dirs`, else `LLMTALLY_LOG_DIRS`."
        ),
    },
    "recipients": _RECIPIENTS,
    "lang": _LANG,
    "dry_run": {
        "default": False,
        "type": "boolean",
        "title": "Dry run (change nothing)",
        "description_md": (
            "Collect, parse, recount and reconcile the day and write the numbers to the task logs, but "
            "do **not** load PostgreSQL or send the report.  Use it to check a new log folder or tokenizer."
        ),
    },
    "force": {
        "default": False,
        "type": "boolean",
        "title": "Replace the day even with less evidence",
        "description_md": (
            "A day is never replaced by a run that found fewer records, or fewer records from any log "
            "file, than the day already holds (e.g. after retention purged its raw logs): the load "
            "fails and names the files.  Tick this to replace it anyway; the ledger marks the load as "
            "forced."
        ),
    },
}
"""``llm_usage_daily``: day, sources, recipients, lang, dry_run, force."""

INTRADAY_PARAMS: dict[str, dict[str, Any]] = {
    "sources": DAILY_PARAMS["sources"],
    "lang": {
        **_LANG,
        "title": "Alert language",
        "description_md": (
            "Language of the alerts this run sends: `zh` (中文) or `en` (English); a channel whose "
            "connection sets `lang` keeps its own.  Empty: `[report] lang` in llmtally.toml, else Chinese."
        ),
        "section": "Alerts",
    },
    "alerts": {
        "default": True,
        "type": "boolean",
        "title": "Send alerts",
        "description_md": (
            "Evaluate budgets and anomalies on the day so far and notify their channels.  Untick to "
            "load the provisional numbers only."
        ),
        "section": "Alerts",
    },
    "dry_run": DAILY_PARAMS["dry_run"],
}
"""``llm_usage_hourly``: sources, lang, alerts, dry_run (the day so far is the run's own cut)."""

REPORT_PARAMS: dict[str, dict[str, Any]] = {
    "day": {
        **_DAY,
        "title": "Day to report",
        "description_md": (
            "The local day whose report is rendered again from the aggregates in PostgreSQL (no "
            "recount, no reload), e.g. `2026-11-20`.  Empty: yesterday."
        ),
        "section": _REPORT,
    },
    "recipients": _RECIPIENTS,
    "lang": _LANG,
}
"""``llm_usage_report``: day, recipients, lang."""

MAINTENANCE_PARAMS: dict[str, dict[str, Any]] = {
    "dry_run": {
        "default": False,
        "type": "boolean",
        "title": "Dry run (delete nothing)",
        "description_md": (
            "List in the task logs what retention (`[retention]` in llmtally.toml: raw logs after "
            "`raw_log_days`, quarantined lines after `quarantine_days`, failed runs' staging after "
            "`staging_hours`) would delete, and delete nothing.  Aggregates are never purged."
        ),
    },
}
"""``llm_usage_maintenance``: dry_run."""
