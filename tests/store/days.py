"""Small hand-made day loads for the store tests."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from llmtally.store import (
    DayLoad,
    DayQuality,
    HourlyRow,
    LedgerEntry,
    LossEntry,
    PromptDigestRow,
    QuarantineEntry,
    ReconciliationRow,
    TopRequest,
)


def day_load(day: date, scale: int = 1, run_id: str = "run", files: int = 2) -> DayLoad:
    """A consistent load for ``day`` (Asia/Shanghai): two hours, two models, one unpriced."""
    h0 = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(hours=8)  # 00:00 local
    hourly = [
        HourlyRow(
            day,
            h0,
            "gpt-4o-mini",
            "chat",
            "u1",
            "acme",
            "api",
            3 * scale,
            300 * scale,
            90 * scale,
            10,
            0,
            300 * scale,
            80 * scale,
            280,
            100,
            Decimal("0.000099000000") * scale,
            "USD",
        ),
        HourlyRow(
            day,
            h0 + timedelta(hours=23),
            "qwen-plus",
            "search",
            "u2",
            "globex",
            "api",
            2,
            50,
            20,
            0,
            5,
            50,
            20,
            40,
            20,
            Decimal("0.00008"),
            "CNY",
        ),
        HourlyRow(day, h0 + timedelta(hours=23), "mine", "", "", "", "batch", 1, 7, 7, unpriced_requests=1),
    ]
    records = sum(h.requests for h in hourly)
    recon = [
        ReconciliationRow(
            day, "gpt-4o-mini", "api", "fp1", 3 * scale, 3 * scale, 3 * scale, 1, 3, 3, 0, 0, 2, 0.2, -0.1
        ),
        ReconciliationRow(day, "qwen-plus", "api", "fp2", 2, 2, 2),
        ReconciliationRow(day, "mine", "batch", "", 1, 1, unknown_model=1),
    ]
    top = [
        TopRequest(
            day,
            1,
            "id1",
            h0 + timedelta(minutes=5),
            "gpt-4o-mini",
            "api",
            "chat",
            "u1",
            "acme",
            "d" * 64,
            150,
            40,
            Decimal("0.0000465"),
            "USD",
            {"feature": "chat", "note": "<script>x</script>"},
        ),
        TopRequest(day, 2, "id2", h0 + timedelta(hours=23), "mine", "batch", "", "", "", "e" * 64, 7, 7),
    ]
    quality = DayQuality(
        day,
        records=records,
        prompt_tokens=sum(h.prompt_tokens for h in hourly),
        completion_tokens=sum(h.completion_tokens for h in hourly),
        files=2,
        bytes=1234,
        lines=records + 2,
        quarantined=1,
        partial_lines=1,
        recounted=5,
        unknown_model=1,
        loss_markers=3,
        lost_records=42,
    )
    quar = [QuarantineEntry(day, "/logs/a.jsonl", 7, "invalid JSON", "0123456789abcdef")]
    digests = [PromptDigestRow(day, "d" * 64, "chat", 2, 300, h0, h0 + timedelta(minutes=5))]
    names = [f"/logs/{chr(97 + i)}.jsonl" for i in range(files)]
    sources = {name: records // files + (i < records % files) for i, name in enumerate(names)}
    ledger = LedgerEntry(
        run_id, day, 2, 1234, records, 1, 1, 0, 5, {"parse": 0.5}, {"files": names}, sources=sources
    )
    losses = [
        LossEntry(
            day, "api", "web-1", 40, h0 + timedelta(hours=3), h0 + timedelta(hours=3, minutes=7), "disk full"
        ),
        LossEntry(day, "batch", "", 2, h0 + timedelta(hours=9), h0 + timedelta(hours=9), "queue full"),
    ]
    return DayLoad(day, hourly, recon, top, quality, quar, ledger, "Asia/Shanghai", digests, losses)


def broken(load: DayLoad) -> DayLoad:
    """The same load with one hour's tokens changed: its totals no longer add up."""
    first = replace(load.hourly[0], prompt_tokens=load.hourly[0].prompt_tokens + 1)
    return replace(load, hourly=[first, *load.hourly[1:]])
