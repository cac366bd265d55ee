"""An email alert reaching a local SMTP server the test starts."""

from __future__ import annotations

import email
from email.message import EmailMessage
from email.policy import default

import pytest

from llmtally import ConfigError
from llmtally.alerts import DeliveryPolicy, EmailChannel, deliver
from llmtally.report import SmtpNotifier
from tests.alerts.helpers import NOW, RUN, batch, budget, finding
from tests.report.smtp_sink import SmtpSink


def _parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_email_alert_is_received_in_chinese() -> None:
    with SmtpSink() as sink:
        channel = EmailChannel(SmtpNotifier("127.0.0.1", sink.port, timeout=10), "ops@example.com, oncall@example.com",
                               sender="llmtally@example.com", lang="zh")  # fmt: skip
        channel.send(batch(lang="zh"))
    (received,) = sink.messages
    assert received.sender == "llmtally@example.com"
    assert received.recipients == ["ops@example.com", "oncall@example.com"]
    msg = _parse(received.data)
    assert msg["Subject"] == "llmtally:2 条发现(临时,2026-12-02 14:00)"
    assert msg.get_content_type() == "multipart/alternative"
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain is not None and html is not None
    text = plain.get_content()
    assert "🔴 严重:超出预算 — 功能 chat 已用完 12 月预算的 104%" in text
    assert "运行:llm_usage_hourly" in text
    assert "<strong>严重:超出预算</strong>" in html.get_content()


def test_email_through_deliver_retries_a_451() -> None:
    with SmtpSink(fail_first=1) as sink:
        channel = EmailChannel(
            SmtpNotifier("127.0.0.1", sink.port, timeout=10), ["ops@example.com"], name="mail"
        )
        policy = DeliveryPolicy(backoff_s=0.001)
        (result,) = deliver([budget(), finding(1)], [channel], run=RUN, now=NOW, lang="en", policy=policy)
    assert result.status == "sent" and result.attempts == 2
    assert _parse(sink.messages[0].data)["Subject"] == "llmtally: 2 findings (provisional, 2026-12-02 14:00)"


def test_email_needs_recipients() -> None:
    with pytest.raises(ConfigError, match="no recipients"):
        EmailChannel(SmtpNotifier(), [])
