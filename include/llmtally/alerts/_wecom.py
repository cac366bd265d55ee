"""WeCom (企业微信) group robots: ``https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY``.

The body is ``{"msgtype": "markdown", "markdown": {"content": …}}``; the content may hold at most
4096 bytes of UTF-8, so long batches keep whole lines and end with ``… N more``.  WeCom answers
``{"errcode": 0, "errmsg": "ok"}``; any other ``errcode`` is a failure (``93000``: invalid webhook
URL / key; ``45009``: more than 20 messages a minute, retried).  The key in the URL is the secret.
"""

from __future__ import annotations

from typing import Any

from .._exceptions import DeliveryError
from ._channels import HttpChannel, TransientDeliveryError, dumps, json_reply, post_json, refused
from ._finding import AlertBatch
from ._render import MARKDOWN, fit, header, lines, run_line

__all__ = ["WECOM_MAX_BYTES", "WeComChannel", "wecom_payload"]

WECOM_MAX_BYTES = 4096
_TOO_FAST = 45009


def wecom_payload(batch: AlertBatch) -> dict[str, Any]:
    """The robot's markdown message of ``batch``, content within :data:`WECOM_MAX_BYTES`."""
    found, footer = lines(batch, MARKDOWN), run_line(batch)
    content = fit(
        f"**{header(batch)}**", found, WECOM_MAX_BYTES, batch.lang, foot=f"> {footer}" if footer else None
    )
    return {"msgtype": "markdown", "markdown": {"content": content}}


class WeComChannel(HttpChannel):
    """Posts a batch to a WeCom group robot ``url`` (with its ``key``)."""

    DEFAULT_NAME = "wecom"

    def send(self, batch: AlertBatch) -> None:
        """POST the message; ``errcode != 0`` raises :class:`DeliveryError` with WeCom's ``errmsg``."""
        what = f"WeCom {self.name!r}"
        reply = post_json(what, self.url, dumps(wecom_payload(batch)), timeout=self.timeout)
        answer = json_reply(what, reply)
        code = answer.get("errcode")
        if code == 0 and reply.status == 200:
            return
        if code is None or code == 0:
            raise refused(what, reply)
        msg = f"{what}: WeCom refused the message: errcode {code}: {answer.get('errmsg', '')}"
        if code == _TOO_FAST:
            raise TransientDeliveryError(msg + " (more than 20 messages a minute)")
        raise DeliveryError(msg + "; check the robot's key in the connection's URL")
