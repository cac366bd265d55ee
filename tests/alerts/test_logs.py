"""The robots' tokens sit in their URLs: no log line carries them, not even httpx's own request log."""

from __future__ import annotations

import logging

import pytest

from llmtally import DeliveryError
from llmtally.alerts import DingTalkChannel
from tests.alerts.helpers import batch
from tests.alerts.receivers import DingTalk, Receiver

TOKEN = "tok-3f9a1c77e2"


def test_no_log_line_holds_the_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")  # Airflow, once imported, quiets it: listen anyway
    with Receiver(DingTalk(TOKEN, secret="SEC-right")) as r:
        DingTalkChannel(f"{r.base}/robot/send?access_token={TOKEN}", secret="SEC-right").send(batch())
        with pytest.raises(DeliveryError) as err:  # refused: the error names the host, never the token
            DingTalkChannel(f"{r.base}/robot/send?access_token={TOKEN}", secret="SEC-wrong").send(batch())
    assert any(rec.name == "httpx" for rec in caplog.records), "httpx logged no request: nothing was checked"
    assert TOKEN not in caplog.text and TOKEN not in str(err.value)
    assert "127.0.0.1" in caplog.text


def test_names_cannot_write_markdown_into_a_robots_message() -> None:
    from llmtally.alerts import Finding
    from llmtally.alerts._render import MARKDOWN, lines

    evil = Finding(
        "user_jump", "k1", "warning", {"en": "User jump: <at id=all></at> [win](http://x.example) **u**"},
        {"en": "`rm` 10x"},
    )  # fmt: skip
    text = "\n".join(lines(batch([evil]), MARKDOWN))
    for bad in ("<at", "](http", "**u**", "`rm`"):
        assert bad not in text, bad
    assert "at id=all" in text and "win" in text  # the words stay readable
