"""Days built the way the pipeline builds them: usage records → billing rule → ``reconcile`` → a store.

Unlike :mod:`tests.report.gen` (hand-made aggregates), these loads carry exactly what the
pipeline writes for each outcome (failed calls billed 0, timeouts billed from the recount, missing
completions), so the report tests check the report against the pipeline's own numbers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

import pytest

from llmtally._time import local_day
from llmtally.pipeline.reconcile import reconcile
from llmtally.pipeline.record import UsageRecord
from llmtally.pipeline.recount import Recount
from llmtally.pricing import load_prices
from llmtally.report import ReportSettings, make_report
from llmtally.store import MemoryStore, PostgresStore, UsageStore

MODEL = "gpt-4o-mini"  # priced in USD by the shipped price table
SETTINGS = ReportSettings(lang="en")


def record(
    n: int,
    ts: datetime,
    *,
    prompt: int | None = 100,
    completion: int | None = 20,
    recount: tuple[int | None, int | None] | None = None,
    service: str = "cs-bot",
    model: str = MODEL,
    status: str | None = None,
    http_status: int | None = None,
    feature: str = "chat",
) -> tuple[UsageRecord, Recount | None]:
    """A record (``prompt``/``completion``: reported usage, ``None``: not reported) and its recount."""
    usage = (
        None
        if prompt is None and completion is None
        else {"prompt_tokens": prompt, "completion_tokens": completion}
    )
    rec = UsageRecord(
        id=f"{ts:%Y%m%d%H%M}-{service}-{n}", ts=ts, source=f"/logs/{service}.jsonl", line=n, service=service,
        model=model, usage=usage, status=status, http_status=http_status, tags={"feature": feature},
        prompt_sha256=hashlib.sha256(f"{service}-{n}".encode()).hexdigest(),
    )  # fmt: skip
    rc = Recount("ok", recount[0], recount[1], "fp-mini") if recount is not None else None
    return rec, rc


def loads(items: Iterable[tuple[UsageRecord, Recount | None]], tz: str) -> list[Any]:
    """One :class:`DayLoad` per local day of the records (the parser's day rule), priced."""
    by_day: dict[date, list[tuple[UsageRecord, Recount | None]]] = {}
    for rec, rc in items:
        by_day.setdefault(local_day(rec.ts, tz), []).append((rec, rc))
    prices = load_prices()
    out = []
    for day, pairs in sorted(by_day.items()):
        recounts = {rec.id: rc for rec, rc in pairs if rc is not None}
        out.append(
            reconcile([rec for rec, _ in pairs], recounts, day=day, tz=tz, prices=prices, run_id="test")
        )
    return out


@contextmanager
def open_store(kind: str, request: pytest.FixtureRequest) -> Iterator[UsageStore]:
    """An empty store of ``kind`` (``memory`` or ``postgres``, in a schema of its own)."""
    if kind == "memory":
        with MemoryStore() as mem:
            yield mem
    else:
        dsn, schema = request.getfixturevalue("pg_dsn"), request.getfixturevalue("pg_schema")
        with PostgresStore(dsn, schema=schema) as pg:
            yield pg


def summary(store: UsageStore, day: date, tz: str) -> dict[str, Any]:
    """The report's JSON summary of ``day`` read from ``store``."""
    return dict(make_report(store, day, lang="en", timezone=tz, settings=SETTINGS).summary)
