"""Day loads for the page tests: the report tests' generated weeks (Chinese names, a ``<script>``
feature, known numbers), made into consistent :class:`DayLoad` s with quality, quarantine, ledger,
losses and failed calls, plus names a spreadsheet would run as formulas.  Every row is kept in
Python so the tests recompute each number independently of the store and the page."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from datetime import date, timedelta

from llmtally.store import (
    DayLoad,
    DayQuality,
    LedgerEntry,
    LossEntry,
    QuarantineEntry,
    ReconciliationRow,
    TopRequest,
)
from tests.report import gen

TZ = gen.TZ
DAY = gen.DAY  # the last day with data (a Thursday)
FORMULAS = ('=HYPERLINK("http://evil.example","x")', "+SUM(1,2)", "-2+3", "@cmd", "\tindent", "\rcr")
FAILED_SERVICE = "writer"


def rows() -> list[gen.Row]:
    """Six weeks of the report tests' steady traffic with planted anomalies, failed calls of one
    service every day, and formula-like names on the last day."""
    ds = gen.plant_anomalies(gen.steady())
    out = list(ds.rows)
    for i in range(42):
        d = DAY - timedelta(days=i)
        for h in (9, 15):
            out.append(replace(gen.row(d, h, "写作", "alice", 3 + i % 4, 0, 0), status="error", http_status=500,
                               cost=None, currency=None))  # fmt: skip
        out.append(
            replace(gen.row(d, 11, "写作", "bob", 2, 0, 0), status="timeout", cost=None, currency=None)
        )
    for k, name in enumerate(FORMULAS):
        out.append(gen.row(DAY, 12, "翻译", name, 1 + k, 100 * (k + 1), 10 * (k + 1), tenant=name))
    return out


def loads(all_rows: Iterable[gen.Row]) -> list[DayLoad]:
    """One consistent load per day of ``all_rows``."""
    by_day: dict[date, list[gen.Row]] = defaultdict(list)
    for r in all_rows:
        by_day[r.day].append(r)
    out = []
    for day, rs in sorted(by_day.items()):
        hourly = [r.hourly() for r in rs]
        records = sum(h.requests for h in hourly)
        recon_acc: dict[tuple[str, str], int] = defaultdict(int)
        for h in hourly:
            recon_acc[(h.model, h.service)] += h.requests
        recon = [
            ReconciliationRow(
                day, m, s, f"fp-{m}", n, reported=n, recounted=n if m != "mystery-model" else 0,
                drift_records=n // 50 if m == "gpt-4o" else 0, prompt_drift_tokens=-(n // 50) * 3 if m == "gpt-4o" else 0,
                estimated=n, estimate_ape_sum=n * 0.05, estimate_pe_sum=n * 0.02,
                unknown_model=n if m == "mystery-model" else 0,
                completion_missing=1 if m == "deepseek-chat" else 0,
            )
            for (m, s), n in sorted(recon_acc.items())
        ]  # fmt: skip
        quality = DayQuality(
            day, records=records, prompt_tokens=sum(h.prompt_tokens for h in hourly),
            completion_tokens=sum(h.completion_tokens for h in hourly), files=2, bytes=10_000, lines=records + 3,
            quarantined=2, partial_lines=1, duplicates=day.day % 3, lost_records=5 if day == DAY else 0,
        )  # fmt: skip
        quarantine = [
            QuarantineEntry(day, "/logs/cs-bot/a.jsonl", 17, "invalid JSON", "0123456789abcdef"),
            QuarantineEntry(day, "/logs/writer/b.jsonl", 4, "missing field: ts", "fedcba9876543210"),
        ]
        first = gen.utc_hour(day, 3)
        losses = (
            [LossEntry(day, "cs-bot", "web-1", 5, first, first + timedelta(minutes=4), "disk full")]
            if day == DAY
            else []
        )
        sources = {"/logs/cs-bot/a.jsonl": records - records // 2, "/logs/writer/b.jsonl": records // 2}
        ledger = LedgerEntry(f"run-{day}", day, 2, 10_000, records, 2, 1, 0, records, sources=sources)
        tops = [TopRequest(day, 1, f"r-{day}", gen.utc_hour(day, 11), "qwen-plus", "cs-bot", "客服问答", "alice",
                           "acme", "a" * 64, 900, 300)]  # fmt: skip
        if day >= DAY - timedelta(
            days=2
        ):  # one huge request a day: large_request, against the feature's history
            tops.append(TopRequest(day, 2, f"big-{day}", gen.utc_hour(day, 15), "qwen-plus", "cs-bot", "客服问答",
                                      "bob", "acme", "c" * 64, 140_000, 10_000))  # fmt: skip
        out.append(DayLoad(day, hourly, recon, tops, quality, quarantine, ledger, TZ, losses=losses))
    return out
