"""Alerts: findings of a run sent to chat robots, webhooks and email, one message per channel.

A caller (budget checks, spike and silence detection) builds :class:`Finding` objects with their
words in Chinese and English and calls :func:`deliver` with the channels of its Airflow connections
(:func:`llmtally.alerts.airflow.channel_from_airflow`) or built directly::

    from llmtally.alerts import DeliveryPolicy, Finding, MemorySentLog, RunInfo, SlackChannel, deliver

    results = deliver(findings, [SlackChannel(url, name="alerts_slack")], run=RunInfo(day),
                      state=MemorySentLog(), lang="en", policy=DeliveryPolicy(quiet_hours="22:00-08:00"))

Channels: :class:`WebhookChannel` (documented JSON, optional HMAC signature), :class:`SlackChannel`,
:class:`DingTalkChannel`, :class:`FeishuChannel`, :class:`WeComChannel`, :class:`EmailChannel`; any
object with ``name`` and ``send(batch)`` is a :class:`Channel`.  See ``docs/alerts.md``.
"""

from ._channels import Channel, TransientDeliveryError
from ._connections import CHANNEL_KINDS, channel_from_connection, split_conn_ids
from ._deliver import DeliveryPolicy, DeliveryResult, DeliveryStatus, MemorySentLog, SentLog, deliver
from ._dingtalk import DingTalkChannel
from ._email import EmailChannel
from ._feishu import FeishuChannel
from ._finding import LANGS, SEVERITIES, AlertBatch, Finding, JSONValue, RunInfo, Severity
from ._slack import SlackChannel
from ._webhook import PAYLOAD_VERSION, WebhookChannel, webhook_payload
from ._wecom import WECOM_MAX_BYTES, WeComChannel

__all__ = [
    "CHANNEL_KINDS",
    "LANGS",
    "PAYLOAD_VERSION",
    "SEVERITIES",
    "WECOM_MAX_BYTES",
    "AlertBatch",
    "Channel",
    "DeliveryPolicy",
    "DeliveryResult",
    "DeliveryStatus",
    "DingTalkChannel",
    "EmailChannel",
    "FeishuChannel",
    "Finding",
    "JSONValue",
    "MemorySentLog",
    "RunInfo",
    "SentLog",
    "Severity",
    "SlackChannel",
    "TransientDeliveryError",
    "WeComChannel",
    "WebhookChannel",
    "channel_from_connection",
    "deliver",
    "split_conn_ids",
    "webhook_payload",
]
