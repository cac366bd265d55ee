"""Independent recomputation of a day's billed totals straight from the raw log files."""

from __future__ import annotations

import ast
import gzip
import json
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo


def pipeline_env(home: Path, logs: Path, dsn: str, shared: Path) -> dict[str, str]:
    """Environment for llm_usage_daily over sample logs: database, sources, config, output folders."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
    from sample_traffic import write_config

    return {
        "AIRFLOW_CONN_LLM_USAGE_DB": dsn,
        "AIRFLOW_VAR_LLM_USAGE_LOG_DIRS": str(logs / "*"),
        "LLMTALLY_CONFIG": str(write_config(home / "llmtally.toml", shared)),
        "LLMTALLY_REPORT_DIR": str(home / "reports"),
        "LLMTALLY_STAGING_DIR": str(home / "staging"),
    }


def day_totals(dsn: str, day: date, tz: str = "Asia/Shanghai") -> tuple[int, int, int]:
    """Requests and billed prompt/completion tokens of ``day`` in ``usage_hourly``."""
    import psycopg

    start = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz))
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT COALESCE(SUM(requests), 0), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0)"
            " FROM llmtally.usage_hourly WHERE hour >= %s AND hour < %s",
            (start, start + timedelta(days=1)),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


_LEGACY = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ - (\{.*\})$")


@dataclass
class DayTotals:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


def _lines(path: Path) -> list[str]:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    text = raw.decode("utf-8", "replace")
    lines = text.split("\n")
    return lines[:-1]  # the last element is "" or a partial line without newline: skipped


def expected_totals(root: Path, day: date, tz: str = "Asia/Shanghai") -> DayTotals:
    """Billed totals of ``day``: reported usage for logger records, the recipe's own numbers for
    legacy lines (every sample record carries reported usage)."""
    zone = ZoneInfo(tz)
    totals = DayTotals()
    seen: set[str] = set()
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        for line in _lines(path):
            line = line.strip()
            if not line:
                continue
            if line.startswith("{"):
                rec = json.loads(line)
                if rec["id"] in seen:
                    continue
                seen.add(rec["id"])
                ts = datetime.fromisoformat(rec["ts"]).astimezone(zone)
                usage = rec.get("usage") or {}
                p, c = usage.get("prompt_tokens"), usage.get("completion_tokens")
            else:
                m = _LEGACY.match(line)
                if not m:
                    continue
                try:
                    rec = ast.literal_eval(m.group(1))
                except (ValueError, SyntaxError):
                    continue
                ts = datetime.fromtimestamp(float(rec["timestamp"]), zone)
                p, c = rec["prompt_tokens"], rec["completion_tokens"]
            if ts.date() != day:
                continue
            totals.requests += 1
            totals.prompt_tokens += int(p)
            totals.completion_tokens += int(c)
    return totals
