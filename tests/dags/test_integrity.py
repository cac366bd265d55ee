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
        "shards",
        "recount",
        "reconcile",
        "load",
        "report",
        "cleanup",
    }
    assert dag.get_task("recount").queue == "gpu"
    assert dag.get_task("recount").is_mapped  # one task instance per recount shard
    assert dag.get_task("parse").queue == "default"
    assert dag.catchup is True
    assert set(dag.params.keys()) == {"day", "sources", "recipients", "lang", "dry_run", "force"}
    assert dag.params["force"] is False  # replacing a day with less evidence must be asked for
    assert dag.get_task("cleanup").trigger_rule == "all_success"  # a failed run keeps its staging
    assert dag.get_task("load").retries == 2
    assert dag.get_task("recount").execution_timeout is not None
    # collect -> parse -> shards -> recount[0..n] -> reconcile -> load -> report -> cleanup
    assert dag.get_task("shards").upstream_task_ids == {"parse"}
    assert dag.get_task("recount").upstream_task_ids == {"plan", "shards"}
    assert dag.get_task("reconcile").upstream_task_ids == {"plan", "recount"}
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


def test_every_param_speaks_the_users_language() -> None:
    """The trigger form shows a title and a help text for every field, with an example wherever
    the field is typed in (not a tick box or a drop-down), and the form survives serialization
    (what the UI reads)."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    bag = DagBag(str(REPO_ROOT / "dags"))
    assert bag.import_errors == {}
    assert set(bag.dags) == {
        "llm_usage_daily",
        "llm_usage_hourly",
        "llm_usage_report",
        "llm_usage_maintenance",
    }
    for dag_id, dag in bag.dags.items():
        params = DagSerialization.to_dict(dag)["dag"]["params"]
        assert {name for name, _ in params} == set(dag.params.keys()), dag_id
        for name in dag.params:
            param = dag.params.get_param(name)
            schema = param.schema
            where = f"{dag_id}.{name}"
            title = schema.get("title", "")
            help_text = param.description or schema.get("description_md", "")
            assert " " in title and title != name, f"{where}: a title in words, not the bare name"
            assert len(help_text) >= 60, f"{where}: say what it does and what empty means"
            if schema.get("type") != "boolean" and "enum" not in schema:
                assert schema.get("examples") or "e.g." in help_text, f"{where}: give an example"
            for example in schema.get("examples", []):
                param.resolve(example)  # an example the form proposes is a valid value
        serialized = {name: p["schema"]["__var"] for name, p in params}
        assert all(s["title"] == dag.params.get_param(n).schema["title"] for n, s in serialized.items())
    lang = bag.dags["llm_usage_daily"].params.get_param("lang").schema
    assert set(lang["values_display"]) == set(lang["enum"])  # every choice has a label
