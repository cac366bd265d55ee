"""The generic webhook: one JSON POST per batch, optionally signed.

Payload, version 1 (``Content-Type: application/json; charset=utf-8``, UTF-8, compact)::

    {
      "version": 1,
      "source": "llmtally",
      "lang": "en",
      "summary": "llmtally: 2 findings (provisional, 2026-12-02 14:00)",
      "generated_at": "2026-12-02T06:00:00Z",
      "run": {"dag_id": "llm_usage_hourly", "run_id": "scheduled__2026-12-02T06:00:00+00:00",
              "day": "2026-12-02", "provisional": true},
      "findings": [
        {"kind": "budget", "key": "budget:feature=chat:2026-12", "severity": "critical",
         "title": "Budget passed", "text": "feature chat used 104% of its December budget",
         "data": {"feature": "chat", "used": 1040000, "budget": 1000000}, "url": null}
      ]
    }

``findings`` are ordered most urgent first; ``title`` and ``text`` are in ``lang``; ``data`` holds
numbers and names only (never prompt or completion text).  Fields may be added within version 1;
a change of meaning gets a new ``version``.

With a secret, two headers are added: ``X-Llmtally-Timestamp`` (Unix seconds at sending) and
``X-Llmtally-Signature: sha256=<hex>``, the HMAC-SHA256 of the raw body keyed by the secret (UTF-8).
A receiver recomputes it over the bytes it received and compares in constant time.  Any 2xx answer
is a success.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC
from typing import Any

from ._channels import HttpChannel, dumps, post_json, refused
from ._finding import AlertBatch
from ._render import header

__all__ = ["PAYLOAD_VERSION", "WebhookChannel", "webhook_payload"]

PAYLOAD_VERSION = 1


def webhook_payload(batch: AlertBatch) -> dict[str, Any]:
    """The version-1 payload of ``batch`` (see the module docstring)."""
    lang = batch.lang
    return {
        "version": PAYLOAD_VERSION,
        "source": "llmtally",
        "lang": lang,
        "summary": header(batch),
        "generated_at": batch.generated_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "run": {
            "dag_id": batch.run.dag_id,
            "run_id": batch.run.run_id,
            "day": batch.run.day.isoformat(),
            "provisional": batch.run.provisional,
        },
        "findings": [
            {
                "kind": f.kind,
                "key": f.key,
                "severity": f.severity,
                "title": f.title_in(lang),
                "text": f.text_in(lang),
                "data": dict(f.data),
                "url": f.url,
            }
            for f in batch.findings
        ],
    }


class WebhookChannel(HttpChannel):
    """POSTs the version-1 JSON payload to ``url``; signs it when ``secret`` is set."""

    DEFAULT_NAME = "webhook"

    def send(self, batch: AlertBatch) -> None:
        """POST the payload; anything but a 2xx answer raises :class:`DeliveryError`."""
        body = dumps(webhook_payload(batch))
        headers = {}
        if self.secret:
            digest = hmac.new(self.secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
            headers["X-Llmtally-Timestamp"] = str(int(self._clock()))
            headers["X-Llmtally-Signature"] = f"sha256={digest}"
        what = f"webhook {self.name!r}"
        reply = post_json(what, self.url, body, timeout=self.timeout, headers=headers)
        if not 200 <= reply.status < 300:
            raise refused(what, reply, "check the URL and the secret of the connection")
