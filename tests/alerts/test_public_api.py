"""The alerts package's public surface is deliberate: pinned here."""

from __future__ import annotations

import subprocess
import sys

import llmtally.alerts
from llmtally import DeliveryError
from llmtally.alerts import TransientDeliveryError


def test_public_names_are_pinned() -> None:
    """Exactly these names, in ruff's (isort-style) order: adding or removing one is an API change."""
    assert llmtally.alerts.__all__ == [
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
    for name in llmtally.alerts.__all__:
        assert hasattr(llmtally.alerts, name), name


def test_transient_errors_are_delivery_errors() -> None:
    assert issubclass(TransientDeliveryError, DeliveryError)


def test_import_does_not_load_airflow() -> None:
    code = "import sys, llmtally.alerts; print('airflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
