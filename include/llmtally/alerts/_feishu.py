"""Feishu / Lark custom bots: ``https://open.feishu.cn/open-apis/bot/v2/hook/…``
(Lark: ``https://open.larksuite.com/open-apis/bot/v2/hook/…``).

Signed mode (签名校验): ``timestamp`` is the time in seconds, ``string_to_sign =
f"{timestamp}\\n{secret}"`` is the HMAC-SHA256 **key** over an empty message, and ``sign`` is the
Base64 of the digest; both go into the body next to the message (Feishu accepts a timestamp within
an hour).  The message is an interactive card: a header coloured by the most urgent severity and one
``markdown`` element listing the findings.  Feishu answers ``{"code": 0, "msg": "success"}``
(older bots: ``{"StatusCode": 0}``); any other code is a failure (``19021``: signature or timestamp
rejected; ``11232``: sent too often, retried).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from .._exceptions import DeliveryError
from ._channels import HttpChannel, TransientDeliveryError, dumps, json_reply, post_json, refused
from ._finding import AlertBatch
from ._render import MARKDOWN, fit, header, lines, run_line

__all__ = ["FeishuChannel", "feishu_payload"]

_MAX_BYTES = 18_000  # the bot takes request bodies up to 20 KB
_TOO_FAST = 11232
_TEMPLATES = {"critical": "red", "warning": "orange", "info": "blue"}


def feishu_payload(batch: AlertBatch) -> dict[str, Any]:
    """The interactive-card message of ``batch`` (without ``timestamp`` / ``sign``)."""
    found, footer = lines(batch, MARKDOWN), run_line(batch)
    return {
        "msg_type": "interactive",
        "card": {
            "config": {"wide_screen_mode": True},
            "header": {
                "title": {"tag": "plain_text", "content": header(batch)},
                "template": _TEMPLATES[batch.severity],
            },
            "elements": [
                {"tag": "markdown", "content": fit(None, found, _MAX_BYTES, batch.lang, foot=footer)}
            ],
        },
    }


class FeishuChannel(HttpChannel):
    """Posts a batch to a Feishu/Lark bot ``url``; signs the body when ``secret`` is set."""

    DEFAULT_NAME = "feishu"

    def signature(self) -> dict[str, str]:
        """``{"timestamp": …, "sign": …}`` for the body, empty without a secret."""
        if not self.secret:
            return {}
        timestamp = str(int(self._clock()))
        key = f"{timestamp}\n{self.secret}".encode()
        return {
            "timestamp": timestamp,
            "sign": base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode(),
        }

    def send(self, batch: AlertBatch) -> None:
        """POST the card; ``code != 0`` raises :class:`DeliveryError` with Feishu's ``msg``."""
        what = f"Feishu {self.name!r}"
        payload = {**self.signature(), **feishu_payload(batch)}
        reply = post_json(what, self.url, dumps(payload), timeout=self.timeout)
        answer = json_reply(what, reply)
        code = answer.get("code", answer.get("StatusCode"))
        if code == 0 and reply.status == 200:
            return
        if code is None or code == 0:
            raise refused(what, reply)
        detail = answer.get("msg", answer.get("StatusMessage", ""))
        msg = f"{what}: Feishu refused the message: code {code}: {detail}"
        if code == _TOO_FAST:
            raise TransientDeliveryError(msg)
        raise DeliveryError(
            msg + "; check the webhook URL, the secret (签名校验) and the bot's keywords / IP list"
        )
