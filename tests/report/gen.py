"""Generated multi-week aggregates with known values, inserted into a real PostgreSQL schema.

Rows are the store's :class:`~llmtally.store.HourlyRow` (written by its column declaration); the
report reads them back only through the store.

Steady traffic: the same hourly profile every day, weekends at 60 %, ±10 % seeded noise.  Planted
anomalies are added on top by :func:`plant_anomalies`.  Every row is kept in Python so tests can
recompute every number of the report independently of the store.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from llmtally.store import HourlyRow
from llmtally.store._rows import HOURLY_COLUMNS

TZ = "Asia/Shanghai"
DAY = date(2026, 11, 26)  # a Thursday
SCRIPT = "<script>alert('x')</script>"

# feature -> (model, service, requests per peak hour, prompt/request, completion/request)
FEATURES = {
    "客服问答": ("qwen-plus", "cs-bot", 120, 700, 250),
    "写作": ("gpt-4o", "writer", 40, 900, 1200),
    "翻译": ("deepseek-chat", "writer", 10, 400, 380),
    SCRIPT: ("mystery-model", "lab", 6, 300, 100),
}
USERS = ("alice", "bob", "carol", "dave")
# model -> (currency, input rate, output rate) per 1M tokens; mystery-model is unpriced
RATES = {
    "qwen-plus": ("CNY", Decimal("0.8"), Decimal("2")),
    "gpt-4o": ("USD", Decimal("2.5"), Decimal("10")),
    "deepseek-chat": ("CNY", Decimal("2"), Decimal("8")),
}
PROFILE = [0.2, 0.1, 0.1, 0.1, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 1.0, 1.0,
           0.9, 1.0, 1.0, 1.0, 0.9, 0.8, 0.7, 0.6, 0.6, 0.5, 0.4, 0.3]  # fmt: skip


@dataclass(frozen=True)
class Row:
    """One usage_hourly row (``hour``: start of the local hour, an aware instant)."""

    day: date
    hour: datetime
    model: str
    feature: str
    user_id: str
    tenant: str
    service: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost: Decimal | None = None
    currency: str | None = None
    status: str = "ok"
    http_status: int = 0
    uncertain_requests: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def hourly(self) -> HourlyRow:
        """The store's row: recounts equal the billed numbers, the services' estimates are off."""
        return HourlyRow(
            day=self.day, hour=self.hour, model=self.model, feature=self.feature, user_id=self.user_id,
            tenant=self.tenant, service=self.service, status=self.status, http_status=self.http_status,
            requests=self.requests, prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens, cached_tokens=self.cached_tokens,
            reasoning_tokens=self.reasoning_tokens, recounted_prompt_tokens=self.prompt_tokens,
            recounted_completion_tokens=self.completion_tokens,
            estimated_prompt_tokens=int(self.prompt_tokens * 0.9),
            estimated_completion_tokens=int(self.completion_tokens * 1.1),
            unpriced_requests=self.requests if self.cost is None and self.total_tokens else 0,
            uncertain_requests=self.uncertain_requests, cost=self.cost, currency=self.currency,
        )  # fmt: skip


@dataclass
class Dataset:
    """Rows of usage_hourly, top_requests and reconciliation for one schema."""

    rows: list[Row] = field(default_factory=list)
    top: list[dict[str, Any]] = field(default_factory=list)
    recon: list[dict[str, Any]] = field(default_factory=list)
    digests: list[dict[str, Any]] = field(default_factory=list)


def utc_hour(day: date, hour: int, tz: str = TZ) -> datetime:
    """The UTC start of local ``hour`` on local ``day``."""
    return datetime(day.year, day.month, day.day, hour, tzinfo=ZoneInfo(tz)).astimezone(UTC)


def priced(model: str, prompt: int, completion: int) -> tuple[Decimal | None, str | None]:
    if model not in RATES:
        return None, None
    cur, rin, rout = RATES[model]
    return ((prompt * rin + completion * rout) / 1_000_000).quantize(Decimal("1e-12")), cur


def row(day: date, hour: int, feature: str, user: str, requests: int, prompt: int, completion: int,
        tenant: str = "acme") -> Row:  # fmt: skip
    model, service = FEATURES[feature][:2]
    cost, cur = priced(model, prompt, completion)
    return Row(
        day=day, hour=utc_hour(day, hour), model=model, feature=feature, user_id=user, tenant=tenant,
        service=service, requests=requests, prompt_tokens=prompt, completion_tokens=completion,
        cached_tokens=prompt // 4, reasoning_tokens=completion // 10 if model == "gpt-4o" else 0,
        cost=cost, currency=cur,
    )  # fmt: skip


def steady(days: int = 42, seed: int = 7) -> Dataset:
    """``days`` days of steady traffic ending on :data:`DAY`."""
    rng = random.Random(seed)
    ds = Dataset()
    for i in range(days - 1, -1, -1):
        d = DAY - timedelta(days=i)
        weekend = 0.6 if d.weekday() >= 5 else 1.0
        for h in range(24):
            for fi, (feature, (_, _, peak, p, c)) in enumerate(FEATURES.items()):
                for k in range(2):
                    reqs = max(1, round(peak * PROFILE[h] * weekend * rng.uniform(0.9, 1.1) / 2))
                    user = USERS[(h + fi + k) % len(USERS)]
                    prompt = round(reqs * p * rng.uniform(0.95, 1.05))
                    completion = round(reqs * c * rng.uniform(0.95, 1.05))
                    ds.rows.append(row(d, h, feature, user, reqs, prompt, completion))
    for rank in range(1, 11):
        feature = list(FEATURES)[rank % 3]
        model, _, _, p, c = FEATURES[feature]
        cost, cur = priced(model, p * 3, c * 3)
        ds.top.append(top_request(rank, feature, f"{rank:064x}", p * 3, c * 3, cost, cur))
    # repeated prompts happen (retries, FAQ): a few sends each, never a burst
    ds.digests = [digest(f"{k:063x}d", "客服问答", 2 + k % 4, 2000 * (2 + k % 4)) for k in range(20)]
    ds.recon = [
        recon("qwen-plus", "cs-bot", "fp-qwen", records=1800, recounted=1800, estimated=1800,
              ape=1800 * 0.05, pe=1800 * 0.02),
        recon("gpt-4o", "writer", "fp-o200k", records=600, recounted=590, drift=12, estimated=300,
              ape=300 * 0.123, pe=-300 * 0.1),
        recon("mystery-model", "lab", "", records=90, recounted=0, unknown=90),
    ]  # fmt: skip
    return ds


def top_request(rank: int, feature: str, digest: str, prompt: int, completion: int,
                cost: Decimal | None, currency: str | None, hour: int = 11) -> dict[str, Any]:  # fmt: skip
    model, service = FEATURES[feature][:2]
    return {
        "day": DAY, "rank": rank, "record_id": f"r{rank:031d}", "ts": utc_hour(DAY, hour) + timedelta(minutes=rank % 60),
        "model": model, "service": service, "feature": feature, "user_id": USERS[rank % 4], "tenant": "acme",
        "prompt_sha256": digest, "prompt_tokens": prompt, "completion_tokens": completion,
        "total_tokens": prompt + completion, "cost": cost, "currency": currency,
        "tags": {"route": "/v1/chat", "note": SCRIPT if rank == 1 else "ok"},
    }  # fmt: skip


def recon(model: str, service: str, fp: str, *, records: int, recounted: int = 0, drift: int = 0,
          estimated: int = 0, ape: float = 0.0, pe: float = 0.0, unknown: int = 0,
          **counts: int) -> dict[str, Any]:  # fmt: skip
    """A reconciliation row (``counts``: more of its columns, e.g. ``completion_missing``); every
    record reported its usage, so its billed numbers came from the report."""
    return {
        "day": DAY, "model": model, "service": service, "fingerprint": fp, "records": records,
        "reported": records, "recounted": recounted, "drift_records": drift,
        "prompt_drift_tokens": drift * 3, "completion_drift_tokens": 0, "estimated": estimated,
        "estimate_ape_sum": ape, "estimate_pe_sum": pe, "unknown_model": unknown,
        "prompt_reported": records, "completion_reported": records, **counts,
    }  # fmt: skip


BURST_DIGEST = "b" * 64


def digest(sha: str, feature: str, requests: int, tokens: int, minutes: int = 300) -> dict[str, Any]:
    first = utc_hour(DAY, 9)
    return {
        "day": DAY, "prompt_sha256": sha, "feature": feature, "requests": requests,
        "total_tokens": tokens, "first_ts": first, "last_ts": first + timedelta(minutes=minutes),
    }  # fmt: skip


def plant_anomalies(ds: Dataset) -> Dataset:
    """Five planted anomalies on :data:`DAY` (see the test for what each should raise)."""
    out = Dataset(list(ds.rows), list(ds.top), list(ds.recon), list(ds.digests))
    # 1. an hour spike at 14:00 in the <script> feature
    out.rows.append(row(DAY, 14, SCRIPT, "bob", 900, 270_000, 90_000, tenant="spike"))
    # 2. one huge request in 客服问答 (usual ~950 tokens per request)
    cost, cur = priced("qwen-plus", 140_000, 10_000)
    out.top = [dict(t, rank=t["rank"] + 1) for t in out.top]
    out.top.append(top_request(1, "客服问答", "a" * 64, 140_000, 10_000, cost, cur))
    # 3. a user whose consumption jumps: ~2,000 tokens a day for two weeks, then 400,000
    for i in range(1, 16):
        out.rows.append(row(DAY - timedelta(days=i), 10, "写作", "heavy-user", 1, 900, 1100))
    out.rows.append(row(DAY, 10, "写作", "heavy-user", 190, 171_000, 229_000))
    # 4. a burst of one identical prompt: 60 sends within 7 minutes
    out.digests.append(digest(BURST_DIGEST, "客服问答", 60, 60 * 2300, minutes=7))
    # 5. 翻译 prompts get four times longer on DAY
    out.rows = [
        replace(r, prompt_tokens=r.prompt_tokens * 4) if r.day == DAY and r.feature == "翻译" else r
        for r in out.rows
    ]
    return out


def load(dsn: str, schema: str, ds: Dataset) -> None:
    """Create ``schema`` with the store's migrations and insert the dataset."""
    import psycopg
    from psycopg import sql
    from psycopg.types.json import Jsonb

    from llmtally.store import PostgresStore

    PostgresStore(dsn, schema=schema).close()
    s = sql.Identifier(schema)
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cols = sql.SQL(", ").join(map(sql.Identifier, HOURLY_COLUMNS))
        with cur.copy(sql.SQL("COPY {}.usage_hourly ({}) FROM STDIN").format(s, cols)) as copy:
            for r in ds.rows:
                h = r.hourly()
                copy.write_row([getattr(h, c) for c in HOURLY_COLUMNS])
        _insert(cur, sql.SQL("{}.top_requests").format(s), [dict(t, tags=Jsonb(t["tags"])) for t in ds.top])
        _insert(cur, sql.SQL("{}.reconciliation").format(s), ds.recon)
        _insert(cur, sql.SQL("{}.prompt_digests").format(s), ds.digests)
    if ds.rows:
        with PostgresStore(dsn, schema=schema) as store:
            store.rebuild_daily(min(r.day for r in ds.rows), max(r.day for r in ds.rows))


def _insert(cur: Any, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    from psycopg import sql

    for r in rows:
        cols = sql.SQL(", ").join(map(sql.Identifier, r))
        marks = sql.SQL(", ").join(sql.Placeholder() * len(r))
        cur.execute(sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(table, cols, marks), list(r.values()))


def local_day(r: Row, tz: str = TZ) -> date:
    """The local day of a row, computed from its hour instant: an independent check of ``day``."""
    return r.hour.astimezone(ZoneInfo(tz)).date()


def on(rows: Iterable[Row], day: date) -> list[Row]:
    return [r for r in rows if local_day(r) == day]
