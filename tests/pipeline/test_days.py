"""One day rule in every time zone: records at local midnight ± 10 minutes land on their local day,
every ``usage_hourly`` row of day D lies inside D, and the store's days add up to the records'.

Zones: Asia/Shanghai (+8), Asia/Kolkata (+5:30), Asia/Kathmandu (+5:45), America/New_York across
the end of DST (a 25-hour day), UTC.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from llmtally._time import day_bounds, local_hour
from llmtally.pipeline import parse_day, reconcile
from llmtally.store import UsageStore

ZONES = {
    "Asia/Shanghai": date(2026, 11, 20),
    "Asia/Kolkata": date(2026, 11, 20),
    "Asia/Kathmandu": date(2026, 11, 20),
    "America/New_York": date(2026, 11, 1),  # DST ends at 02:00: 25 hours
    "UTC": date(2026, 11, 20),
}


def _records(tz: str, day: date) -> list[dict[str, object]]:
    """Records around the local midnights that open and close ``day`` (± 10 minutes), the DST
    change's repeated hour where there is one, and random times over three days."""
    zone = ZoneInfo(tz)
    rng = random.Random(tz)
    stamps: list[datetime] = []
    for d in (day, day + timedelta(days=1)):
        midnight = datetime(d.year, d.month, d.day, tzinfo=zone)
        stamps += [midnight + timedelta(minutes=m) for m in (-10, -1, 0, 1, 10)]
        stamps += [midnight - timedelta(seconds=1), midnight - timedelta(microseconds=1)]
    if tz == "America/New_York":  # 01:30 twice: EDT then EST
        stamps += [
            datetime(2026, 11, 1, 1, 30, tzinfo=zone),
            datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=zone),
        ]
    lo = datetime(day.year, day.month, day.day, tzinfo=zone) - timedelta(days=1)
    stamps += [lo + timedelta(seconds=rng.uniform(0, 3 * 86400)) for _ in range(200)]
    out = []
    for i, ts in enumerate(stamps):
        p, c = rng.randint(1, 900), rng.randint(0, 300)
        out.append({
            "v": 1, "id": f"{i:032x}", "ts": ts.astimezone(UTC).isoformat(), "service": "svc",
            "model": "m", "text": "hash", "usage": {"prompt_tokens": p, "completion_tokens": c},
            "tags": {"feature": "f"}, "status": "ok",
        })  # fmt: skip
    return out


def _truth(records: list[dict[str, object]], tz: str) -> dict[date, tuple[int, int, int]]:
    acc: dict[date, list[int]] = {}
    for r in records:
        d = datetime.fromisoformat(str(r["ts"])).astimezone(ZoneInfo(tz)).date()
        usage = r["usage"]
        assert isinstance(usage, dict)
        t = acc.setdefault(d, [0, 0, 0])
        t[0] += 1
        t[1] += usage["prompt_tokens"]
        t[2] += usage["completion_tokens"]
    return {d: (t[0], t[1], t[2]) for d, t in acc.items()}


@pytest.mark.parametrize("tz", list(ZONES))
def test_every_reader_cuts_days_the_same_way(tz: str, tmp_path: Path, any_store: UsageStore) -> None:
    store = any_store
    day = ZONES[tz]
    records = _records(tz, day)
    log = tmp_path / "usage.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    truth = _truth(records, tz)
    days = [day - timedelta(days=1), day, day + timedelta(days=1)]
    for d in days:
        parsed = parse_day([log], d, tz)
        load = reconcile(parsed.records, {}, day=d, tz=tz, stats=parsed.stats)
        start, end = day_bounds(d, tz)
        for h in load.hourly:  # a row of day d lies inside d, at a local hour start
            assert h.day == d and start <= h.hour < end, (h.hour, d)
            assert h.hour.astimezone(ZoneInfo(tz)).minute == 0
        store.load_day(load)
    totals = store.daily_totals(days[0], days[-1])
    got = {d: (t.requests, t.prompt_tokens, t.completion_tokens) for d, t in totals.items()}
    assert got == {d: truth[d] for d in days}
    for d in days:
        q = store.quality(d)
        assert q is not None and (q.records, q.prompt_tokens, q.completion_tokens) == truth[d]
    # the hour series of the middle day: one bucket per local hour, counted exactly
    series = store.hourly_series(day, day)
    hours = Counter(local_hour(datetime.fromisoformat(str(r["ts"])), tz) for r in records
                    if datetime.fromisoformat(str(r["ts"])).astimezone(ZoneInfo(tz)).date() == day)  # fmt: skip
    assert {h: t.requests for h, t in series.items()} == dict(hours)
    if tz == "America/New_York":
        assert len({h.astimezone(ZoneInfo(tz)).replace(tzinfo=None) for h in series}) < len(series)


def test_local_hour_in_half_hour_zones_and_dst() -> None:
    kolkata = datetime(2026, 11, 20, 18, 29, 59, tzinfo=UTC)  # 23:59:59 IST on the 20th
    assert local_hour(kolkata, "Asia/Kolkata") == datetime(2026, 11, 20, 17, 30, tzinfo=UTC)
    assert local_hour(kolkata + timedelta(seconds=1), "Asia/Kolkata") == datetime(
        2026, 11, 20, 18, 30, tzinfo=UTC
    )
    assert local_hour(datetime(2026, 11, 20, 18, 20, tzinfo=UTC), "Asia/Kathmandu") == datetime(
        2026, 11, 20, 18, 15, tzinfo=UTC
    )
    # New York, 1 November 2026: 01:00-02:00 happens twice (05:00 and 06:00 UTC)
    ny = "America/New_York"
    assert local_hour(datetime(2026, 11, 1, 5, 40, tzinfo=UTC), ny) == datetime(2026, 11, 1, 5, tzinfo=UTC)
    assert local_hour(datetime(2026, 11, 1, 6, 40, tzinfo=UTC), ny) == datetime(2026, 11, 1, 6, tzinfo=UTC)
