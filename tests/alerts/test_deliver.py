"""deliver(): one message per channel, retries with backoff, isolation, rate limit and quiet hours."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from llmtally import ConfigError
from llmtally.alerts import (
    AlertBatch,
    Channel,
    DeliveryPolicy,
    MemorySentLog,
    SentLog,
    SlackChannel,
    WebhookChannel,
    WeComChannel,
    deliver,
)
from tests.alerts.helpers import NOW, RUN, budget, finding
from tests.alerts.receivers import SLACK_PATH, Answer, Receiver, Webhook, WeCom, closed_port_url, slack

FAST = DeliveryPolicy(attempts=3, backoff_s=0.001, max_backoff_s=0.01)
BUSY: Answer = (503, {}, b"service unavailable")


class Sleeps(list[float]):
    """Records the waits instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


class Recording:
    """A channel keeping what it was sent; ``fail`` raises instead (a channel's bug)."""

    def __init__(self, name: str, fail: Exception | None = None) -> None:
        self.name, self.fail, self.batches = name, fail, list[AlertBatch]()

    def send(self, batch: AlertBatch) -> None:
        if self.fail:
            raise self.fail
        self.batches.append(batch)


def test_one_message_listing_every_finding_most_urgent_first() -> None:
    channel = Recording("a")
    dup = finding(1)
    (result,) = deliver(
        [finding(1), budget(), dup, finding(2, "info")], [channel], run=RUN, now=NOW, lang="en"
    )
    assert result.ok and result.status == "sent" and result.attempts == 1
    (batch,) = channel.batches
    assert [f.key for f in batch.findings] == ["budget:feature=chat:2026-12", "hour_spike:1", "hour_spike:2"]
    assert batch.lang == "en" and batch.generated_at == NOW and batch.run == RUN


def test_retries_503_twice_then_succeeds_with_exponential_backoff() -> None:
    sleeps = Sleeps()
    policy = DeliveryPolicy(attempts=4, backoff_s=0.5, max_backoff_s=30)
    with Receiver(Webhook(), script=[BUSY, BUSY]) as r:
        (result,) = deliver(
            [budget()], [WebhookChannel(f"{r.base}/h")], run=RUN, now=NOW, policy=policy, sleep=sleeps
        )
    assert result.status == "sent" and result.attempts == 3 and len(r.requests) == 3
    assert sleeps == [0.5, 1.0]


def test_gives_up_after_the_attempts() -> None:
    sleeps = Sleeps()
    with Receiver(Webhook(), script=[BUSY] * 5) as r:
        (result,) = deliver(
            [budget()], [WebhookChannel(f"{r.base}/h")], run=RUN, now=NOW, policy=FAST, sleep=sleeps
        )
    assert result.status == "failed" and not result.ok and result.attempts == 3
    assert "HTTP 503" in (result.error or "") and len(r.requests) == 3 and len(sleeps) == 2


def test_4xx_is_not_retried() -> None:
    sleeps = Sleeps()
    with Receiver(slack) as r:
        channel = SlackChannel(r.base + "/services/wrong")
        (result,) = deliver([budget()], [channel], run=RUN, now=NOW, policy=FAST, sleep=sleeps)
    assert result.status == "failed" and result.attempts == 1 and sleeps == []
    assert "no_service" in (result.error or "")


def test_429_waits_at_least_retry_after_capped() -> None:
    sleeps = Sleeps()
    policy = DeliveryPolicy(attempts=3, backoff_s=0.01, max_backoff_s=5)
    script = [(429, {"Retry-After": "2"}, b"rate_limited"), (429, {"Retry-After": "60"}, b"rate_limited")]
    with Receiver(slack, script=script) as r:
        (result,) = deliver(
            [budget()], [SlackChannel(r.base + SLACK_PATH)], run=RUN, now=NOW, policy=policy, sleep=sleeps
        )
    assert result.status == "sent" and result.attempts == 3
    assert sleeps == [2.0, 5.0]


def test_connect_errors_are_retried() -> None:
    sleeps = Sleeps()
    channel = WebhookChannel(closed_port_url(), name="down", timeout=2)
    (result,) = deliver([budget()], [channel], run=RUN, now=NOW, policy=FAST, sleep=sleeps)
    assert result.status == "failed" and result.attempts == 3 and len(sleeps) == 2


def test_a_failed_channel_does_not_block_the_others(caplog: pytest.LogCaptureFixture) -> None:
    log = MemorySentLog()
    broken = Recording("buggy", fail=RuntimeError("boom"))
    with Receiver(Webhook()) as hook, Receiver(WeCom(key="k")) as wecom:
        channels: list[Channel] = [
            WebhookChannel(closed_port_url(), name="down", timeout=2),
            broken,
            WebhookChannel(f"{hook.base}/h", name="hook"),
            WeComChannel(f"{wecom.base}/cgi-bin/webhook/send?key=k", name="wecom"),
        ]
        with caplog.at_level(logging.WARNING, logger="llmtally.alerts"):
            results = deliver(
                [budget(), finding(1)], channels, run=RUN, state=log, now=NOW, policy=FAST, sleep=Sleeps()
            )
    assert [(r.channel, r.status) for r in results] == [
        ("down", "failed"),
        ("buggy", "failed"),
        ("hook", "sent"),
        ("wecom", "sent"),
    ]
    assert results[1].error == "RuntimeError: boom" and results[1].attempts == 1
    assert len(hook.requests) == 1 and len(wecom.requests) == 1
    assert [(c, n) for c, _, n in log.entries] == [("hook", 2), ("wecom", 2)]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert {r.args[0] for r in warnings if r.args} == {"down", "buggy"}  # type: ignore[index]
    assert not any("Budget passed" in r.getMessage() or "1040000" in r.getMessage() for r in caplog.records)


def test_rate_limit_per_channel_per_rolling_hour() -> None:
    log = MemorySentLog()
    policy = DeliveryPolicy(max_per_hour=2)
    a, b = Recording("a"), Recording("b")
    for minutes in (0, 10):
        deliver([budget()], [a], run=RUN, state=log, now=NOW + timedelta(minutes=minutes), policy=policy)
    limited, other = deliver(
        [budget()], [a, b], run=RUN, state=log, now=NOW + timedelta(minutes=20), policy=policy
    )
    assert limited.status == "rate_limited" and not limited.ok and "2 message(s)" in (limited.error or "")
    assert [f.key for f in limited.findings] == [budget().key]  # says what was not sent
    assert other.status == "sent" and len(a.batches) == 2
    # just over an hour after the first message, one slot is free again
    (again,) = deliver([budget()], [a], run=RUN, state=log, now=NOW + timedelta(minutes=61), policy=policy)
    assert again.status == "sent" and len(a.batches) == 3


def test_rate_limit_off_and_memory_log_is_a_sent_log() -> None:
    log = MemorySentLog()
    assert isinstance(log, SentLog)
    a = Recording("a")
    policy = DeliveryPolicy(max_per_hour=None)
    for _ in range(10):
        deliver([budget()], [a], run=RUN, state=log, now=NOW, policy=policy)
    assert len(a.batches) == 10 and log.sent_since("a", NOW) == 10 and log.sent_since("b", NOW) == 0


def test_quiet_hours_hold_all_but_critical() -> None:
    policy = DeliveryPolicy(quiet_hours="22:00-08:00", timezone="Asia/Shanghai")
    night = datetime(2026, 12, 2, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai
    a = Recording("a")
    (result,) = deliver([finding(1), budget("critical")], [a], run=RUN, now=night, policy=policy)
    assert result.status == "sent" and [f.kind for f in result.findings] == ["budget"]
    assert [f.key for f in result.held] == ["hour_spike:1"]
    assert [f.kind for f in a.batches[0].findings] == ["budget"]
    (held,) = deliver([finding(1)], [a], run=RUN, now=night, policy=policy)
    assert held.status == "held" and held.ok and len(held.held) == 1 and len(a.batches) == 1
    (day,) = deliver([finding(1)], [a], run=RUN, now=NOW, policy=policy)  # 14:00: not quiet
    assert day.status == "sent" and day.held == ()


@pytest.mark.parametrize(
    ("quiet", "local", "expected"),
    [
        ("22:00-08:00", "21:59", False),
        ("22:00-08:00", "22:00", True),
        ("22:00-08:00", "03:00", True),
        ("22:00-08:00", "08:00", False),
        ("12:00-13:30", "13:00", True),
        ("12:00-13:30", "13:30", False),
    ],
)
def test_quiet_hours_window(quiet: str, local: str, expected: bool) -> None:
    policy = DeliveryPolicy(quiet_hours=quiet, timezone="Asia/Shanghai")
    hour, minute = map(int, local.split(":"))
    now = datetime(2026, 12, 2, hour, minute, tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(UTC)
    assert policy.is_quiet(now) is expected


def test_no_findings_sends_nothing() -> None:
    a = Recording("a")
    (result,) = deliver([], [a], run=RUN, now=NOW)
    assert result.status == "skipped" and result.ok and a.batches == []


def test_channel_language_wins_over_the_default() -> None:
    a = Recording("a")
    a.lang = "zh"  # type: ignore[attr-defined]
    b = Recording("b")
    deliver([budget()], [a, b], run=RUN, now=NOW, lang="en")
    assert a.batches[0].lang == "zh" and b.batches[0].lang == "en"


@pytest.mark.parametrize(
    "kwargs",
    [{"attempts": 0}, {"backoff_s": -1}, {"max_per_hour": 0}, {"quiet_hours": "22-08"}, {"quiet_hours": "25:00-08:00"},
     {"quiet_hours": "08:00-08:00"}, {"timezone": "Mars/Olympus"}],
)  # fmt: skip
def test_policy_is_validated(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        DeliveryPolicy(**kwargs)  # type: ignore[arg-type]


def test_deliver_rejects_naive_now_and_unknown_language() -> None:
    with pytest.raises(ValueError, match="aware"):
        deliver([budget()], [Recording("a")], run=RUN, now=datetime(2026, 12, 2))
    with pytest.raises(ConfigError):
        deliver([budget()], [Recording("a")], run=RUN, now=NOW, lang="fr")
