"""DingTalk (钉钉) custom robots: ``https://oapi.dingtalk.com/robot/send?access_token=…``.

Signed mode (加签, the secret starts ``SEC``): ``timestamp`` is the time in milliseconds,
``string_to_sign = f"{timestamp}\\n{secret}"``, ``sign`` is the Base64 of its HMAC-SHA256 keyed by
the secret, URL-encoded; both are appended to the URL as ``&timestamp=…&sign=…`` (DingTalk accepts
a timestamp within an hour of its clock).  The body is
``{"msgtype": "markdown", "markdown": {"title": …, "text": …}}``; DingTalk answers HTTP 200 with
``{"errcode": 0, "errmsg": "ok"}``, any other ``errcode`` is a failure (``310000``: the signature,
keyword or IP check failed; ``130101``: more than 20 messages a minute, retried).  A robot secured
by keywords needs one of them in the message: ``llmtally`` is in every header.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any
from urllib.parse import quote_plus

from .._exceptions import DeliveryError
from ._channels import HttpChannel, TransientDeliveryError, dumps, json_reply, post_json, refused
from ._finding import AlertBatch
from ._render import MARKDOWN, fit, header, lines, run_line

__all__ = ["DingTalkChannel", "dingtalk_payload"]

_MAX_BYTES = 18_000  # DingTalk documents 20000 bytes per message; leave room for the JSON around it
_TOO_FAST = 130101


def dingtalk_payload(batch: AlertBatch) -> dict[str, Any]:
    """The robot's markdown message of ``batch`` (DingTalk needs a blank line between lines)."""
    head = header(batch)
    found, footer = lines(batch, MARKDOWN), run_line(batch)
    text = fit(
        f"#### {head}", found, _MAX_BYTES, batch.lang, sep="\n\n", foot=f"> {footer}" if footer else None
    )
    return {"msgtype": "markdown", "markdown": {"title": head, "text": text}}


class DingTalkChannel(HttpChannel):
    """Posts a batch to a DingTalk robot ``url``; signs the URL when ``secret`` is set."""

    DEFAULT_NAME = "dingtalk"

    def signed_url(self) -> str:
        """The URL with ``&timestamp=…&sign=…`` when a secret is set."""
        if not self.secret:
            return self.url
        timestamp = str(round(self._clock() * 1000))
        mac = hmac.new(self.secret.encode("utf-8"), f"{timestamp}\n{self.secret}".encode(), hashlib.sha256)
        sign = quote_plus(base64.b64encode(mac.digest()).decode("ascii"))
        return f"{self.url}{'&' if '?' in self.url else '?'}timestamp={timestamp}&sign={sign}"

    def send(self, batch: AlertBatch) -> None:
        """POST the message; ``errcode != 0`` raises :class:`DeliveryError` with DingTalk's ``errmsg``."""
        what = f"DingTalk {self.name!r}"
        reply = post_json(what, self.signed_url(), dumps(dingtalk_payload(batch)), timeout=self.timeout)
        answer = json_reply(what, reply)
        code = answer.get("errcode")
        if code == 0 and reply.status == 200:
            return
        if code is None or code == 0:
            raise refused(what, reply)
        msg = f"{what}: DingTalk refused the message: errcode {code}: {answer.get('errmsg', '')}"
        if code == _TOO_FAST:
            raise TransientDeliveryError(msg + " (more than 20 messages a minute)")
        raise DeliveryError(
            msg + "; check the access_token, the secret (加签) and the robot's keywords / IP list"
        )
