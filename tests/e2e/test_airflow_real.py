"""llm_usage_daily on a real Airflow: REST trigger with params, a backfill through the scheduler,
the UI in headless Chromium, and a failed run whose cleared task re-runs.  The usage aggregates go
to a fresh database on the machine's PostgreSQL; the raw logs come from the sample traffic
generator (the real UsageLogger)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from tests.e2e.airflow_server import AirflowServer, airflow_standalone, usage_database, write_task_policy
from tests.e2e.expected import day_totals, expected_totals, pipeline_env
from tests.e2e.expected import sample_logs as write_sample_logs
from tests.support import REPO_ROOT, SHARED

pytestmark = pytest.mark.slow

TZ = "Asia/Shanghai"
LAST_DAY = date(2026, 11, 20)
DAYS = [LAST_DAY - timedelta(days=n) for n in range(7, -1, -1)]  # 8 days: 13th .. 20th


@pytest.fixture(scope="module")
def sample_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_logs(tmp_path_factory.mktemp("service-logs"), days=len(DAYS), per_day=60, end=LAST_DAY,
                             shared=SHARED)  # fmt: skip


@pytest.fixture(scope="module")
def usage_db() -> Iterator[str]:
    yield from usage_database()


@pytest.fixture(scope="module")
def airflow(
    tmp_path_factory: pytest.TempPathFactory, sample_logs: Path, usage_db: str
) -> Iterator[AirflowServer]:
    home = tmp_path_factory.mktemp("airflow-home")
    # here the recount fails at its first try instead of retrying twice 5 minutes apart
    write_task_policy(home, "task.retries = 0")
    env = {
        **pipeline_env(home, sample_logs, usage_db, SHARED),
        "LLMTALLY_START_DATE": DAYS[0].isoformat(),
        "LLMTALLY_CATCHUP": "false",
        "LLMTALLY_RECOUNT_QUEUE": "default",
    }
    with airflow_standalone(home, env) as server:
        server.wait_for_dag("llm_usage_daily")
        assert server.api("PATCH", "/dags/llm_usage_daily", json={"is_paused": False}).status_code == 200
        yield server


def _snapshot(dsn: str, days: list[date]) -> list[tuple[Any, ...]]:
    first = datetime(days[0].year, days[0].month, days[0].day, tzinfo=ZoneInfo(TZ))
    end = first + timedelta(days=len(days))
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT hour, model, feature, user_id, tenant, service, requests, prompt_tokens, completion_tokens,"
            " cached_tokens, recounted_prompt_tokens, recounted_completion_tokens, estimated_prompt_tokens,"
            " estimated_completion_tokens, cost, currency FROM llmtally.usage_hourly"
            " WHERE hour >= %s AND hour < %s ORDER BY 1, 2, 3, 4, 5, 6",
            (first, end),
        ).fetchall()


def _trigger(af: AirflowServer, day: date) -> str:
    r = af.api(
        "POST", "/dags/llm_usage_daily/dagRuns", json={"logical_date": None, "conf": {"day": day.isoformat()}}
    )
    assert r.status_code == 200, r.text
    return str(r.json()["dag_run_id"])


def test_rest_trigger_with_day_param_loads_exact_aggregates(
    airflow: AirflowServer, sample_logs: Path, usage_db: str
) -> None:
    run_id = _trigger(airflow, LAST_DAY)
    state = airflow.wait_for_run("llm_usage_daily", run_id)
    assert state == "success", airflow.task_states("llm_usage_daily", run_id)
    want = expected_totals(sample_logs, LAST_DAY)
    assert want.requests > 0
    assert day_totals(usage_db, LAST_DAY) == (want.requests, want.prompt_tokens, want.completion_tokens)
    # re-running the day changes nothing
    before = _snapshot(usage_db, [LAST_DAY])
    assert airflow.wait_for_run("llm_usage_daily", _trigger(airflow, LAST_DAY)) == "success"
    assert _snapshot(usage_db, [LAST_DAY]) == before


def test_backfill_of_seven_days_equals_seven_single_runs(
    airflow: AirflowServer, sample_logs: Path, usage_db: str
) -> None:
    week = DAYS[:7]
    env = {**os.environ, "AIRFLOW_HOME": str(airflow.home)}
    # the backfill's logical dates are the 02:00 local starts of the data intervals of those days
    out = subprocess.run(
        [
            str(Path(sys.executable).with_name("airflow")),
            "backfill",
            "create",
            "--dag-id",
            "llm_usage_daily",
            "--from-date",
            f"{week[0].isoformat()}T02:00:00+08:00",
            "--to-date",
            f"{week[-1].isoformat()}T02:00:00+08:00",
            "--max-active-runs",
            "2",
        ],
        env={**env, **_airflow_env(airflow)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    runs = _wait_backfill(airflow, len(week))
    assert sorted(runs) == [d.isoformat() for d in week]
    backfilled = _snapshot(usage_db, week)
    for day in week:
        want = expected_totals(sample_logs, day)
        assert day_totals(usage_db, day) == (want.requests, want.prompt_tokens, want.completion_tokens), day
    for day in reversed(week):  # single runs, out of order
        assert airflow.wait_for_run("llm_usage_daily", _trigger(airflow, day)) == "success"
    assert _snapshot(usage_db, week) == backfilled


def _airflow_env(af: AirflowServer) -> dict[str, str]:
    return {k: v for k, v in af.env.items() if k.startswith(("AIRFLOW", "LLMTALLY"))}


def _wait_backfill(af: AirflowServer, n: int, timeout: float = 900) -> list[str]:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = af.api(
            "GET", "/dags/llm_usage_daily/dagRuns", params={"run_type": "backfill", "limit": 100}
        ).json()
        done = [r for r in runs["dag_runs"] if r["state"] in ("success", "failed")]
        if len(done) >= n:
            assert all(r["state"] == "success" for r in done), [(r["dag_run_id"], r["state"]) for r in done]
            zone = ZoneInfo(TZ)
            return [
                datetime.fromisoformat(r["data_interval_start"]).astimezone(zone).date().isoformat()
                for r in done
            ]
        time.sleep(3)
    raise TimeoutError("backfill did not finish")


def test_trigger_from_the_ui_in_headless_chromium(airflow: AirflowServer, usage_db: str) -> None:
    from playwright.sync_api import sync_playwright

    artifacts = REPO_ROOT / "artifacts"
    artifacts.mkdir(exist_ok=True)
    day = DAYS[0]
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(airflow.base_url + "/")
        page.fill("input[name=username]", airflow.username)
        page.fill("input[name=password]", airflow.password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_load_state("networkidle")
        page.goto(airflow.base_url + "/dags/llm_usage_daily")
        page.get_by_role("button", name="Trigger").first.click()
        dialog = page.get_by_role("dialog")
        dialog.locator("input[type=date]").first.fill(day.isoformat())
        dialog.get_by_role("button", name="Trigger").click()
        page.wait_for_timeout(1000)
        run_id = _latest_manual_run(airflow)
        state = airflow.wait_for_run("llm_usage_daily", run_id)
        page.goto(f"{airflow.base_url}/dags/llm_usage_daily/runs/{run_id}")
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(1500)
        page.screenshot(path=str(artifacts / "airflow-ui-run.png"), full_page=True)
        text = page.inner_text("body")
        browser.close()
    assert state == "success"
    conf = airflow.api("GET", f"/dags/llm_usage_daily/dagRuns/{run_id}").json()["conf"]
    assert conf.get("day") == day.isoformat()
    assert "success" in text.lower()
    assert day_totals(usage_db, day)[0] > 0


def _latest_manual_run(af: AirflowServer) -> str:
    runs = af.api(
        "GET", "/dags/llm_usage_daily/dagRuns", params={"order_by": "-run_after", "limit": 1}
    ).json()
    return str(runs["dag_runs"][0]["dag_run_id"])


def test_a_cleared_failed_task_reruns_and_the_run_succeeds(
    airflow: AirflowServer, sample_logs: Path, usage_db: str
) -> None:
    # The recount worker's tokenizer folder is there but empty (a volume not populated yet): the
    # recount fails, the run fails and keeps its staging; the config is fixed, the failed task is
    # cleared with its downstream tasks (the UI's "Clear: only failed, downstream"), and it succeeds.
    day = DAYS[-2]
    config = Path(airflow.env["LLMTALLY_CONFIG"])
    good = config.read_text(encoding="utf-8")
    qwen = f'tokenizer = "{SHARED / "tokenizers" / "qwen3"}"'
    assert good.count(qwen) == 2, good  # qwen3-8b and its repo id
    empty = airflow.home / "tokenizers-not-copied-yet"
    empty.mkdir()
    try:
        config.write_text(good.replace(qwen, f'tokenizer = "{empty}"'), encoding="utf-8")
        run_id = _trigger(airflow, day)
        assert airflow.wait_for_run("llm_usage_daily", run_id) == "failed"
        states = airflow.task_states("llm_usage_daily", run_id)
        assert states["parse"] == "success" and states["recount"] == "failed", states
        assert {states[t] for t in ("reconcile", "load", "report", "cleanup")} == {"upstream_failed"}, states
        staging = _staging_folder(airflow, run_id)
        assert (staging / "parse.json.gz").is_file(), "a failed run keeps its staging"
        assert not (staging / "recount-0.json.gz").exists()
    finally:
        config.write_text(good, encoding="utf-8")
    r = airflow.api(
        "POST",
        "/dags/llm_usage_daily/clearTaskInstances",
        json={
            "dry_run": False,
            "dag_run_id": run_id,
            "task_ids": ["recount"],
            "include_downstream": True,
            "only_failed": True,
        },
    )
    assert r.status_code == 200, r.text
    cleared = {ti["task_id"] for ti in r.json()["task_instances"]}
    assert cleared == {"recount", "reconcile", "load", "report", "cleanup"}
    assert airflow.wait_for_run("llm_usage_daily", run_id) == "success", airflow.task_states(
        "llm_usage_daily", run_id
    )
    tis = airflow.api("GET", f"/dags/llm_usage_daily/dagRuns/{run_id}/taskInstances").json()
    tries = {ti["task_id"]: ti["try_number"] for ti in tis["task_instances"]}
    assert tries["parse"] == 1 and tries["recount"] == 2, tries  # parse's staging was reused
    want = expected_totals(sample_logs, day)
    assert want.requests > 0
    assert day_totals(usage_db, day) == (want.requests, want.prompt_tokens, want.completion_tokens)
    assert not staging.exists(), "a successful run removes its staging"


def _staging_folder(af: AirflowServer, run_id: str) -> Path:
    """The run's staging folder, as its plan task fixed it (read from the plan's XCom)."""
    r = af.api("GET", f"/dags/llm_usage_daily/dagRuns/{run_id}/taskInstances/plan/xcomEntries/return_value")
    assert r.status_code == 200, r.text
    value = r.json()["value"]
    plan = json.loads(value) if isinstance(value, str) else value
    return Path(plan["staging"])
