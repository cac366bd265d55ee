""" "Usage of this run": a real llm_usage_daily run (``dag.test()``: sample logs from the real
logger, exact recount, real PostgreSQL), its XComs read back from Airflow's metadata database by
the plugin's reader, and the view rendered from them and the store."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from llmtally.report import ReportSettings
from llmtally.store import MemoryStore, PostgresStore
from llmtally.web._run import RunFacts
from tests.e2e.expected import expected_totals, pipeline_env
from tests.support import REPO_ROOT, SHARED, environment
from tests.web.page import parse

TZ = "Asia/Shanghai"
DAY = date(2026, 11, 20)


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str, int]:
    """Sample logs of DAY with one malformed line added: the folder, the day's record count (the
    oracle's), the file and line number of the added line."""
    sys.path.insert(0, str(REPO_ROOT / "examples"))
    from sample_traffic import generate

    root = tmp_path_factory.mktemp("service-logs")
    generate(root, days=1, per_day=40, shared=SHARED, end=DAY)
    records = expected_totals(root, DAY).requests
    # one malformed line: the run quarantines it, with its reason
    victim = sorted(p for p in root.rglob("*.jsonl"))[0]
    line = victim.read_bytes().count(b"\n") + 1
    with victim.open("ab") as fh:
        fh.write(b'{"this is": not json}\n')
    return root, records, str(victim), line


@pytest.fixture(scope="module")
def env(
    airflow_db: str, logs: tuple[Path, int, str, int], pg_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    schema = f"web_run_{secrets.token_hex(3)}"
    values = {
        **pipeline_env(tmp_path_factory.mktemp("run"), logs[0], pg_dsn, SHARED),
        "LLMTALLY_DB_SCHEMA": schema,
    }
    with environment(values):
        yield values
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(scope="module")
def run(env: dict[str, str]) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(str(REPO_ROOT / "dags")).dags["llm_usage_daily"]
    dr = dag.test(run_conf={"day": DAY.isoformat()})
    assert dr.state == "success"
    return dr


@pytest.fixture
def client(env: dict[str, str]) -> Iterator[Any]:
    from contextlib import contextmanager

    from fastapi.testclient import TestClient

    from llmtally.web import create_app
    from llmtally.web.airflow import AirflowRuns

    @contextmanager
    def opener() -> Iterator[PostgresStore]:
        with PostgresStore(
            env["AIRFLOW_CONN_LLM_USAGE_DB"], schema=env["LLMTALLY_DB_SCHEMA"], migrate=False
        ) as s:
            yield s

    app = create_app(opener, runs=AirflowRuns(), timezone=TZ, settings=ReportSettings(lang="en"))
    with TestClient(app) as c:
        yield c


def facts(html: str) -> dict[str, str]:
    import re

    return dict(re.findall(r'data-fact="([a-z_]+)" data-value="([^"]*)"', html))


def test_the_view_of_a_real_run(
    client: Any, run: Any, env: dict[str, str], logs: tuple[Path, int, str, int]
) -> None:
    from llmtally.web.airflow import AirflowRuns

    recorded = AirflowRuns().read("llm_usage_daily", run.run_id)
    assert recorded is not None and recorded.state == "success"
    assert {"plan", "collect", "parse", "recount", "reconcile", "load", "report"} <= set(recorded.xcoms)
    r = client.get(f"/runs/llm_usage_daily/{run.run_id}")
    assert r.status_code == 200, r.text
    html = r.text
    shown = facts(html)
    records = logs[1]
    with psycopg.connect(env["AIRFLOW_CONN_LLM_USAGE_DB"]) as conn:
        row = conn.execute(
            f'SELECT sum(requests) FROM "{env["LLMTALLY_DB_SCHEMA"]}".usage_hourly WHERE day = %s', (DAY,)
        ).fetchone()
    requests = int(row[0]) if row else 0
    assert shown["run_day"] == DAY.isoformat() and shown["run_state"] == "success"
    assert int(shown["run_records"]) == records == requests
    page = parse(html)
    quarantined = page.tables["quarantine"]
    assert int(shown["quarantined"]) == len(quarantined) >= 1
    added = [q for q in quarantined if q["source"] == logs[2] and q["line"] == str(logs[3])]
    assert len(added) == 1 and added[0]["reason"] and len(added[0]["line_sha256"]) >= 16, quarantined
    assert "not json" not in html, "never the line's text"
    assert int(shown["run_files"]) == len(recorded.xcoms["collect"]["files"]) > 0
    assert shown["run_drift"] == str(recorded.xcoms["reconcile"]["drift_records"])
    engines = page.tables["recount"]
    assert {e["model"] for e in engines} == set(recorded.xcoms["recount"]["engines"])
    for e in engines:
        facts_of = recorded.xcoms["recount"]["engines"][e["model"]]
        assert e["engine"] == facts_of["engine"] and int(e["counted"]) == facts_of["records"] > 0
        if facts_of["seconds"]:
            assert int(e["per_second"]) == round(facts_of["records"] / facts_of["seconds"])
        else:  # counted faster than the millisecond the summary keeps
            assert e["per_second"] == ""
    files = {f["file"]: f["records"] for f in page.tables["files"]}
    assert set(files) == set(recorded.xcoms["collect"]["files"])
    assert sum(int(v) for v in files.values() if v) == records
    # the report it wrote (no recipients here) is archived and linked
    assert shown["report_file"].endswith(f"report-{DAY}.html")
    assert client.get(f"/reports/{DAY}/zh").status_code == 200
    assert f'href="/?day={DAY}&amp;lang=en"' in html
    csv = client.get(f"/runs/llm_usage_daily/{run.run_id}/csv/quarantine")
    assert (
        csv.status_code == 200 and csv.content.startswith(b"\xef\xbb\xbf") and b"line_sha256" in csv.content
    )


def test_other_runs_and_missing_runs(client: Any, run: Any) -> None:
    zh = client.get(f"/runs/llm_usage_daily/{run.run_id}?lang=zh")
    assert zh.status_code == 200 and "本次运行的用量" in zh.text and "重算" in zh.text
    assert client.get("/runs/llm_usage_daily/no-such-run").status_code == 404
    assert client.get(f"/runs/llm_usage_daily/{run.run_id}?table=x").status_code == 400
    assert client.get(f"/runs/llm_usage_daily/{run.run_id}/csv/usage_hourly").status_code == 404


def test_a_later_load_and_other_dags_are_explained() -> None:
    from llmtally.web._i18n import words
    from llmtally.web._run import read_run
    from tests.store.days import day_load

    w = words("en")
    with MemoryStore() as store:
        store.load_day(day_load(DAY, run_id="first"))
        store.load_day(day_load(DAY, run_id="second"), force=True)
        xcoms = {"plan": {"day": DAY.isoformat()}, "load": {"loaded": True}}
        first = read_run(store, RunFacts("llm_usage_daily", "first", "success", xcoms), w)
        assert first.replaced_by == "second" and not first.tables["quarantine"].rows
        second = read_run(store, RunFacts("llm_usage_daily", "second", "success", xcoms), w)
        assert second.replaced_by is None and second.tables["quarantine"].rows
        assert dict(second.facts)["forced"] is True
        other = read_run(store, RunFacts("some_dag", "r", "success", {}), w)
        assert other.message is not None and "some_dag" in other.message and not other.tables
        early = read_run(store, RunFacts("llm_usage_daily", "r", "running", {}), w)
        assert early.message == w["run_no_plan"]
        dry = read_run(store, RunFacts("llm_usage_daily", "dry", "success",
                                       {"plan": {"day": (DAY - timedelta(days=1)).isoformat(), "dry_run": True},
                                        "load": {"loaded": False, "dry_run": True}}), w)  # fmt: skip
        assert dry.message == w["not_loaded_run"] and dict(dry.facts)["dry_run"] is True
