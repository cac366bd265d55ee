"""Delivering a run's findings: one message per channel, retries, quiet hours and a rate limit.

:func:`deliver` takes all findings of one run and, for each channel in turn:

1. **Groups**: one :class:`AlertBatch` (so one message) with every finding due, most urgent first;
   findings repeating a key are dropped after the first.
2. **Quiet hours** (``DeliveryPolicy.quiet_hours = "22:00-08:00"``, in ``timezone``): findings below
   ``critical`` are **held**, not sent and not dropped: they come back in ``DeliveryResult.held`` for
   the caller to deliver after the quiet hours (e.g. with the next run).  Critical findings go out.
3. **Rate limit**: at most ``max_per_hour`` messages per channel in any rolling hour, counted in a
   :class:`SentLog`; over it the message is not sent and the result's status is ``rate_limited``
   (critical findings included: a storm of messages helps nobody).  ``None`` disables it.
4. **Retries** :class:`TransientDeliveryError` (network errors, timeouts, 429, 5xx, vendor rate
   limits) up to ``attempts`` times, waiting ``backoff_s · 2^(n-1)`` seconds — at least the server's
   ``Retry-After`` — capped at ``max_backoff_s``.  Other errors are not retried.

A failing channel never stops the others: each gets a :class:`DeliveryResult` and failures are
logged at WARNING (channel name and error only, never finding data).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from typing import Literal, Protocol, TypeAlias, runtime_checkable

from .._config import DEFAULT_TIMEZONE
from .._exceptions import ConfigError, DeliveryError, InputError
from .._time import zone
from ._channels import Channel, TransientDeliveryError
from ._finding import LANGS, AlertBatch, Finding, RunInfo

__all__ = ["DeliveryPolicy", "DeliveryResult", "DeliveryStatus", "MemorySentLog", "SentLog", "deliver"]

log = logging.getLogger(__name__)

DeliveryStatus: TypeAlias = Literal["sent", "failed", "rate_limited", "held", "skipped"]
_WINDOW = timedelta(hours=1)
_QUIET = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


@runtime_checkable
class SentLog(Protocol):
    """Remembers the messages sent per channel, for the rate limit (shared by all runs)."""

    def sent_since(self, channel: str, since: datetime) -> int:
        """How many messages ``channel`` was sent at or after ``since``."""

    def record_sent(self, channel: str, at: datetime, findings: int) -> None:
        """Note one message to ``channel`` at ``at`` carrying ``findings`` findings."""


class MemorySentLog:
    """A :class:`SentLog` in memory (one process; the test double)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sent: list[tuple[str, datetime, int]] = []

    def sent_since(self, channel: str, since: datetime) -> int:
        """How many messages ``channel`` was sent at or after ``since``."""
        with self._lock:
            return sum(1 for name, at, _ in self._sent if name == channel and at >= since)

    def record_sent(self, channel: str, at: datetime, findings: int) -> None:
        """Note one message."""
        with self._lock:
            self._sent.append((channel, at, findings))

    @property
    def entries(self) -> list[tuple[str, datetime, int]]:
        """``(channel, at, findings)`` of every message noted, oldest first."""
        with self._lock:
            return list(self._sent)


def _parse_quiet(value: str) -> tuple[clock_time, clock_time]:
    match = _QUIET.match(value)
    if not match:
        raise ConfigError(f"quiet_hours {value!r} must look like '22:00-08:00' (local start-end)")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    try:
        start, end = clock_time(h1, m1), clock_time(h2, m2)
    except ValueError as exc:
        raise ConfigError(f"quiet_hours {value!r}: {exc}") from exc
    if start == end:
        raise ConfigError(f"quiet_hours {value!r} starts and ends at the same time; leave it unset instead")
    return start, end


@dataclass(frozen=True)
class DeliveryPolicy:
    """How :func:`deliver` retries, holds and limits (see the module docstring); validated here."""

    attempts: int = 3
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    max_per_hour: int | None = 6
    quiet_hours: str | None = None
    timezone: str = DEFAULT_TIMEZONE

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ConfigError(f"attempts must be at least 1, not {self.attempts}")
        if self.backoff_s < 0 or self.max_backoff_s < 0:
            raise ConfigError("backoff_s and max_backoff_s must not be negative")
        if self.max_per_hour is not None and self.max_per_hour < 1:
            raise ConfigError(
                f"max_per_hour must be at least 1 (or None for no limit), not {self.max_per_hour}"
            )
        zone(self.timezone)
        if self.quiet_hours:
            _parse_quiet(self.quiet_hours)

    def is_quiet(self, now: datetime) -> bool:
        """Whether ``now`` (aware) falls in the quiet hours, read in ``timezone``."""
        if not self.quiet_hours:
            return False
        start, end = _parse_quiet(self.quiet_hours)
        local = now.astimezone(zone(self.timezone)).time().replace(tzinfo=None)
        if start < end:
            return start <= local < end
        return local >= start or local < end  # spans midnight

    def delay(self, failed_attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the ``failed_attempt``-th try (1-based)."""
        wait = self.backoff_s * 2.0 ** (failed_attempt - 1)
        if retry_after is not None:
            wait = max(wait, retry_after)
        return min(wait, self.max_backoff_s)


@dataclass(frozen=True)
class DeliveryResult:
    """What happened on one channel.

    ``status``: ``sent``; ``failed`` (``error`` says why); ``rate_limited`` (not sent, ``error`` says
    why); ``held`` (quiet hours, nothing due now); ``skipped`` (no findings).  ``findings`` are those
    the message carried or would have carried, ``held`` those kept back for after the quiet hours.
    """

    channel: str
    status: DeliveryStatus
    attempts: int = 0
    error: str | None = None
    findings: tuple[Finding, ...] = ()
    held: tuple[Finding, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """Nothing went wrong: sent, or nothing was due."""
        return self.status in ("sent", "held", "skipped")


def _ordered(findings: Iterable[Finding]) -> list[Finding]:
    seen: set[str] = set()
    unique = []
    for finding in findings:
        if finding.key not in seen:
            seen.add(finding.key)
            unique.append(finding)
    return sorted(unique, key=lambda f: -f.rank)  # stable: the caller's order within a severity


def _send(
    channel: Channel, batch: AlertBatch, policy: DeliveryPolicy, sleep: Callable[[float], None]
) -> tuple[int, str | None]:
    """``(attempts, error or None)``."""
    for attempt in range(1, policy.attempts + 1):
        try:
            channel.send(batch)
            return attempt, None
        except TransientDeliveryError as exc:
            if attempt == policy.attempts:
                return attempt, str(exc)
            wait = policy.delay(attempt, exc.retry_after)
            log.info("alert channel %r: %s; retrying in %.3g s", channel.name, exc, wait)
            sleep(wait)
        except DeliveryError as exc:
            return attempt, str(exc)
        except Exception as exc:  # a channel's bug must not stop the other channels
            return attempt, f"{type(exc).__name__}: {exc}"
    raise AssertionError("unreachable")  # pragma: no cover


def deliver(
    findings: Iterable[Finding],
    channels: Sequence[Channel],
    *,
    run: RunInfo,
    state: SentLog | None = None,
    now: datetime | None = None,
    lang: str = "zh",
    policy: DeliveryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[DeliveryResult]:
    """Send ``findings`` of ``run`` to every channel; one :class:`DeliveryResult` per channel, in order.

    ``state`` is the :class:`SentLog` of the rate limit (none: no limit); ``now`` an aware instant
    (default: the current time); ``lang`` the language of channels that set none themselves;
    ``sleep`` waits between retries (tests pass a recorder).  Never raises for a channel's failure.
    """
    policy = policy or DeliveryPolicy()
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        raise InputError("deliver(now=…) must be an aware datetime (UTC)")
    if lang not in LANGS:
        raise ConfigError(f"alert language {lang!r} is not one of {LANGS}")
    ordered = _ordered(findings)
    if policy.is_quiet(now):
        due = tuple(f for f in ordered if f.severity == "critical")
        held = tuple(f for f in ordered if f.severity != "critical")
    else:
        due, held = tuple(ordered), ()
    results = []
    for channel in channels:
        results.append(
            _deliver_one(
                channel, due, held, run=run, state=state, now=now, lang=lang, policy=policy, sleep=sleep
            )
        )
    return results


def _deliver_one(
    channel: Channel,
    due: tuple[Finding, ...],
    held: tuple[Finding, ...],
    *,
    run: RunInfo,
    state: SentLog | None,
    now: datetime,
    lang: str,
    policy: DeliveryPolicy,
    sleep: Callable[[float], None],
) -> DeliveryResult:
    name = channel.name
    if not due:
        return DeliveryResult(name, "held" if held else "skipped", held=held)
    if state is not None and policy.max_per_hour is not None:
        try:
            recent = state.sent_since(name, now - _WINDOW)
        except Exception as exc:  # an unreadable log must not silence alerts
            log.warning("alert channel %r: the sent log could not be read (%s); not rate limiting", name, exc)
            recent = 0
        if recent >= policy.max_per_hour:
            limited = (
                f"rate limited: {recent} message(s) to {name!r} in the last hour "
                f"(max_per_hour={policy.max_per_hour}); not sent"
            )
            log.warning("alert channel %r: %s", name, limited)
            return DeliveryResult(name, "rate_limited", error=limited, findings=due, held=held)
    try:
        batch = AlertBatch(
            due, run, now, lang=getattr(channel, "lang", None) or lang, timezone=policy.timezone
        )
    except InputError as exc:
        log.warning("alert channel %r: %s", name, exc)
        return DeliveryResult(name, "failed", error=str(exc), findings=due, held=held)
    attempts, error = _send(channel, batch, policy, sleep)
    if error is not None:
        log.warning("alert channel %r failed after %d attempt(s): %s", name, attempts, error)
        return DeliveryResult(name, "failed", attempts, error, findings=due, held=held)
    if state is not None:
        try:
            state.record_sent(name, now, len(due))
        except Exception as exc:  # the message is out; only the rate limit loses count
            log.warning("alert channel %r: sent, but the sent log could not record it (%s)", name, exc)
    log.info("alert channel %r: %d finding(s) sent in %d attempt(s)", name, len(due), attempts)
    return DeliveryResult(name, "sent", attempts, findings=due, held=held)
