"""DAG integrity: imports fast, no import errors, tasks and queues as documented."""

from __future__ import annotations

import subprocess
import sys

from tests.support import REPO_ROOT


def test_dag_file_imports_fast_and_light() -> None:
    """Parsing the DAG file imports nothing heavy: no counting, database, report or job code (what
    keeps it fast is what it imports; its time is not asserted: timings belong in bench/)."""
    heavy = ("llmtally.jobs", "llmtally.pipeline", "llmtally.store", "llmtally.report", "llmtally.tokens",
             "transformers", "torch", "pandas", "matplotlib", "tokenizers", "tiktoken", "psycopg")  # fmt: skip
    code = (
        "import sys, runpy; "
        f"runpy.run_path({str(REPO_ROOT / 'dags' / 'llm_usage_daily.py')!r}); "
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1:] in ([], [""]), f"DAG parsing imported {out.stdout.strip()}"


def test_dagbag_has_no_import_errors_and_documented_tasks() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(REPO_ROOT / "dags"))
    assert bag.import_errors == {}
    dag = bag.dags["llm_usage_daily"]
    assert {t.task_id for t in dag.tasks} == {
        "plan",
        "collect",
        "parse",
        "recount",
        "reconcile",
        "load",
        "report",
        "cleanup",
    }
    assert dag.get_task("recount").queue == "gpu"
    assert dag.get_task("parse").queue == "default"
    assert dag.catchup is True
    assert set(dag.params.keys()) == {"day", "sources", "recipients", "lang", "dry_run", "force"}
    assert dag.params["force"] is False  # replacing a day with less evidence must be asked for
    assert dag.get_task("cleanup").trigger_rule == "all_success"  # a failed run keeps its staging
    assert dag.get_task("load").retries == 2
    assert dag.get_task("recount").execution_timeout is not None
    # collect -> parse -> recount -> reconcile -> load -> report -> cleanup
    assert dag.get_task("recount").upstream_task_ids == {"plan", "parse"}
    assert dag.get_task("report").upstream_task_ids == {"plan", "load"}


def test_maintenance_and_resend_dags() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(REPO_ROOT / "dags"))
    assert bag.import_errors == {}
    maint = bag.dags["llm_usage_maintenance"]
    assert {t.task_id for t in maint.tasks} == {"purge_raw_logs", "purge_quarantine", "purge_staging"}
    assert maint.catchup is False
    resend = bag.dags["llm_usage_report"]
    assert type(resend.timetable).__name__ == "NullTimetable"  # manual only
    assert set(resend.params.keys()) == {"day", "recipients", "lang"}
    assert resend.get_task("send_report").retries == 3
