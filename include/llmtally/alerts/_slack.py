"""Slack incoming webhooks (``https://hooks.slack.com/services/T…/B…/…``).

The message is ``{"text": …, "blocks": […]}``: ``text`` is the plain fallback notifications show;
the blocks are a ``header`` (plain text, ≤ 150 characters), one ``mrkdwn`` ``section`` per finding
(≤ 3000 characters each) and a ``context`` line; at most 50 blocks, so long batches end with
``… N more``.  Slack answers HTTP 200 with the body ``ok``; errors are a 4xx with a short code
(``invalid_payload``, ``no_service``, ``channel_is_archived`` …); 429 carries ``Retry-After``.
"""

from __future__ import annotations

from typing import Any

from ._channels import HttpChannel, dumps, post_json, refused
from ._finding import AlertBatch
from ._render import PLAIN, SLACK, fit, header, lines, more_line, run_line, truncate_bytes

__all__ = ["SlackChannel", "slack_payload"]

_MAX_BLOCKS = 50
_HEADER_CHARS = 150
_SECTION_CHARS = 3000
_FALLBACK_BYTES = 3000


def _cut(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


def slack_payload(batch: AlertBatch) -> dict[str, Any]:
    """The incoming-webhook JSON of ``batch``."""
    head = header(batch)
    found = lines(batch, SLACK)
    run = run_line(batch)
    footer = [run] if run else []
    shown = found[: _MAX_BLOCKS - 2]  # a header block, the sections, a context block
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(head, _HEADER_CHARS), "emoji": True}}
    ]
    blocks += [
        {"type": "section", "text": {"type": "mrkdwn", "text": _cut(s, _SECTION_CHARS)}} for s in shown
    ]
    notes = [more_line(len(found) - len(shown), batch.lang)] if len(shown) < len(found) else []
    notes += [f"_{n}_" for n in footer]
    if notes:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": t} for t in notes]})
    text = fit(head, lines(batch, PLAIN), _FALLBACK_BYTES, batch.lang)
    return {"text": truncate_bytes(text, _FALLBACK_BYTES), "blocks": blocks}


class SlackChannel(HttpChannel):
    """Posts a batch to a Slack incoming webhook ``url`` (the URL is the secret)."""

    DEFAULT_NAME = "slack"

    def send(self, batch: AlertBatch) -> None:
        """POST the message; success is HTTP 200 with the body ``ok``."""
        what = f"Slack {self.name!r}"
        reply = post_json(what, self.url, dumps(slack_payload(batch)), timeout=self.timeout)
        if reply.status != 200 or reply.text.strip() != "ok":
            raise refused(what, reply, "check the webhook URL (Slack app → Incoming Webhooks)")
