"""Anomalies a team can trust at any scale: each says why it was flagged; steady traffic raises none.

Every rule is relative to the volume of what it judges (the whole service, a feature, a user), with
a small absolute minimum, and counts of requests are judged against their Poisson noise, so the same
thresholds hold whether a day totals 3·10^4 tokens or 3·10^8.  Kinds (thresholds in
:class:`Thresholds`, configurable under ``[report.anomalies]`` in llmtally.toml):

``silence``         a service that logged nothing for ``silence_min_hours`` or more of its usual
                    hours: hours in which it logged on at least ``silence_usual_share`` of the
                    comparable days, about ``silence_min_requests`` requests expected in all.
``model_silence``   the same for one model of a service while the service itself kept logging.
``hour_spike``      an hour's tokens far above that hour's robust baseline: the median and MAD of the
                    same hour on the comparable days, the last ``baseline_weeks`` weeks of the same
                    weekday (``weekday_mode = "same_weekday"``) or of the same kind of day (weekday
                    vs weekend, ``"day_type"``, the default).  The robust z-score (its scale at least
                    ``mad_floor`` of the median and the Poisson noise of the hour's requests) passes
                    ``hour_z``, the ratio ``hour_min_ratio``, and the excess is at least
                    ``hour_min_share_of_day`` of a usual day's tokens (and ``hour_min_tokens``).
``large_request``   one request ``request_factor`` times its feature's usual tokens per request and
                    ``request_tail_factor`` times the median of the feature's next 10 largest requests
                    of the day (so a big service's natural tail is not news).
``user_jump``       a user's day ``user_factor`` times their usual day, the excess at least
                    ``user_min_share_of_day`` of a usual day's tokens and clear of the user's noise.
``prompt_burst``    one prompt digest sent, while it was sent, at ``burst_min_share_of_hour`` or
                    more of the rate of all the rest of its feature's requests (over an hour at least).
``prompt_growth``   a feature whose prompt tokens per request jump ``prompt_growth_factor`` times
                    their usual daily median (more for a feature with few requests: noise).
``failed_calls``    a service whose failed share (error + timeout: HTTP 5xx, 429, timeouts, other
                    errors, each counted in the reason) jumps above its median share of the last
                    ``outcome_baseline_days`` days.
``rate_limited``    a service whose share of HTTP 429 responses jumps the same way: a spike of 429s
                    is news (quota, a retry storm, a provider incident).

Hour-based kinds judge only the hours that ended by ``until`` (an intraday run sees a partial day).
Days before the first day with any data do not count as history (a new system raises nothing), and
a day without any usage yet raises no silence (it was not loaded).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .._exceptions import ConfigError
from ._data import ReportData
from ._i18n import anomaly_why

__all__ = ["Anomaly", "Thresholds", "detect_anomalies"]

_MAD_SCALE = 1.4826  # MAD of a normal distribution -> its standard deviation
_HOUR = timedelta(hours=1)
_SHARES = ("hour_min_share_of_day", "user_min_share_of_day", "silence_usual_share")


@dataclass(frozen=True)
class Thresholds:
    """When each anomaly kind fires (see the module docstring)."""

    baseline_weeks: int = 4
    weekday_mode: str = "day_type"
    min_samples: int = 3
    count_z: float = 6.0
    hour_z: float = 6.0
    hour_min_ratio: float = 1.5
    hour_min_share_of_day: float = 0.02
    hour_min_tokens: int = 200
    mad_floor: float = 0.05
    silence_min_hours: int = 3
    silence_usual_share: float = 0.8
    silence_min_requests: int = 12
    request_factor: float = 20.0
    request_tail_factor: float = 6.0
    request_min_tokens: int = 1_000
    user_factor: float = 3.0
    user_min_share_of_day: float = 0.02
    user_min_tokens: int = 2_000
    user_baseline_days: int = 14
    burst_min_requests: int = 10
    burst_min_share_of_hour: float = 0.5
    prompt_growth_factor: float = 2.0
    prompt_growth_min_requests: int = 10
    prompt_baseline_days: int = 14
    outcome_baseline_days: int = 7
    failed_share_factor: float = 2.0
    failed_share_min_pct: float = 5.0
    failed_min_requests: int = 8
    status_429_factor: float = 3.0
    status_429_min_pct: float = 2.0
    status_429_min: int = 5

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
            elif key in _SHARES and value > 1:
                raise ConfigError(
                    f"[report.anomalies] {key} is a share: give 0 to 1 (0.02 is 2 %), not {value!r}"
                )
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


def _flag(kind: str, when: str, subject: str, value: float, expected: float, score: float,
          why: tuple[str, str]) -> Anomaly:  # fmt: skip
    return Anomaly(kind, when, subject, value, expected, score, why[0], why[1])


def _comparable_days(data: ReportData, th: Thresholds, first: date) -> list[date]:
    """The days an hour of ``data.day`` is compared with (``weekday_mode``), none before ``first``."""
    if th.weekday_mode == "same_weekday":
        days = [data.day - timedelta(days=7 * w) for w in range(1, th.baseline_weeks + 1)]
    else:
        weekend = data.day.weekday() >= 5
        span = (data.day - timedelta(days=i) for i in range(1, 7 * th.baseline_weeks + 1))
        days = [d for d in span if (d.weekday() >= 5) == weekend]
    return [d for d in days if d >= first]


def _observed_hours(data: ReportData, until: datetime | None) -> float:
    """Hours of ``data.day`` observed by ``until`` (aware, or naive local time), 0 to 24."""
    if until is None:
        return 24.0
    local = until.astimezone(ZoneInfo(data.timezone)).replace(tzinfo=None) if until.tzinfo else until
    return min(24.0, max(0.0, (local - datetime.combine(data.day, time())) / _HOUR))


def _noise(per_request: float, requests: float, least: float) -> float:
    """The standard deviation of tokens carried by a Poisson count of ``requests`` whose sizes vary
    (a spread like a log-normal of sigma 0.8 about doubles the variance); fewer than ``least``
    requests count as ``least``, as one request alone may be many times the mean."""
    return per_request * math.sqrt(2.0 * max(requests, least))


def _hhmm(hour: int) -> str:
    return f"{hour:02d}:00"


def _hour_spikes(data: ReportData, th: Thresholds, days: list[date], ended: int) -> list[Anomaly]:
    tokens: dict[tuple[date, int], int] = defaultdict(int)
    requests: dict[tuple[date, int], int] = defaultdict(int)
    for h in data.hourly:
        tokens[(h.local_day, h.hour.hour)] += h.total_tokens
        requests[(h.local_day, h.hour.hour)] += h.requests
    if len(days) < th.min_samples:
        return []
    usual_day = statistics.median(sum(tokens.get((d, h), 0) for h in range(24)) for d in days)
    all_tokens = sum(tokens.get((d, h), 0) for d in days for h in range(24))
    all_requests = sum(requests.get((d, h), 0) for d in days for h in range(24))
    floor = max(th.hour_min_tokens, th.hour_min_share_of_day * usual_day)
    out = []
    for hour in range(ended):
        value = tokens.get((data.day, hour), 0)
        samples = [tokens.get((d, hour), 0) for d in days]
        counts = [requests.get((d, hour), 0) for d in days]
        med = statistics.median(samples)
        mad = _MAD_SCALE * statistics.median(abs(s - med) for s in samples)
        per_request = max(sum(samples) / max(sum(counts), 1), all_tokens / max(all_requests, 1))
        # 8 requests at least: 24 hours a day are judged, many of them nearly empty at night
        scale = max(mad, th.mad_floor * med, _noise(per_request, statistics.median(counts), 8.0), 1.0)
        z = (value - med) / scale
        if z >= th.hour_z and value >= th.hour_min_ratio * med and value - med >= floor:
            ratio, label = value / max(med, 1.0), f"{_hhmm(hour)}-{_hhmm(hour + 1)}"
            why = anomaly_why("hour_spike", value=value, hour=label, median=med, days=len(days), ratio=ratio,
                              z=z, excess=value - med, share=(value - med) / max(usual_day, 1.0))  # fmt: skip
            when = f"{data.day.isoformat()}T{_hhmm(hour)}"
            out.append(_flag("hour_spike", when, _hhmm(hour), value, med, round(z, 2), why))
    return out


@dataclass(frozen=True)
class _Quiet:
    """A stretch of ended hours without requests and the usual hours in it."""

    hours: tuple[int, ...]
    expected: float
    min_days: int


def _quiet_runs(counts: Mapping[tuple[date, int], int], data: ReportData, th: Thresholds,
                days: list[date], ended: int) -> list[_Quiet]:  # fmt: skip
    usual: dict[int, tuple[float, int]] = {}
    for hour in range(24):
        samples = [counts.get((d, hour), 0) for d in days]
        seen = sum(1 for s in samples if s > 0)
        if seen and seen >= th.silence_usual_share * len(days):
            usual[hour] = (statistics.fmean(samples), seen)
    runs: list[_Quiet] = []
    stretch: list[int] = []
    for hour in [*range(ended), None]:
        if hour is not None and not counts.get((data.day, hour), 0):
            if hour in usual:
                stretch.append(hour)
            continue
        expected = sum(usual[h][0] for h in stretch)
        if len(stretch) >= max(th.silence_min_hours, 1) and expected >= th.silence_min_requests:
            runs.append(_Quiet(tuple(stretch), expected, min(usual[h][1] for h in stretch)))
        stretch = []
    return runs


def _silences(data: ReportData, th: Thresholds, days: list[date], ended: int) -> list[Anomaly]:
    if len(days) < th.min_samples or not any(s.requests for s in data.service_hours if s.day == data.day):
        return []
    wanted = set(days) | {data.day}
    by_service: dict[str, dict[tuple[date, int], int]] = defaultdict(lambda: defaultdict(int))
    by_model: dict[tuple[str, str], dict[tuple[date, int], int]] = defaultdict(lambda: defaultdict(int))
    for s in data.service_hours:
        if s.day in wanted:
            by_service[s.service][(s.day, s.hour.hour)] += s.requests
            by_model[(s.service, s.model)][(s.day, s.hour.hour)] += s.requests
    out: list[Anomaly] = []
    quiet: dict[str, set[int]] = defaultdict(set)
    for service, counts in sorted(by_service.items()):
        for run in _quiet_runs(counts, data, th, days, ended):
            quiet[service] |= set(run.hours)
            out.append(_quiet(data, "silence", service, "", run, len(days)))
    for (service, model), counts in sorted(by_model.items()):
        for run in _quiet_runs(counts, data, th, days, ended):
            if not set(run.hours) <= quiet[service]:
                out.append(_quiet(data, "model_silence", service, model, run, len(days)))
    return out


def _quiet(data: ReportData, kind: str, service: str, model: str, run: _Quiet, days: int) -> Anomaly:
    start, end = _hhmm(run.hours[0]), _hhmm(run.hours[-1] + 1)
    name = service or "-"
    why = anomaly_why(kind, service=name, model=model or "-", start=start, end=end, hours=len(run.hours),
                      min_days=run.min_days, days=days, expected=run.expected)  # fmt: skip
    subject = f"{name} / {model or '-'}" if kind == "model_silence" else name
    when = f"{data.day.isoformat()}T{start}"
    return _flag(kind, when, subject, 0, round(run.expected, 1), float(len(run.hours)), why)


def _large_requests(data: ReportData, th: Thresholds) -> list[Anomaly]:
    hist: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in data.daily:
        if r.day < data.day:
            hist[r.feature][0] += r.total_tokens
            hist[r.feature][1] += r.requests
    largest: dict[str, list[int]] = defaultdict(list)
    for t in data.top_requests:
        largest[t.feature].append(t.total_tokens)
    out = []
    zone = ZoneInfo(data.timezone)
    for t in data.top_requests:
        tokens, reqs = hist.get(t.feature, (0, 0))
        if reqs < th.min_samples:
            continue
        usual = tokens / reqs
        others = sorted(largest[t.feature], reverse=True)
        others.remove(t.total_tokens)
        # the feature's natural tail: the median of its next 10 largest requests of the day
        tail = statistics.median(others[:10]) if len(others) >= th.min_samples else None
        if (
            t.total_tokens >= th.request_factor * usual
            and t.total_tokens >= th.request_min_tokens
            and (tail is None or t.total_tokens >= th.request_tail_factor * tail)
        ):
            ratio = t.total_tokens / max(usual, 1.0)
            en, zh = anomaly_why("large_request", digest=t.prompt_sha256[:12], value=t.total_tokens,
                                 ratio=ratio, usual=usual)  # fmt: skip
            if tail is not None:
                more = anomaly_why("large_request_tail", tail=t.total_tokens / max(tail, 1.0), median=tail)
                en, zh = en + more[0], zh + more[1]
            out.append(
                _flag("large_request", t.ts.astimezone(zone).isoformat(), t.feature or "-", t.total_tokens,
                      round(usual, 1), round(ratio, 2), (en, zh))
            )  # fmt: skip
    return out


def _day_totals(data: ReportData) -> dict[date, int]:
    totals: dict[date, int] = defaultdict(int)
    for r in data.daily:
        totals[r.day] += r.total_tokens
    return totals


def _user_jumps(data: ReportData, th: Thresholds, first: date) -> list[Anomaly]:
    per: dict[tuple[str, date], list[int]] = defaultdict(lambda: [0, 0])
    for u in data.users:
        per[(u.user_id, u.day)][0] += u.total_tokens
        per[(u.user_id, u.day)][1] += u.requests
    days = [data.day - timedelta(days=i) for i in range(1, th.user_baseline_days + 1)]
    days = [d for d in days if d >= first]
    if len(days) < th.min_samples:
        return []
    totals = _day_totals(data)
    usual_day = statistics.median(totals.get(d, 0) for d in days)
    history = set(days)
    all_requests = sum(r.requests for r in data.daily if r.day in history)
    overall = sum(totals.get(d, 0) for d in days) / max(all_requests, 1)
    out = []
    for (user, d), (value, _) in sorted(per.items()):
        if d != data.day or not user:
            continue
        hist = [per.get((user, h), (0, 0)) for h in days]
        usual = statistics.fmean(v[0] for v in hist)
        hist_requests = sum(v[1] for v in hist)
        per_request = max(sum(v[0] for v in hist) / max(hist_requests, 1), overall)
        noise = th.count_z * _noise(per_request, hist_requests / len(days), 4.0)
        floor = max(th.user_min_tokens, th.user_min_share_of_day * usual_day, noise)
        if value >= th.user_factor * usual and value - usual >= floor:
            score = value / max(usual, 1.0)
            why = anomaly_why("user_jump", value=value, usual=usual, days=len(days), ratio=score,
                              excess=value - usual, share=(value - usual) / max(usual_day, 1.0))  # fmt: skip
            out.append(
                _flag("user_jump", data.day.isoformat(), user, value, round(usual, 1), round(score, 2), why)
            )
    return out


def _bursts(data: ReportData, th: Thresholds, observed: float) -> list[Anomaly]:
    feature_requests: dict[str, int] = defaultdict(int)
    for r in data.daily:
        if r.day == data.day:
            feature_requests[r.feature] += r.requests
    zone = ZoneInfo(data.timezone)
    out = []
    for g in sorted(data.digests, key=lambda g: (-g.requests, g.prompt_sha256)):
        usual = max(feature_requests.get(g.feature, 0) - g.requests, 0) / max(observed, 1.0)
        span, words = max(observed, 1.0), ("", "")
        if g.first_ts and g.last_ts:
            first, last = g.first_ts.astimezone(zone), g.last_ts.astimezone(zone)
            span = max((last - first) / _HOUR, 1 / 60)
            words = anomaly_why("prompt_burst_span", first=f"{first:%H:%M}", last=f"{last:%H:%M}")
        floor = max(th.burst_min_requests, 2, th.burst_min_share_of_hour * usual * max(span, 1.0))
        if g.requests < floor:
            continue
        why = anomaly_why("prompt_burst", digest=g.prompt_sha256[:12], feature=g.feature or "-",
                          value=g.requests, span=words, rate=g.requests / span, usual=usual)  # fmt: skip
        out.append(
            _flag("prompt_burst", data.day.isoformat(), g.prompt_sha256[:12], g.requests, round(floor, 1),
                  round(g.requests / floor, 2), why)
        )  # fmt: skip
    return out


def _prompt_growth(data: ReportData, th: Thresholds) -> list[Anomaly]:
    per: dict[tuple[str, date], list[int]] = defaultdict(lambda: [0, 0])
    for r in data.daily:
        per[(r.feature, r.day)][0] += r.prompt_tokens
        per[(r.feature, r.day)][1] += r.requests
    out = []
    for (feature, d), (prompt, reqs) in sorted(per.items()):
        if d != data.day or reqs < max(th.prompt_growth_min_requests, 1):
            continue
        hist = [
            per[(feature, h)][0] / per[(feature, h)][1]
            for h in (d - timedelta(days=i) for i in range(1, th.prompt_baseline_days + 1))
            if (feature, h) in per and per[(feature, h)][1] > 0
        ]
        if len(hist) < th.min_samples:
            continue
        usual, now = statistics.median(hist), prompt / reqs
        # a mean over few requests is noisy (sizes spread about as much as they are large)
        factor = max(th.prompt_growth_factor, 1.0 + th.count_z / math.sqrt(reqs))
        if now >= factor * usual:
            ratio = now / max(usual, 1.0)
            why = anomaly_why("prompt_growth", value=now, requests=reqs, ratio=ratio, usual=usual)
            out.append(
                _flag("prompt_growth", d.isoformat(), feature or "-", round(now, 1), round(usual, 1),
                      round(ratio, 2), why)
            )  # fmt: skip
    return out


_FAILED = ("error", "timeout")
_PARTS = ("failed_5xx", "failed_429", "failed_timeout", "failed_other")


def _service_days(data: ReportData) -> dict[tuple[str, date], list[int]]:
    """``(service, day) -> [requests, failed, HTTP 429, failed by _PARTS...]``."""
    per: dict[tuple[str, date], list[int]] = defaultdict(lambda: [0] * (3 + len(_PARTS)))
    for o in data.outcomes:
        slot = per[(o.service, o.day)]
        slot[0] += o.requests
        slot[2] += o.requests if o.http_status == 429 else 0
        if o.status in _FAILED:
            slot[1] += o.requests
            if o.status == "timeout":
                part = "failed_timeout"
            elif o.http_status == 429:
                part = "failed_429"
            else:
                part = "failed_5xx" if 500 <= o.http_status < 600 else "failed_other"
            slot[3 + _PARTS.index(part)] += o.requests
    return per


def _parts(counts: Iterable[int]) -> tuple[str, str]:
    """``(": 10 HTTP 5xx, 30 HTTP 429", "：HTTP 5xx 10 次，HTTP 429 30 次")``: the failed by kind."""
    said = [anomaly_why(key, n=n) for key, n in zip(_PARTS, counts, strict=True) if n]
    if not said:
        return "", ""
    return anomaly_why("failed_parts", parts=(", ".join(w[0] for w in said), "，".join(w[1] for w in said)))


def _failures(data: ReportData, th: Thresholds, first: date) -> list[Anomaly]:
    per = _service_days(data)
    days = [data.day - timedelta(days=i) for i in range(1, th.outcome_baseline_days + 1)]
    days = [d for d in days if d >= first]
    out = []
    for (service, d), (reqs, failed, limited, *parts) in sorted(per.items()):
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
            why = anomaly_why("failed_calls", share=share, requests=reqs, failed=failed, parts=_parts(parts),
                              usual=usual, days=len(seen))  # fmt: skip
            values = (round(share, 2), round(usual, 2), round(ratio, 2))
            out.append(_flag("failed_calls", d.isoformat(), name, *values, why))
        share_429 = 100.0 * limited / reqs
        usual_429 = statistics.median(100.0 * v[2] / v[0] for v in seen)
        if (
            limited >= th.status_429_min
            and share_429 >= th.status_429_factor * usual_429
            and share_429 - usual_429 >= th.status_429_min_pct
        ):
            expected = usual_429 * reqs / 100.0
            why = anomaly_why("rate_limited", value=limited, requests=reqs, share=share_429, usual=usual_429,
                              days=len(seen), expected=expected)  # fmt: skip
            score = share_429 / max(usual_429, 1.0)
            out.append(
                _flag("rate_limited", d.isoformat(), name, limited, round(expected, 1), round(score, 2), why)
            )
    return out


def detect_anomalies(
    data: ReportData, thresholds: Thresholds, until: datetime | None = None
) -> list[Anomaly]:
    """All anomalies of ``data.day``, the most urgent kinds first, each with its reason.

    ``until`` is the end of the observed data (aware, or naive local time in ``data.timezone``):
    hour-based kinds judge only the hours of ``data.day`` that ended by then; ``None``: the whole day.
    """
    first = min((r.day for r in data.daily), default=data.day)
    observed = _observed_hours(data, until)
    ended = int(observed)
    days = _comparable_days(data, thresholds, first)
    return [
        *_silences(data, thresholds, days, ended),
        *_failures(data, thresholds, first),
        *_hour_spikes(data, thresholds, days, ended),
        *_large_requests(data, thresholds),
        *_user_jumps(data, thresholds, first),
        *_bursts(data, thresholds, observed),
        *_prompt_growth(data, thresholds),
    ]
