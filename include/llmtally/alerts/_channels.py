"""The :class:`Channel` protocol, and the one HTTP call every chat and webhook channel makes.

A channel sends one :class:`AlertBatch` as one message and raises :class:`DeliveryError` when it
could not; :class:`TransientDeliveryError` (a subclass) marks a failure that may pass — connection
refused, a timeout, HTTP 429 or 5xx, a vendor's own rate limit — and is the only kind
:func:`llmtally.alerts.deliver` retries.  Error messages never contain the webhook URL's path or
query (they hold the vendor's secret token).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import httpx

from .. import __version__
from .._exceptions import DeliveryError
from ._finding import AlertBatch

__all__ = [
    "Channel",
    "HttpChannel",
    "Reply",
    "TransientDeliveryError",
    "dumps",
    "json_reply",
    "post_json",
    "redact",
    "refused",
]


class HttpChannel:
    """What every chat and webhook channel holds: the URL it posts to (the vendor's token is in it),
    its name (the connection id), an optional signing ``secret``, its own language, the timeout, and
    the clock signatures are timed by.  Subclasses add ``send``; ``DEFAULT_NAME`` names them."""

    DEFAULT_NAME = "channel"

    def __init__(
        self,
        url: str,
        *,
        name: str | None = None,
        secret: str | None = None,
        lang: str | None = None,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url, self.name, self.secret, self.lang = url, name or self.DEFAULT_NAME, secret or None, lang
        self.timeout, self._clock = timeout, clock

    def __repr__(self) -> str:  # never the URL: it holds the token
        return f"{type(self).__name__}(name={self.name!r}, signed={self.secret is not None})"


class _RedactUrls(logging.Filter):
    """httpx logs each request's full URL at INFO: the vendors' tokens are in it.  Redacted here."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(str(a)) if isinstance(a, httpx.URL) else a for a in record.args)
        return True


logging.getLogger("httpx").addFilter(_RedactUrls())


@runtime_checkable
class Channel(Protocol):
    """Where alerts go: one message per :class:`AlertBatch`.

    ``name`` identifies the channel in results, logs and the rate limit (the Airflow connection id).
    ``send`` raises :class:`DeliveryError` on failure, :class:`TransientDeliveryError` when a retry
    may succeed.
    """

    name: str

    def send(self, batch: AlertBatch) -> None:
        """Deliver ``batch`` as one message."""


class TransientDeliveryError(DeliveryError):
    """A delivery failed in a way that may pass; ``retry_after`` is the wait the server asked for (s)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Reply:
    """What the server answered: status, body text and headers."""

    status: int
    text: str
    headers: Mapping[str, str]


def redact(url: str) -> str:
    """``https://oapi.dingtalk.com/…``: the URL without the path and query that carry its token."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}{f':{parts.port}' if parts.port else ''}/…"


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def post_json(
    what: str, url: str, body: bytes, *, timeout: float, headers: Mapping[str, str] | None = None
) -> Reply:
    """POST ``body`` (JSON) to ``url``; 429, 5xx and network errors raise :class:`TransientDeliveryError`.

    Other statuses are returned for the channel to judge: a vendor's JSON error says more than its
    status code.  ``what`` names the channel in error messages.
    """
    sent_headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": f"llmtally/{__version__}",
        **(headers or {}),
    }
    where = redact(url)
    try:
        response = httpx.post(url, content=body, headers=sent_headers, timeout=timeout)
    except httpx.TimeoutException as exc:
        raise TransientDeliveryError(f"{what}: no answer from {where} within {timeout:g} s") from exc
    except httpx.UnsupportedProtocol as exc:
        raise DeliveryError(f"{what}: {where} is not an http(s) URL; fix the connection's host") from exc
    except httpx.TransportError as exc:
        raise TransientDeliveryError(f"{what}: could not reach {where} ({type(exc).__name__})") from exc
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise DeliveryError(f"{what}: the URL is not usable ({exc}); fix the connection's host") from exc
    reply = Reply(response.status_code, response.text, dict(response.headers))
    if reply.status == 429:
        wait = _retry_after(response.headers.get("Retry-After"))
        raise TransientDeliveryError(
            f"{what}: {where} is rate limiting (HTTP 429"
            + (f", retry after {wait:g} s)" if wait is not None else ")"),
            retry_after=wait,
        )
    if reply.status >= 500:
        raise TransientDeliveryError(f"{what}: {where} answered HTTP {reply.status}: {_snippet(reply.text)}")
    return reply


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def refused(what: str, reply: Reply, hint: str = "") -> DeliveryError:
    """The error for an answer that is not a success (a 4xx other than 429, or an unexpected body)."""
    msg = f"{what}: the server refused the message (HTTP {reply.status}: {_snippet(reply.text) or 'empty'})"
    return DeliveryError(msg + (f"; {hint}" if hint else ""))


def json_reply(what: str, reply: Reply) -> dict[str, Any]:
    """The JSON object a vendor answered with, or :class:`DeliveryError` naming what came instead."""
    try:
        data = json.loads(reply.text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise refused(what, reply)
    return data


def dumps(payload: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON (Chinese kept as characters: the vendors' byte limits count UTF-8)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
