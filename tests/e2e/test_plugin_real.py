"""The usage page in a real Airflow: ``airflow standalone`` (api-server, scheduler, dag-processor,
LocalExecutor) with the plugin from ``plugins/`` and the SimpleAuthManager, aggregates loaded by
real ``llm_usage_daily`` runs, the UI driven in headless Chromium.

The numbers on the page, after its drill-down and in its CSV download are compared with
``usage_hourly`` read straight from PostgreSQL; an anonymous request is refused; the per-run view
opens from the run's page.  Screenshots go to ``artifacts/``.  Loopback only; each wait is bounded.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.e2e.airflow_server import AirflowServer, airflow_standalone, temp_database
from tests.e2e.expected import pipeline_env
from tests.support import REPO_ROOT, SHARED

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

LAST = date(2026, 11, 20)
DAYS = [LAST - timedelta(days=n) for n in range(2, -1, -1)]
ARTIFACTS = REPO_ROOT / "artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="module")
def usage_db() -> Iterator[str]:
    with temp_database("llmtally_web") as name:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory, usage_db: str) -> Iterator[AirflowServer]:
    sys.path.insert(0, str(REPO_ROOT / "examples"))
    from sample_traffic import generate

    logs = tmp_path_factory.mktemp("service-logs")
    generate(logs, days=len(DAYS), per_day=60, shared=SHARED, end=LAST)
    home = tmp_path_factory.mktemp("airflow-home")
    env = {
        **pipeline_env(home, logs, usage_db, SHARED),
        "LLMTALLY_START_DATE": DAYS[0].isoformat(),
        "LLMTALLY_CATCHUP": "false",
        "LLMTALLY_RECOUNT_QUEUE": "default",
        "LLMTALLY_REPORT_LANG": "en",
    }
    with airflow_standalone(home, env) as server:
        server.wait_for_dag("llm_usage_daily")
        assert server.api("PATCH", "/dags/llm_usage_daily", json={"is_paused": False}).status_code == 200
        yield server


@pytest.fixture(scope="module")
def runs(airflow: AirflowServer) -> dict[date, str]:
    """One successful llm_usage_daily run per day, loaded through the scheduler."""
    ids = {}
    for day in DAYS:
        r = airflow.api(
            "POST",
            "/dags/llm_usage_daily/dagRuns",
            json={"logical_date": None, "conf": {"day": day.isoformat()}},
        )
        assert r.status_code == 200, r.text
        ids[day] = str(r.json()["dag_run_id"])
    for day, run_id in ids.items():
        state = airflow.wait_for_run("llm_usage_daily", run_id, timeout=600)
        assert state == "success", (day, airflow.task_states("llm_usage_daily", run_id))
    return ids


def sql(dsn: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()


def by(dsn: str, column: str, where: str = "", *params: Any) -> dict[str, tuple[int, int, int]]:
    rows = sql(
        dsn,
        f"SELECT {column}, sum(requests), sum(prompt_tokens), sum(completion_tokens) FROM llmtally.usage_hourly"
        f" WHERE day BETWEEN %s AND %s {where} GROUP BY 1",
        DAYS[0], LAST, *params,
    )  # fmt: skip
    return {str(r[0]): (int(r[1]), int(r[2]), int(r[3])) for r in rows}


def table(frame: Any, table_id: str, key: str) -> dict[str, tuple[int, int, int]]:
    """A table of the page as shown: ``{name: (requests, prompt, completion)}`` from its cells' text."""
    out = {}
    for row in frame.locator(f"table[data-table={table_id}] tbody tr").all():
        cells = {c.get_attribute("data-key"): c for c in row.locator("td").all()}
        value = cells[key].get_attribute("data-value") or ""

        def number(k: str, cells: dict[str, Any] = cells) -> int:
            text = cells[k].inner_text().replace(",", "").strip()
            assert text == cells[k].get_attribute("data-value"), (k, text)  # shown = exact value
            return int(text)

        out[value] = (number("requests"), number("prompt_tokens"), number("completion_tokens"))
    return out


def test_the_usage_page_in_the_airflow_ui(
    airflow: AirflowServer, runs: dict[date, str], usage_db: str
) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    plugins = {p["name"]: p for p in airflow.api("GET", "/plugins").json()["plugins"]}
    assert plugins["llmtally"]["fastapi_apps"][0]["url_prefix"] == "/llmtally"
    (totals,) = sql(
        usage_db,
        "SELECT sum(requests), sum(prompt_tokens), sum(completion_tokens) FROM llmtally.usage_hourly"
        " WHERE day BETWEEN %s AND %s",
        DAYS[0], LAST,
    )  # fmt: skip
    assert totals[0] > 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(airflow.base_url + "/")
        page.fill("input[name=username]", airflow.username)
        page.fill("input[name=password]", airflow.password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_load_state("networkidle")
        # "LLM usage" in Browse opens the page inside the UI
        page.get_by_text("Browse", exact=True).first.click()
        page.get_by_text("LLM usage", exact=True).first.click()
        page.wait_for_url("**/plugin/llmtally**")
        frame = page.frame_locator("iframe[title='LLM usage']")
        frame.locator("input[name=start]").fill(DAYS[0].isoformat())
        frame.locator("input[name=end]").fill(LAST.isoformat())
        frame.locator("form.range button").click()
        expect(frame.locator("table[data-table=daily] tbody tr")).to_have_count(len(DAYS))
        days = frame.locator("table[data-table=daily] td[data-key=day]").all()
        assert [d.get_attribute("data-value") for d in days] == [d.isoformat() for d in DAYS]
        page.screenshot(path=str(ARTIFACTS / "plugin-usage-page.png"), full_page=True)
        shown = {k: frame.locator(f"[data-total={k}]").get_attribute("data-value")
                 for k in ("requests", "prompt_tokens", "completion_tokens")}  # fmt: skip
        assert tuple(int(v or 0) for v in shown.values()) == tuple(int(t) for t in totals)
        text = frame.locator("[data-total=requests]").inner_text()
        assert text.replace(",", "") == str(totals[0])
        features = by(usage_db, "feature")
        assert table(frame, "feature", "feature") == dict(
            list(sorted(features.items(), key=lambda kv: (-kv[1][1] - kv[1][2], kv[0])))[:10]
        )
        # drill-down: click the biggest feature, see its users and models
        top = max(features, key=lambda f: features[f][1] + features[f][2])
        frame.locator("table[data-table=feature] tbody tr a").first.click()
        frame.locator("[data-filter=feature]").wait_for()
        page.screenshot(path=str(ARTIFACTS / "plugin-drilldown.png"), full_page=True)
        assert table(frame, "user_id", "user_id") == dict(
            sorted(
                by(usage_db, "user_id", "AND feature = %s", top).items(),
                key=lambda kv: (-kv[1][1] - kv[1][2], kv[0]),
            )[:10]
        )
        assert table(frame, "model", "model") == by(usage_db, "model", "AND feature = %s", top)
        # the feature's tenants download as CSV and parse back to the same numbers
        with page.expect_download() as got:
            frame.locator("a[data-csv=tenant]").click()
        body = Path(got.value.path()).read_bytes()
        assert body.startswith(b"\xef\xbb\xbf")
        rows = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"), newline="")))
        want = by(usage_db, "tenant", "AND feature = %s", top)
        assert {
            r["tenant"]: (int(r["requests"]), int(r["prompt_tokens"]), int(r["completion_tokens"]))
            for r in rows
        } == want
        costs = sql(usage_db, "SELECT currency, sum(cost) FROM llmtally.usage_hourly WHERE day BETWEEN %s AND %s"
                    " AND feature = %s AND cost IS NOT NULL GROUP BY 1", DAYS[0], LAST, top)  # fmt: skip
        for currency, amount in costs:
            assert sum(Decimal(r[f"cost_{currency}"] or 0) for r in rows) == amount
        # "Usage of this run" opens from the run's page
        day = LAST
        page.goto(f"{airflow.base_url}/dags/llm_usage_daily/runs/{runs[day]}")
        page.get_by_text("Usage of this run").first.click()
        run_frame = page.frame_locator("iframe[title='Usage of this run']")
        run_frame.locator("[data-fact=run_records]").wait_for()
        page.screenshot(path=str(ARTIFACTS / "plugin-run-view.png"), full_page=True)
        (records,) = sql(usage_db, "SELECT sum(requests) FROM llmtally.usage_hourly WHERE day = %s", day)[0]
        assert run_frame.locator("[data-fact=run_day]").get_attribute("data-value") == day.isoformat()
        assert int(run_frame.locator("[data-fact=run_records]").get_attribute("data-value") or -1) == records
        assert run_frame.locator("table[data-table=recount] tbody tr").count() >= 1
        assert "/plugin/llmtally-run" in page.url
        browser.close()


def test_anonymous_requests_are_refused(airflow: AirflowServer) -> None:
    for path in ("/llmtally/", "/llmtally/csv/daily", "/llmtally/runs/llm_usage_daily/x"):
        assert httpx.get(airflow.base_url + path, timeout=30).status_code == 401
        bad = httpx.get(airflow.base_url + path, headers={"Authorization": "Bearer not-a-token"}, timeout=30)
        assert bad.status_code in (401, 403)
    ok = httpx.get(
        airflow.base_url + "/llmtally/", params={"day": LAST.isoformat()},
        headers={"Authorization": f"Bearer {airflow.token()}"}, timeout=60,
    )  # fmt: skip
    assert ok.status_code == 200 and "data-total" in ok.text
    bad_input = httpx.get(
        airflow.base_url + "/llmtally/", params={"table": "usage_hourly"},
        headers={"Authorization": f"Bearer {airflow.token()}"}, timeout=60,
    )  # fmt: skip
    assert bad_input.status_code == 400 and "unknown parameter" in bad_input.json()["detail"]
