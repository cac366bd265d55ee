"""llm_usage_hourly in-process (``dag.test()``) over real logs that grow between runs: each run loads
the records so far as a provisional day, never double counts, recounts only new records; the daily
run replaces the day exactly; an intraday run after the final day (or overlapping the daily run)
leaves the final day alone."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from tests.e2e.expected import _LEGACY, day_totals, expected_totals, pipeline_env
from tests.support import REPO_ROOT, SHARED, environment

TZ = "Asia/Shanghai"
DAY = date(2026, 11, 10)  # a day no other test module loads
SCHEMA = "llmtally_intraday"
LOADS_ONLY = {"alerts": False}  # the loads are under test here; alerts: tests/alerts


def local(hour: int) -> datetime:
    """``hour`` o'clock of DAY, local time (24: the day's end)."""
    return datetime(DAY.year, DAY.month, DAY.day, tzinfo=ZoneInfo(TZ)) + timedelta(hours=hour)


def _ts(line: str) -> datetime:
    """When a line was logged; lines that say no time (the sample's malformed ones) come first."""
    try:
        if line.startswith("{"):
            return datetime.fromisoformat(json.loads(line)["ts"])
        m = _LEGACY.match(line.rstrip("\n"))
        if m:
            return datetime.fromtimestamp(float(ast.literal_eval(m.group(1))["timestamp"]), UTC)
    except (ValueError, KeyError, TypeError, SyntaxError):
        pass
    return datetime.min.replace(tzinfo=UTC)


class GrowingLogs:
    """The sample day's real log files, written out as their services would have by a given time:
    each file grows by appending, and the last line written so far may be half-written."""

    def __init__(self, source: Path, target: Path) -> None:
        self.target = target
        self.files: dict[Path, list[str]] = {}
        for path in sorted(source.rglob("*")):
            if path.is_file():
                lines = path.read_text("utf-8").splitlines(keepends=True)
                self.files[path.relative_to(source)] = sorted(lines, key=_ts)
        self.written: dict[Path, int] = dict.fromkeys(self.files, 0)  # whole lines written

    def grow_to(self, until: datetime, *, half_line: bool = True) -> None:
        """Append every line logged before ``until``; start the next one (no newline yet)."""
        for rel, lines in self.files.items():
            path = self.target / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            done = self.written[rel]
            new = [ln for ln in lines[done:] if _ts(ln) < until]
            body = path.read_text("utf-8") if path.exists() else ""
            if body and not body.endswith("\n"):  # finish the half-written line first
                body = body[: body.rfind("\n") + 1]
            body += "".join(lines[done : done + len(new)])
            self.written[rel] = done + len(new)
            nxt = self.written[rel]
            if half_line and nxt < len(lines):
                body += lines[nxt][: len(lines[nxt]) // 2]
            path.write_text(body, "utf-8")


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> GrowingLogs:
    sys.path.insert(0, str(REPO_ROOT / "examples"))
    from sample_traffic import generate

    source = tmp_path_factory.mktemp("written-by-services")
    generate(source, days=1, per_day=120, shared=SHARED, end=DAY)
    return GrowingLogs(source, tmp_path_factory.mktemp("service-logs"))


@pytest.fixture(scope="module")
def env(
    airflow_db: str, logs: GrowingLogs, pg_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    values = {
        **pipeline_env(tmp_path_factory.mktemp("run"), logs.target, pg_dsn, SHARED),
        "LLMTALLY_DB_SCHEMA": SCHEMA,
    }
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS llmtally_intraday CASCADE")
    with environment(values):
        yield values


@pytest.fixture(scope="module")
def dags(env: dict[str, str]) -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(REPO_ROOT / "dags")).dags


def _quality(dsn: str) -> tuple[Any, ...] | None:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            f'SELECT records, provisional, through FROM "{SCHEMA}".quality WHERE day = %s', (DAY,)
        ).fetchone()


def _shown(dsn: str) -> tuple[Any, str]:
    """The day's report (English) and the usage page's HTML over the loaded aggregates."""
    from fastapi.testclient import TestClient

    from llmtally.report import ReportSettings, make_report
    from llmtally.store import PostgresStore
    from llmtally.web import create_app

    with PostgresStore(dsn, schema=SCHEMA) as store:
        report = make_report(store, DAY, lang="en", timezone=TZ)
    app = create_app(
        lambda: PostgresStore(dsn, schema=SCHEMA), timezone=TZ, settings=ReportSettings(lang="en"),
        today=lambda: DAY,
    )  # fmt: skip
    page = TestClient(app).get(f"/?start={DAY}&end={DAY}&lang=en")
    assert page.status_code == 200, page.text[:500]
    return report, page.text


def _export_stderr() -> str:
    from click.testing import CliRunner

    from llmtally.cli import main

    out = CliRunner().invoke(main, ["export", "--from", str(DAY), "--to", str(DAY), "--by", "service"])
    assert out.exit_code == 0, out.output
    return out.stderr


def totals(dsn: str) -> tuple[int, int, int]:
    return day_totals(dsn, DAY, TZ, schema=SCHEMA)


def _recount_reused(run: Any) -> int:
    """Records the run's recount shards took from the day's cache (summed over the mapped tasks)."""
    tis = [t for t in run.get_task_instances() if t.task_id == "recount"]
    assert tis and all(t.map_index >= 0 for t in tis)
    return sum(int(t.xcom_pull(task_ids="recount", map_indexes=t.map_index)["reused"]) for t in tis)


def test_provisional_days_follow_the_logs_and_the_daily_run_replaces_them(
    dags: dict[str, Any], env: dict[str, str], logs: GrowingLogs
) -> None:
    hourly, daily = dags["llm_usage_hourly"], dags["llm_usage_daily"]
    dsn = env["AIRFLOW_CONN_LLM_USAGE_DB"]

    logs.grow_to(local(10))  # the services have written up to 10:00 (and half a line)
    run = hourly.test(logical_date=local(12), run_conf=LOADS_ONLY)
    assert run.state == "success"
    so_far = expected_totals(logs.target, DAY, TZ, until=local(12))
    assert so_far.requests > 0
    assert totals(dsn) == (so_far.requests, so_far.prompt_tokens, so_far.completion_tokens)
    assert _quality(dsn) == (so_far.requests, True, local(12))
    report, page = _shown(dsn)
    assert report.summary["provisional_through"] is not None
    assert datetime.fromisoformat(report.summary["provisional_through"]) == local(12)
    assert report.subject.startswith("Provisional (records logged until 12:00")
    assert f'data-provisional="{DAY.isoformat()}"' in page and "12:00" in page
    assert f"warning: {DAY} is provisional" in _export_stderr()

    # the files grow (the half-written lines are finished, more follow); the next run adds only them
    logs.grow_to(local(16))
    run = hourly.test(logical_date=local(16), run_conf=LOADS_ONLY)
    assert run.state == "success"
    later = expected_totals(logs.target, DAY, TZ, until=local(16))
    assert later.requests > so_far.requests
    assert totals(dsn) == (later.requests, later.prompt_tokens, later.completion_tokens)
    assert _recount_reused(run) > 0  # the records of the first run were not recounted again
    # the same cut again: the same day (idempotent)
    assert hourly.test(logical_date=local(16), run_conf=LOADS_ONLY).state == "success"
    assert totals(dsn) == (later.requests, later.prompt_tokens, later.completion_tokens)
    # an older cut re-run after a later one: skipped, the later day stays
    assert hourly.test(logical_date=local(12), run_conf=LOADS_ONLY).state == "success"
    assert totals(dsn)[0] == later.requests

    logs.grow_to(local(24), half_line=False)  # the day is over
    assert daily.test(run_conf={"day": DAY.isoformat()}).state == "success"
    final = expected_totals(logs.target, DAY, TZ)
    assert final.requests > later.requests
    assert totals(dsn) == (final.requests, final.prompt_tokens, final.completion_tokens)
    records, provisional, through = _quality(dsn) or (None, None, None)
    assert (records, provisional, through) == (final.requests, False, None)
    report, page = _shown(dsn)
    assert report.summary["provisional_through"] is None and not report.subject.startswith("Provisional")
    assert "data-provisional" not in page
    assert "provisional" not in _export_stderr()
    staging = Path(env["LLMTALLY_STAGING_DIR"])
    assert not (staging / DAY.isoformat() / "_intraday").exists(), "the day's recount cache outlived it"

    # an intraday run of the same day after the daily one (a late run): the final day is kept
    assert hourly.test(logical_date=local(23), run_conf=LOADS_ONLY).state == "success"
    assert _quality(dsn) == (final.requests, False, None)
    assert totals(dsn)[0] == final.requests


_DAILY_STEPS = """
import os, sys
from llmtally.jobs import daily
p = daily.plan({"day": sys.argv[1]}, run_id="overlapping-daily",
               variable=lambda key: os.environ.get("AIRFLOW_VAR_" + key.upper()))
files = daily.collect(p)
daily.parse(p, files)
counted = daily.recount(p)
loaded = daily.load(p, daily.reconcile(p, counted))
daily.cleanup(p)
raise SystemExit(0 if loaded["loaded"] else 1)
"""


def _forget_day(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        for table in ("usage_hourly", "usage_daily", "reconciliation", "quality", "top_requests",
                      "quarantine", "prompt_digests", "losses", "folds", "ledger"):  # fmt: skip
            conn.execute(f'DELETE FROM "{SCHEMA}".{table} WHERE day = %s', (DAY,))


def test_an_intraday_run_overlapping_the_daily_run_corrupts_neither(
    dags: dict[str, Any], env: dict[str, str], logs: GrowingLogs
) -> None:
    """The daily run's steps (another process) and an intraday run of the same day at the same time:
    whichever load commits first, the day ends final and exact."""
    dsn = env["AIRFLOW_CONN_LLM_USAGE_DB"]
    logs.grow_to(local(24), half_line=False)
    final = expected_totals(logs.target, DAY, TZ)
    for _ in range(3):
        _forget_day(dsn)
        proc = subprocess.Popen([sys.executable, "-c", _DAILY_STEPS, DAY.isoformat()], cwd=REPO_ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
        # dag.test() runs in the main thread only (Airflow installs signal handlers): the daily steps run
        # in the other process meanwhile
        state = dags["llm_usage_hourly"].test(logical_date=local(22), run_conf=LOADS_ONLY).state
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
        assert state == "success"
        assert _quality(dsn) == (final.requests, False, None)
        assert totals(dsn) == (final.requests, final.prompt_tokens, final.completion_tokens)
