"""Channels from connection fields, and from real Airflow connections defined as AIRFLOW_CONN_ variables."""

from __future__ import annotations

import email
import json
from email.policy import default

import pytest

from llmtally import ConfigError
from llmtally.alerts import (
    DingTalkChannel,
    EmailChannel,
    FeishuChannel,
    SlackChannel,
    WebhookChannel,
    WeComChannel,
    channel_from_connection,
    deliver,
)
from llmtally.report import AirflowSmtpNotifier, SmtpNotifier
from tests.alerts.helpers import NOW, RUN, budget
from tests.alerts.receivers import DingTalk, Receiver, Webhook
from tests.report.smtp_sink import SmtpSink


def test_kinds_from_extra_or_conn_type() -> None:
    slack = channel_from_connection(
        "s", "slack", "https://hooks.slack.com/services/T/B/X", extra={"lang": "en"}
    )
    assert isinstance(slack, SlackChannel) and slack.name == "s" and slack.lang == "en"
    assert slack.url == "https://hooks.slack.com/services/T/B/X"
    feishu = channel_from_connection("f", "http", "open.feishu.cn", password="pw",
                                     extra={"channel": "lark", "path": "/open-apis/bot/v2/hook/abc"})  # fmt: skip
    assert isinstance(feishu, FeishuChannel) and feishu.secret == "pw"
    assert feishu.url == "https://open.feishu.cn/open-apis/bot/v2/hook/abc"
    hook = channel_from_connection(
        "h", "http", "example.com", schema="http", port=8080, extra={"secret": "x"}
    )
    assert isinstance(hook, WebhookChannel) and hook.url == "http://example.com:8080" and hook.secret == "x"


def test_dingtalk_and_wecom_take_bare_tokens() -> None:
    ding = channel_from_connection("d", "dingtalk", login="tok", password="SEC1")
    assert isinstance(ding, DingTalkChannel)
    assert ding.url == "https://oapi.dingtalk.com/robot/send?access_token=tok" and ding.secret == "SEC1"
    wecom = channel_from_connection("w", None, extra={"channel": "wecom", "key": "k/1"})
    assert isinstance(wecom, WeComChannel)
    assert wecom.url == "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k%2F1"
    full = channel_from_connection("w2", "wecom", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc")
    assert isinstance(full, WeComChannel) and full.url.endswith("?key=abc")


def test_email_from_connection_fields() -> None:
    mail = channel_from_connection("m", "smtp", "mail.example.com", port=2525, login="u", password="p",
                                   extra={"to": "a@example.com;b@example.com", "disable_ssl": True, "from_email": "x@example.com"})  # fmt: skip
    assert isinstance(mail, EmailChannel) and mail.to == ["a@example.com", "b@example.com"]
    assert mail.sender == "x@example.com"
    notifier = mail.notifier
    assert isinstance(notifier, SmtpNotifier)
    assert (notifier.host, notifier.port, notifier.user, notifier.ssl, notifier.starttls) == (
        "mail.example.com",
        2525,
        "u",
        False,
        True,
    )


@pytest.mark.parametrize(
    ("conn_type", "host", "extra", "match"),
    [
        ("postgres", "db", {}, "unknown alert channel 'postgres'"),
        (None, None, {}, "unknown alert channel '\\(none\\)'"),
        ("slack", None, {}, "has no host"),
        ("wecom", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send", {}, "needs its \\?key"),
        ("slack", "https://h/x", {"lang": "fr"}, "extra.lang"),
        ("slack", "https://h/x", {"timeout": "soon"}, "extra.timeout"),
        ("email", "mail", {}, "no recipients"),
    ],
)
def test_bad_connections_say_what_to_fix(
    conn_type: str | None, host: str | None, extra: dict[str, object], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        channel_from_connection("c", conn_type, host, extra=extra)


def test_channel_from_airflow_env_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmtally.alerts.airflow import channel_from_airflow, channels_from_airflow

    with (
        Receiver(Webhook(secret="hook-secret")) as hook,
        Receiver(DingTalk(token="tok", secret="SECding")) as ding,
    ):
        monkeypatch.setenv("AIRFLOW_CONN_ALERTS_HOOK", json.dumps(
            {"conn_type": "http", "host": f"{hook.base}/llmtally", "password": "hook-secret",
             "extra": {"channel": "webhook", "lang": "en"}}))  # fmt: skip
        monkeypatch.setenv("AIRFLOW_CONN_ALERTS_DING", json.dumps(
            {"conn_type": "dingtalk", "host": f"{ding.base}/robot/send?access_token=tok", "password": "SECding"}))  # fmt: skip
        channel = channel_from_airflow("alerts_hook")
        assert isinstance(channel, WebhookChannel) and channel.name == "alerts_hook" and channel.lang == "en"
        channels = channels_from_airflow("alerts_hook, alerts_ding")
        results = deliver([budget()], channels, run=RUN, now=NOW)
    assert [(r.channel, r.status) for r in results] == [("alerts_hook", "sent"), ("alerts_ding", "sent")]
    assert hook.requests[0].json()["lang"] == "en" and hook.requests[0].path == "/llmtally"
    assert ding.requests[0].json()["markdown"]["title"].startswith("llmtally:")  # zh: the default


def test_channel_from_airflow_email_uses_the_smtp_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmtally.alerts.airflow import channel_from_airflow

    with SmtpSink() as sink:
        monkeypatch.setenv("AIRFLOW_CONN_ALERTS_MAIL", json.dumps(
            {"conn_type": "smtp", "host": "127.0.0.1", "port": sink.port,
             "extra": {"channel": "email", "to": "ops@example.com", "disable_ssl": True, "disable_tls": True,
                       "from_email": "airflow@example.com", "lang": "en"}}))  # fmt: skip
        channel = channel_from_airflow("alerts_mail")
        assert isinstance(channel, EmailChannel) and isinstance(channel.notifier, AirflowSmtpNotifier)
        (result,) = deliver([budget()], [channel], run=RUN, now=NOW)
    assert result.status == "sent", result.error
    (received,) = sink.messages
    assert received.sender == "airflow@example.com" and received.recipients == ["ops@example.com"]
    msg = email.message_from_bytes(received.data, policy=default)
    assert msg["Subject"] == "llmtally: 1 finding (provisional, 2026-12-02 14:00)"


def test_channel_from_airflow_missing_connection() -> None:
    from llmtally.alerts.airflow import channel_from_airflow

    with pytest.raises(ConfigError, match="AIRFLOW_CONN_ALERTS_NOWHERE"):
        channel_from_airflow("alerts_nowhere")
