"""Anomalies a team can trust: each says why it was flagged; steady traffic raises none.

Kinds (thresholds in :class:`Thresholds`, configurable under ``[report.anomalies]`` in llmtally.toml):

``hour_spike``      an hour's tokens far above that hour's robust baseline: the median and MAD of the
                    same hour over the last ``baseline_weeks`` weeks, on the same weekday
                    (``weekday_mode = "same_weekday"``) or the same kind of day (weekday vs weekend,
                    ``"day_type"``, the default).  Flagged when the robust z-score, the ratio to the
                    median and the absolute excess all pass their thresholds.
``large_request``   one request far above its feature's usual tokens per request (history mean).
``user_jump``       a user's day far above their usual daily consumption (history mean).
``prompt_burst``    one prompt digest sent many times in the day.
``prompt_growth``   a feature whose prompt tokens per request jump above their usual daily median.
``failed_calls``    a service whose failed share (error + timeout requests over all its requests)
                    jumps above its median share of the last ``outcome_baseline_days`` days.
``rate_limited``    a service whose HTTP 429 responses jump above their daily median over the same
                    days: a spike of 429s is news (quota, a retry storm, a provider incident).

Days before the first day with any data do not count as history (a new system raises nothing).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .._exceptions import ConfigError
from ._data import ReportData

__all__ = ["Anomaly", "Thresholds", "detect_anomalies"]

_MAD_SCALE = 1.4826  # MAD of a normal distribution -> its standard deviation


@dataclass(frozen=True)
class Thresholds:
    """When each anomaly kind fires (see the module docstring)."""

    baseline_weeks: int = 4
    weekday_mode: str = "day_type"
    min_samples: int = 3
    hour_z: float = 6.0
    hour_min_ratio: float = 1.5
    hour_min_tokens: int = 20_000
    mad_floor: float = 0.05
    request_factor: float = 10.0
    request_min_tokens: int = 20_000
    user_factor: float = 3.0
    user_min_tokens: int = 100_000
    user_baseline_days: int = 14
    burst_min_requests: int = 50
    prompt_growth_factor: float = 2.0
    prompt_growth_min_requests: int = 20
    prompt_baseline_days: int = 14
    outcome_baseline_days: int = 7
    failed_share_factor: float = 2.0
    failed_share_min_pct: float = 5.0
    failed_min_requests: int = 20
    status_429_factor: float = 3.0
    status_429_min: int = 20

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> Thresholds:
        """Build from a ``[report.anomalies]`` table; unknown keys and bad values raise ConfigError."""
        known = {f.name: f.type for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in table.items():
            if key not in known:
                raise ConfigError(f"[report.anomalies] {key!r} is unknown; known: {', '.join(sorted(known))}")
            if key == "weekday_mode":
                if value not in ("day_type", "same_weekday"):
                    raise ConfigError("[report.anomalies] weekday_mode must be 'day_type' or 'same_weekday'")
                kwargs[key] = value
            elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"[report.anomalies] {key} must be a non-negative number, not {value!r}")
            else:
                kwargs[key] = int(value) if known[key] == "int" else float(value)
        return cls(**kwargs)


@dataclass(frozen=True)
class Anomaly:
    """One flagged observation: ``value`` against ``expected``, with a ``score`` and the reason."""

    kind: str
    when: str
    subject: str
    value: float
    expected: float
    score: float
    why: str
    why_zh: str

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (``why_zh`` kept for Chinese readers)."""
        return asdict(self)


def _fmt(n: float) -> str:
    return f"{n:,.0f}"


def _hour_spikes(data: ReportData, th: Thresholds, first: date) -> list[Anomaly]:
    tokens: dict[tuple[date, int], int] = defaultdict(int)
    for h in data.hourly:
        tokens[(h.local_day, h.hour.hour)] += h.total_tokens
    weekend = data.day.weekday() >= 5
    if th.weekday_mode == "same_weekday":
        days = [data.day - timedelta(days=7 * w) for w in range(1, th.baseline_weeks + 1)]
    else:
        span = (data.day - timedelta(days=i) for i in range(1, 7 * th.baseline_weeks + 1))
        days = [d for d in span if (d.weekday() >= 5) == weekend]
    days = [d for d in days if d >= first]
    if len(days) < th.min_samples:
        return []
    out = []
    for hour in range(24):
        value = tokens.get((data.day, hour), 0)
        samples = [tokens.get((d, hour), 0) for d in days]
        med = statistics.median(samples)
        mad = _MAD_SCALE * statistics.median(abs(s - med) for s in samples)
        scale = max(mad, th.mad_floor * med, 1.0)
        z = (value - med) / scale
        if z >= th.hour_z and value >= th.hour_min_ratio * med and value - med >= th.hour_min_tokens:
            when = f"{data.day.isoformat()}T{hour:02d}:00"
            out.append(
                Anomaly(
                    "hour_spike", when, f"{hour:02d}:00", value, med, round(z, 2),
                    f"{_fmt(value)} tokens in {hour:02d}:00-{hour + 1:02d}:00 vs a median of {_fmt(med)} "
                    f"over {len(days)} comparable days ({z:.1f} robust deviations above)",
                    f"{hour:02d}:00-{hour + 1:02d}:00 消耗 {_fmt(value)} Tokens，过去 {len(days)} 个"
                    f"同类日的中位数为 {_fmt(med)}（高出 {z:.1f} 个稳健标准差）",
                )
            )  # fmt: skip
    return out


def _large_requests(data: ReportData, th: Thresholds) -> list[Anomaly]:
    hist: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in data.daily:
        if r.day < data.day:
            hist[r.feature][0] += r.total_tokens
            hist[r.feature][1] += r.requests
    out = []
    zone = ZoneInfo(data.timezone)
    for t in data.top_requests:
        tokens, reqs = hist.get(t.feature, (0, 0))
        if reqs < th.min_samples:
            continue
        usual = tokens / reqs
        if t.total_tokens >= th.request_factor * usual and t.total_tokens >= th.request_min_tokens:
            ratio = t.total_tokens / max(usual, 1.0)
            out.append(
                Anomaly(
                    "large_request", t.ts.astimezone(zone).isoformat(), t.feature or "-", t.total_tokens,
                    round(usual, 1), round(ratio, 2),
                    f"request {t.prompt_sha256[:12]} used {_fmt(t.total_tokens)} tokens, {ratio:.0f}x the "
                    f"feature's usual {_fmt(usual)} per request",
                    f"请求 {t.prompt_sha256[:12]} 消耗 {_fmt(t.total_tokens)} Tokens，是该场景通常每次"
                    f" {_fmt(usual)} 的 {ratio:.0f} 倍",
                )
            )  # fmt: skip
    return out


def _user_jumps(data: ReportData, th: Thresholds, first: date) -> list[Anomaly]:
    per: dict[tuple[str, date], int] = defaultdict(int)
    for u in data.users:
        per[(u.user_id, u.day)] += u.total_tokens
    days = [data.day - timedelta(days=i) for i in range(1, th.user_baseline_days + 1)]
    days = [d for d in days if d >= first]
    if len(days) < th.min_samples:
        return []
    out = []
    for (user, d), value in sorted(per.items()):
        if d != data.day or not user:
            continue
        usual = statistics.fmean(per.get((user, h), 0) for h in days)
        if value >= th.user_factor * usual and value - usual >= th.user_min_tokens:
            score = value / max(usual, 1.0)
            out.append(
                Anomaly(
                    "user_jump", data.day.isoformat(), user, value, round(usual, 1), round(score, 2),
                    f"user used {_fmt(value)} tokens vs a daily mean of {_fmt(usual)} over {len(days)} days",
                    f"该用户今日消耗 {_fmt(value)} Tokens，过去 {len(days)} 天日均 {_fmt(usual)}",
                )
            )  # fmt: skip
    return out


def _bursts(data: ReportData, th: Thresholds) -> list[Anomaly]:
    out = []
    for g in sorted(data.digests, key=lambda g: (-g.requests, g.prompt_sha256)):
        if g.requests < max(th.burst_min_requests, 2):
            continue
        span = span_zh = ""
        if g.first_ts and g.last_ts:
            zone = ZoneInfo(data.timezone)
            first, last = g.first_ts.astimezone(zone), g.last_ts.astimezone(zone)
            span = f" between {first:%H:%M} and {last:%H:%M}"
            span_zh = f"（{first:%H:%M} 至 {last:%H:%M}）"
        out.append(
            Anomaly(
                "prompt_burst", data.day.isoformat(), g.prompt_sha256[:12], g.requests,
                th.burst_min_requests, round(g.requests / max(th.burst_min_requests, 1), 2),
                f"the same prompt (digest {g.prompt_sha256[:12]}, feature {g.feature or '-'}) was sent "
                f"{g.requests:,} times{span}",
                f"同一提示词（摘要 {g.prompt_sha256[:12]}，场景 {g.feature or '-'}）"
                f"被发送 {g.requests:,} 次{span_zh}",
            )
        )  # fmt: skip
    return out


def _prompt_growth(data: ReportData, th: Thresholds) -> list[Anomaly]:
    per: dict[tuple[str, date], list[int]] = defaultdict(lambda: [0, 0])
    for r in data.daily:
        per[(r.feature, r.day)][0] += r.prompt_tokens
        per[(r.feature, r.day)][1] += r.requests
    out = []
    for (feature, d), (prompt, reqs) in sorted(per.items()):
        if d != data.day or reqs < th.prompt_growth_min_requests:
            continue
        hist = [
            per[(feature, h)][0] / per[(feature, h)][1]
            for h in (d - timedelta(days=i) for i in range(1, th.prompt_baseline_days + 1))
            if (feature, h) in per and per[(feature, h)][1] > 0
        ]
        if len(hist) < th.min_samples:
            continue
        usual, now = statistics.median(hist), prompt / reqs
        if now >= th.prompt_growth_factor * usual:
            ratio = now / max(usual, 1.0)
            out.append(
                Anomaly(
                    "prompt_growth", d.isoformat(), feature or "-", round(now, 1), round(usual, 1),
                    round(ratio, 2),
                    f"prompts averaged {_fmt(now)} tokens per request, {ratio:.1f}x the usual {_fmt(usual)}",
                    f"提示词平均每次 {_fmt(now)} Tokens，是通常 {_fmt(usual)} 的 {ratio:.1f} 倍",
                )
            )  # fmt: skip
    return out


def _service_days(data: ReportData) -> dict[tuple[str, date], list[int]]:
    """``(service, day) -> [requests, failed (error + timeout), HTTP 429]``."""
    per: dict[tuple[str, date], list[int]] = defaultdict(lambda: [0, 0, 0])
    for o in data.outcomes:
        slot = per[(o.service, o.day)]
        slot[0] += o.requests
        slot[1] += o.requests if o.status in ("error", "timeout") else 0
        slot[2] += o.requests if o.http_status == 429 else 0
    return per


def _failures(data: ReportData, th: Thresholds, first: date) -> list[Anomaly]:
    per = _service_days(data)
    days = [data.day - timedelta(days=i) for i in range(1, th.outcome_baseline_days + 1)]
    days = [d for d in days if d >= first]
    out = []
    for (service, d), (reqs, failed, limited) in sorted(per.items()):
        if d != data.day or not reqs:
            continue
        seen = [per[(service, h)] for h in days if per.get((service, h), [0])[0] > 0]
        if len(seen) < th.min_samples:
            continue
        name = service or "-"
        share, usual = 100.0 * failed / reqs, statistics.median(100.0 * v[1] / v[0] for v in seen)
        if (
            failed >= th.failed_min_requests
            and share >= th.failed_share_factor * usual
            and share - usual >= th.failed_share_min_pct
        ):
            ratio = share / max(usual, 1.0)
            out.append(
                Anomaly(
                    "failed_calls", d.isoformat(), name, round(share, 2), round(usual, 2), round(ratio, 2),
                    f"{share:.1f}% of the service's {reqs:,} requests failed (error or timeout, {failed:,}) "
                    f"vs a median of {usual:.1f}% over {len(seen)} days",
                    f"该服务 {reqs:,} 次请求中 {share:.1f}% 失败（错误或超时，{failed:,} 次），"
                    f"过去 {len(seen)} 天中位数为 {usual:.1f}%",
                )
            )  # fmt: skip
        usual_429 = statistics.median(v[2] for v in seen)
        if limited >= th.status_429_factor * usual_429 and limited - usual_429 >= th.status_429_min:
            ratio = limited / max(usual_429, 1.0)
            out.append(
                Anomaly(
                    "rate_limited", d.isoformat(), name, limited, usual_429, round(ratio, 2),
                    f"{limited:,} requests were rejected with HTTP 429 (rate limited) vs a daily median of "
                    f"{_fmt(usual_429)} over {len(seen)} days",
                    f"{limited:,} 次请求被 HTTP 429 拒绝（限流），"
                    f"过去 {len(seen)} 天日中位数为 {_fmt(usual_429)}",
                )
            )  # fmt: skip
    return out


def detect_anomalies(data: ReportData, thresholds: Thresholds) -> list[Anomaly]:
    """All anomalies of ``data.day``, most significant kind first, each with its reason."""
    first = min((r.day for r in data.daily), default=data.day)
    return [
        *_hour_spikes(data, thresholds, first),
        *_large_requests(data, thresholds),
        *_user_jumps(data, thresholds, first),
        *_bursts(data, thresholds),
        *_prompt_growth(data, thresholds),
        *_failures(data, thresholds, first),
    ]
