"""Independent recomputation of a day's billed totals straight from the raw log files."""

from __future__ import annotations

import ast
import functools
import gzip
import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo


def sample_logs(root: Path, *, days: int, per_day: int, end: date, shared: Path) -> Path:
    """``examples/sample_traffic`` logs (the real UsageLogger) for ``days`` days ending ``end``, in ``root``."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
    from sample_traffic import generate

    generate(root, days=days, per_day=per_day, shared=shared, end=end)
    return root


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


def day_totals(
    dsn: str, day: date, tz: str = "Asia/Shanghai", schema: str = "llmtally"
) -> tuple[int, int, int]:
    """Requests and billed prompt/completion tokens of ``day`` in ``usage_hourly`` (its ``day`` rows,
    checked to lie inside the local day)."""
    import psycopg

    start = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz))
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT COALESCE(SUM(requests), 0), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0),"
            " count(*) FILTER (WHERE hour < %s OR hour >= %s)"
            f' FROM "{schema}".usage_hourly WHERE day = %s',
            (start, start + timedelta(days=1), day),
        ).fetchone()
    assert row is not None and row[3] == 0, f"{row and row[3]} rows of {day} have an hour outside the day"
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


_LEGACY = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ - (\{.*\})$")


@dataclass
class DayTotals:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    by_source: Counter[str] = field(default_factory=Counter)
    """Logger records by how the oracle billed them: ``reported``, else their status."""


def _lines(path: Path) -> list[str]:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    text = raw.decode("utf-8", "replace")
    lines = text.split("\n")
    return lines[:-1]  # the last element is "" or a partial line without newline: skipped


@functools.cache
def _oracle(model: str) -> Any:
    """transformers' own tokenizer for the sample's self-served model: the independent recount."""
    from transformers import AutoTokenizer

    from tests.support import SHARED

    folders = {"qwen3-8b": "qwen3"}
    if model not in folders:
        raise AssertionError(f"the oracle has no tokenizer for {model!r}: extend tests/e2e/expected.py")
    return AutoTokenizer.from_pretrained(str(SHARED / "tokenizers" / folders[model]))


def _recount(rec: dict[str, Any]) -> tuple[int, int]:
    """What the engine bills for a record without reported usage (the billing rule, recomputed with
    transformers): the chat template's prompt; the delivered completion, plus the stop token only
    for a call that ended with a stop."""
    tok = _oracle(rec["model"])
    tools = rec.get("tools")
    ids = _ids(
        tok.apply_chat_template(rec["messages"], tools=tools, tokenize=True, add_generation_prompt=True)
    )
    if rec.get("reasoning") or rec.get("tool_calls"):
        # the reply as the model generated it: the assistant turn's tokens after the prompt's, up to
        # and including the end-of-turn token (the stop token the engine bills)
        reply = {
            "role": "assistant",
            "content": rec.get("completion") or "",
            "tool_calls": rec.get("tool_calls"),
        }
        if rec.get("reasoning"):
            reply["reasoning_content"] = rec["reasoning"]
        full = _ids(tok.apply_chat_template([*rec["messages"], reply], tools=tools, tokenize=True))
        assert full[: len(ids)] == ids, "the assistant turn does not extend the prompt"
        generated = full[len(ids) :]
        return len(ids), generated.index(tok.convert_tokens_to_ids(tok.eos_token)) + 1
    completion = len(tok.encode(rec.get("completion") or "", add_special_tokens=False))
    ok = (rec.get("status") or "ok") == "ok" and rec.get("finish_reason") in (None, "stop")
    return len(ids), completion + (1 if ok and rec.get("completion") is not None else 0)


def _ids(out: Any) -> list[int]:
    return list(out["input_ids"] if isinstance(out, Mapping) else out)


def billed_of(rec: dict[str, Any]) -> tuple[int, int]:
    """Billed prompt and completion tokens of one logger record, by the README's billing rule."""
    usage = rec.get("usage") or {}
    if usage:
        return int(usage["prompt_tokens"]), int(usage["completion_tokens"])
    if rec.get("status") == "error":
        return 0, 0  # a failed call with no usage bills nothing
    return _recount(rec)


def expected_totals(
    root: Path, day: date, tz: str = "Asia/Shanghai", until: datetime | None = None
) -> DayTotals:
    """Billed totals of ``day``: reported usage where the server sent it, else an independent
    recount with transformers (failed calls: 0), and the recipe's own numbers for legacy lines.
    ``until``: only records logged before it (an intraday run's cut); lines not ending in a newline
    are still being written and do not count."""
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
                if ts.date() != day:
                    continue
                p, c = billed_of(rec)
                totals.by_source["reported" if rec.get("usage") else rec.get("status") or "ok"] += 1
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
            if ts.date() != day or (until is not None and ts >= until):
                continue
            totals.requests += 1
            totals.prompt_tokens += int(p)
            totals.completion_tokens += int(c)
    return totals
