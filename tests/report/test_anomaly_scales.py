"""The anomaly rules hold at any scale: planted anomalies are found, steady weeks raise nothing, at
about 3·10^4, 3·10^6 and 3·10^8 tokens a day with the same default thresholds.

The data are aggregates (the :class:`~llmtally.report.ReportData` the detectors read), drawn with a
seeded RNG: five weeks of traffic with a daily shape, weekends at 60 %, ±10 % day-to-day and ±15 %
hour-to-hour variation, Poisson counts of requests and log-normal request sizes (sigma 0.8, so a big
deployment's largest requests are naturally 10-25x the mean), failures at steady rates, a few
repeated prompts.  A service, ``office``, logs only from 08:00 to 20:00.
"""

from __future__ import annotations

import math
import random
import statistics
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from llmtally.report import ReportData, Thresholds, detect_anomalies
from llmtally.report._data import DailyUsage, OutcomeUsage, UserDay, hours_of
from llmtally.store import PromptDigestRow, TopRequest

TZ = "Asia/Shanghai"
DAY = date(2026, 11, 26)  # a Thursday
HISTORY = 35
MEAN, SIGMA = 400.0, 0.8  # tokens per request: mean and log-normal sigma
PROFILE = [0.2, 0.1, 0.1, 0.1, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 1.0, 1.0,
           0.9, 1.0, 1.0, 1.0, 0.9, 0.8, 0.7, 0.6, 0.6, 0.5, 0.4, 0.3]  # fmt: skip
OFFICE = [1.0 if 8 <= h < 20 else 0.0 for h in range(24)]
# (service, model, feature, share of the day's tokens, hourly shape)
PAIRS = (
    ("chat", "qwen-plus", "客服问答", 0.3, PROFILE),
    ("chat", "gpt-4o", "写作", 0.2, PROFILE),
    ("office", "deepseek-chat", "翻译", 0.5, OFFICE),
)
FAILURES = (("error", 500, 0.006), ("error", 503, 0.004), ("timeout", 0, 0.005), ("error", 429, 0.003))
SCALES = {"3e4": 30_000, "3e6": 3_000_000, "3e8": 300_000_000}
USERS = {"3e4": 6, "3e6": 60, "3e8": 600}  # users per feature
SIZE_CV = math.sqrt(math.exp(SIGMA**2) - 1)
MU = math.log(MEAN) - SIGMA**2 / 2


def poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 50:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    k, p, limit = 0, 1.0, math.exp(-lam)
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def tokens_of(rng: random.Random, n: int) -> int:
    """Billed tokens of ``n`` requests of log-normal sizes."""
    if n > 30:
        return max(n, round(rng.gauss(n * MEAN, math.sqrt(n) * MEAN * SIZE_CV)))
    return round(sum(rng.lognormvariate(MU, SIGMA) for _ in range(n)))


def binomial(rng: random.Random, n: int, p: float) -> int:
    if n * p > 30:
        return min(n, max(0, round(rng.gauss(n * p, math.sqrt(n * p * (1 - p))))))
    return sum(1 for _ in range(n) if rng.random() < p)


def largest(rng: random.Random, n: int, k: int) -> list[int]:
    """The ``k`` largest of ``n`` log-normal request sizes (order statistics for a big ``n``)."""
    if n <= 2000:
        return sorted((round(rng.lognormvariate(MU, SIGMA)) for _ in range(n)), reverse=True)[:k]
    normal, out, gap = statistics.NormalDist(), [], 0.0
    for _ in range(min(k, n)):
        gap += rng.expovariate(1.0)
        out.append(round(math.exp(MU + SIGMA * normal.inv_cdf(1 - gap / n))))
    return out


@dataclass
class Traffic:
    """Generated usage of one scale: ``cells[(day, hour, pair)] = [requests, prompt, completion]``."""

    scale: str
    cells: dict[tuple[date, int, int], list[int]] = field(default_factory=dict)
    failure_rates: dict[tuple[date, str], list[float]] = field(default_factory=dict)
    users: dict[tuple[date, str, str], list[int]] = field(default_factory=dict)
    top: list[TopRequest] = field(default_factory=list)
    digests: list[PromptDigestRow] = field(default_factory=list)
    seed: int = 0

    def data(self, day: date = DAY, *, outcome_seed: int = 1) -> ReportData:
        """The detectors' input for ``day`` (outcomes drawn from the day's requests)."""
        rng = random.Random(outcome_seed)
        start = day - timedelta(days=HISTORY)
        daily: dict[tuple[date, int], list[int]] = defaultdict(lambda: [0, 0, 0])
        acc: dict[tuple[date, datetime, str, str], list[int]] = {}
        for (d, h, p), (r, pt, ct) in sorted(self.cells.items()):
            if start <= d <= day and r:
                service, model = PAIRS[p][:2]
                acc[(d, datetime.combine(d, time(h)), service, model)] = [r, pt + ct]
                for i, v in enumerate((r, pt, ct)):
                    daily[(d, p)][i] += v
        hourly, service_hours = hours_of(acc)
        outcomes = []
        for (d, p), (r, _, _) in sorted(daily.items()):
            service, model = PAIRS[p][:2]
            rates = self.failure_rates.get((d, service), [f[2] for f in FAILURES])
            failed = [binomial(rng, r, q) for q in rates]
            outcomes.append(OutcomeUsage(d, service, model, "ok", 200, r - sum(failed), 0))
            outcomes += [OutcomeUsage(d, service, model, s, code, n, 0) for (s, code, _), n in zip(FAILURES, failed, strict=True)
                         if n]  # fmt: skip
        return ReportData(
            day=day, timezone=TZ, start=start,
            daily=tuple(DailyUsage(d, PAIRS[p][2], PAIRS[p][1], PAIRS[p][0], None, r, pt, ct, 0, 0, None, 0)
                        for (d, p), (r, pt, ct) in sorted(daily.items())),
            hourly=hourly,
            users=tuple(UserDay(d, u, None, r, t, None) for (d, _, u), (r, t) in sorted(self.users.items())
                        if start <= d <= day),
            top_requests=tuple(t for t in self.top if t.day == day),
            digests=tuple(g for g in self.digests if g.day == day),
            reconciliation=(),
            outcomes=tuple(outcomes),
            service_hours=service_hours,
        )  # fmt: skip


def steady(scale: str, seed: int = 7) -> Traffic:
    """Five weeks and a day of steady traffic ending on :data:`DAY` at ``scale``."""
    rng = random.Random(seed)
    t = Traffic(scale, seed=seed)
    per_day = SCALES[scale] / MEAN
    weights = [1 / (k + 1) for k in range(USERS[scale])]
    for back in range(HISTORY, -1, -1):
        d = DAY - timedelta(days=back)
        level = (0.6 if d.weekday() >= 5 else 1.0) * rng.uniform(0.9, 1.1)
        for p, (_, _, feature, share, shape) in enumerate(PAIRS):
            for h in range(24):
                lam = per_day * share * level * shape[h] / sum(shape) * rng.uniform(0.85, 1.15)
                n = poisson(rng, lam)
                tokens = tokens_of(rng, n)
                prompt = round(tokens * 0.6)
                t.cells[(d, h, p)] = [n, prompt, tokens - prompt]
            for k, w in enumerate(weights):
                n = poisson(rng, per_day * share * level * w / sum(weights))
                if n:
                    t.users[(d, feature, f"{feature}-u{k:04d}")] = [n, tokens_of(rng, n)]
            day_requests = sum(t.cells[(d, h, p)][0] for h in range(24))
            for k in range(4):  # repeated prompts (retries, FAQ): a few sends, and one popular prompt
                sends = 2 + k % 3 if k else max(2, round(0.005 * day_requests))
                first = datetime.combine(d, time(8 + k), ZoneInfo(TZ))
                t.digests.append(PromptDigestRow(d, f"{p}{k}{back:02d}".ljust(64, "0"), feature, sends,
                                                 sends * 500, first, first + timedelta(hours=13 - k)))  # fmt: skip
    t.top = top_requests(t, rng)
    return t


def top_requests(t: Traffic, rng: random.Random, extra: int | None = None) -> list[TopRequest]:
    """The day's 100 largest requests over all features (``extra``: one planted in 客服问答)."""
    sizes = [(s, p, "") for p in range(len(PAIRS))
             for s in largest(rng, sum(t.cells[(DAY, h, p)][0] for h in range(24)), 100)]  # fmt: skip
    sizes += [(extra, 0, "a" * 64)] if extra else []
    out = []
    for rank, (size, p, digest) in enumerate(sorted(sizes, reverse=True)[:100], start=1):
        service, model, feature = PAIRS[p][:3]
        ts = datetime.combine(DAY, time(11), ZoneInfo(TZ)).astimezone(UTC) + timedelta(minutes=rank)
        prompt = round(size * 0.6)
        out.append(TopRequest(DAY, rank, f"r{rank:031d}", ts, model, service, feature, f"{feature}-u0000", "t",
                              digest or f"{rank:x}".rjust(64, "f"), prompt, size - prompt))  # fmt: skip
    return out


def found(t: Traffic, day: date = DAY, until: datetime | None = None) -> set[tuple[str, str]]:
    anomalies = detect_anomalies(t.data(day), Thresholds(), until=until)
    for a in anomalies:
        assert a.why and a.why_zh, a
    return {(a.kind, a.subject) for a in anomalies}


def at(hour: int, minute: int = 0) -> datetime:
    """An instant on :data:`DAY`, local ``hour:minute``."""
    return datetime.combine(DAY, time(hour, minute), ZoneInfo(TZ))


def scaled(t: Traffic, hour: int, factor: float) -> Traffic:
    """``hour`` of :data:`DAY` at ``factor`` times its mean over the last four weeks of weekdays."""
    days = [DAY - timedelta(days=i) for i in range(1, 29) if (DAY - timedelta(days=i)).weekday() < 5]
    cells = dict(t.cells)
    for p in range(len(PAIRS)):
        usual = [statistics.fmean(t.cells[(d, hour, p)][i] for d in days) for i in range(3)]
        cells[(DAY, hour, p)] = [round(v * factor) for v in usual]
    return replace(t, cells=cells)


def quiet(t: Traffic, pair: int, since: int, until: int = 24) -> Traffic:
    cells = dict(t.cells)
    for h in range(since, until):
        cells[(DAY, h, pair)] = [0, 0, 0]
    return replace(t, cells=cells)


STEADY = {scale: steady(scale) for scale in SCALES}


@pytest.mark.parametrize("scale", SCALES)
def test_steady_weeks_raise_nothing_at_any_scale(scale: str) -> None:
    t = STEADY[scale]
    total = sum(v[1] + v[2] for (d, _, _), v in t.cells.items() if d == DAY)
    assert SCALES[scale] * 0.7 < total < SCALES[scale] * 1.3
    for back in range(7):
        assert found(t, DAY - timedelta(days=back)) == set(), back
    for hour in (1, 9, 14, 20):
        assert found(t, until=at(hour, 30)) == set(), hour


@pytest.mark.parametrize("seed", [11, 12, 13])
@pytest.mark.parametrize("scale", SCALES)
def test_other_seeds_raise_nothing_either(scale: str, seed: int) -> None:
    assert found(steady(scale, seed)) == set()


@pytest.mark.parametrize("scale", SCALES)
def test_a_tenfold_hour_is_found_at_any_scale(scale: str) -> None:
    t = scaled(STEADY[scale], 15, 10)
    assert found(t) == {("hour_spike", "15:00")}
    a = next(a for a in detect_anomalies(t.data(), Thresholds()) if a.kind == "hour_spike")
    assert (
        7 < a.value / a.expected < 15 and "median" in a.why
    )  # 10x the mean, against the median and "中位数" in a.why_zh
    assert found(t, until=at(15, 59)) == set()  # the hour has not ended: no verdict
    assert found(t, until=at(16)) == {("hour_spike", "15:00")}


@pytest.mark.parametrize("scale", SCALES)
def test_a_service_going_quiet_is_found(scale: str) -> None:
    t = quiet(STEADY[scale], 2, since=10)
    assert found(t) == {("silence", "office")}
    (a,) = detect_anomalies(t.data(), Thresholds())
    assert (a.when, a.value, a.score) == ("2026-11-26T10:00", 0, 10.0)
    assert "from 10:00 to 20:00" in a.why and "10:00 至 20:00" in a.why_zh
    # an intraday run judges only the hours that ended
    assert found(t, until=at(11, 30)) == set()
    (a,) = detect_anomalies(t.data(), Thresholds(), until=at(16))
    assert "from 10:00 to 16:00" in a.why and a.score == 6.0


@pytest.mark.parametrize("scale", SCALES)
def test_hours_after_until_are_not_silence(scale: str) -> None:
    partial = quiet(STEADY[scale], 0, 14)
    partial = quiet(quiet(partial, 1, 14), 2, 14)  # the data end at 14:00: nothing later yet
    assert found(partial, until=at(14)) == set()
    assert found(partial, until=at(14, 40)) == set()
    assert ("silence", "office") in found(partial)  # read as a whole day, the afternoon is missing


@pytest.mark.parametrize("scale", ["3e6", "3e8"])
def test_a_model_going_quiet_is_found(scale: str) -> None:
    t = quiet(STEADY[scale], 1, since=10)
    assert found(t) == {("model_silence", "chat / gpt-4o")}


def test_a_model_of_a_few_requests_an_hour_is_not_judged() -> None:
    # at 3·10^4 tokens a day gpt-4o gets about one request an hour: a quiet day is not evidence
    assert found(quiet(STEADY["3e4"], 1, since=10)) == set()


def test_a_silent_day_without_any_data_is_not_silence() -> None:
    t = STEADY["3e6"]
    empty = replace(t, cells={k: v for k, v in t.cells.items() if k[0] != DAY})
    assert not any(a.kind == "silence" for a in detect_anomalies(empty.data(), Thresholds()))


def _failing(t: Traffic, rates: dict[int, float]) -> Traffic:
    base = [f[2] for f in FAILURES]
    return replace(t, failure_rates={(DAY, "chat"): [rates.get(i, q) for i, q in enumerate(base)]})


@pytest.mark.parametrize("scale", SCALES)
def test_failure_spikes_are_found_at_any_scale(scale: str) -> None:
    t = STEADY[scale]
    server = _failing(t, {1: 0.5})  # HTTP 503s
    assert found(server) == {("failed_calls", "chat")}
    (a,) = detect_anomalies(server.data(), Thresholds())
    assert "HTTP 5xx" in a.why and "HTTP 5xx" in a.why_zh and a.value > 25 and a.expected < 3
    timeouts = _failing(t, {2: 0.5})
    (a,) = detect_anomalies(timeouts.data(), Thresholds())
    assert a.kind == "failed_calls" and "timeouts" in a.why and "超时" in a.why_zh
    limited = _failing(t, {3: 0.5})
    assert found(limited) == {("failed_calls", "chat"), ("rate_limited", "chat")}
    a = next(a for a in detect_anomalies(limited.data(), Thresholds()) if a.kind == "rate_limited")
    assert "HTTP 429" in a.why and "429" in a.why_zh and a.value > 5 * a.expected


@pytest.mark.parametrize("scale", SCALES)
def test_small_failure_drifts_are_not_news(scale: str) -> None:
    assert found(_failing(STEADY[scale], {0: 0.012, 3: 0.005})) == set()


@pytest.mark.parametrize("scale", SCALES)
def test_a_huge_request_is_found_at_any_scale(scale: str) -> None:
    t = STEADY[scale]
    planted = replace(t, top=top_requests(t, random.Random(3), extra=round(200 * MEAN)))
    assert found(planted) == {("large_request", "客服问答")}
    assert found(replace(t, top=top_requests(t, random.Random(3)))) == set()


@pytest.mark.parametrize("scale", SCALES)
def test_a_user_jump_is_found_at_any_scale(scale: str) -> None:
    t = STEADY[scale]
    total = sum(v[1] for (d, _, _), v in t.users.items() if d == DAY)
    mean = {u: statistics.fmean(t.users.get((DAY - timedelta(days=i), f, u), [0, 0])[1] for i in range(1, 15))
            for (d, f, u) in t.users if d == DAY}  # fmt: skip
    user = min(mean, key=lambda u: abs(mean[u] / total - 0.05))  # about 5 % of a day
    feature = user.split("-u")[0]
    users = dict(t.users)
    n = users[(DAY, feature, user)][0]
    users[(DAY, feature, user)] = [10 * n, round(10 * mean[user])]
    assert found(replace(t, users=users)) == {("user_jump", user)}


@pytest.mark.parametrize("scale", SCALES)
def test_longer_prompts_are_found_at_any_scale(scale: str) -> None:
    t = STEADY[scale]
    cells = {k: ([v[0], v[1] * 4, v[2]] if k[0] == DAY and k[2] == 2 else v) for k, v in t.cells.items()}
    got = found(replace(t, cells=cells))
    # the feature's hours carry 2.8x their tokens: some may pass as hour spikes too, nothing else
    assert ("prompt_growth", "翻译") in got and {k for k, _ in got} <= {"prompt_growth", "hour_spike"}


@pytest.mark.parametrize("scale", SCALES)
def test_a_burst_of_one_prompt_is_found_at_any_scale(scale: str) -> None:
    t = STEADY[scale]
    rate = sum(t.cells[(DAY, h, 0)][0] for h in range(24)) / 24
    sends = max(20, round(rate))  # one prompt as often as the whole feature, for ten minutes
    first = at(9, 5)
    burst = PromptDigestRow(
        DAY, "b" * 64, "客服问答", sends, sends * 500, first, first + timedelta(minutes=10)
    )
    cells = dict(t.cells)
    cells[(DAY, 9, 0)] = [
        v + d for v, d in zip(cells[(DAY, 9, 0)], (sends, sends * 300, sends * 200), strict=True)
    ]
    got = found(replace(t, cells=cells, digests=[*t.digests, burst]))
    # a burst that doubles a small deployment's hour is an hour spike as well
    assert ("prompt_burst", "b" * 12) in got and got <= {("prompt_burst", "b" * 12), ("hour_spike", "09:00")}
    assert found(replace(t, digests=[*t.digests, replace(burst, requests=max(5, sends // 4))])) == set()


def test_thresholds_name_relative_floors() -> None:
    th = Thresholds.from_mapping(
        {"hour_min_share_of_day": 0.05, "silence_min_hours": 2, "status_429_min_pct": 1}
    )
    assert (th.hour_min_share_of_day, th.silence_min_hours, th.status_429_min_pct) == (0.05, 2, 1.0)
    from llmtally import ConfigError

    with pytest.raises(ConfigError, match="share"):
        Thresholds.from_mapping({"silence_usual_share": 80})
    with pytest.raises(ConfigError, match="unknown"):
        Thresholds.from_mapping({"hour_min_excess": 1})


def test_new_kinds_are_named_in_the_report() -> None:
    from llmtally.report import build_report

    t = _failing(quiet(STEADY["3e6"], 2, since=10), {3: 0.5})
    for lang, words in (
        ("en", ("Service went quiet", "HTTP 429 spike")),
        ("zh", ("服务停止记录", "429 限流激增")),
    ):
        report = build_report(t.data(), lang=lang)
        kinds = {a["kind"] for a in report.summary["anomalies"]}
        assert kinds == {"silence", "failed_calls", "rate_limited"}
        assert all(w in report.html_file for w in words)
        assert (
            "logged no requests from 10:00 to 20:00" if lang == "en" else "10:00 至 20:00"
        ) in report.html_file


def test_an_absolute_floor_would_hide_a_small_deployments_spike() -> None:
    t = scaled(STEADY["3e4"], 15, 10)
    assert found(t) == {("hour_spike", "15:00")}
    old = detect_anomalies(t.data(), Thresholds(hour_min_tokens=20_000))  # the floor before issue 14
    assert old == []
