"""Each channel against a local receiver that checks the vendor's signature and payload as documented."""

from __future__ import annotations

import json
import time

import pytest

from llmtally import DeliveryError
from llmtally.alerts import (
    DingTalkChannel,
    FeishuChannel,
    SlackChannel,
    TransientDeliveryError,
    WebhookChannel,
    WeComChannel,
)
from tests.alerts.helpers import batch, budget, finding
from tests.alerts.receivers import (
    SLACK_PATH,
    Answer,
    DingTalk,
    Feishu,
    Receiver,
    Request,
    Webhook,
    WeCom,
    closed_port_url,
    slack,
)

SECRET = "SEC0123456789abcdef+/="  # Base64-ish characters that must survive URL encoding


# ------------------------------------------------------------------ webhook
def test_webhook_signed_payload_version_1() -> None:
    with Receiver(Webhook(secret="s3cret")) as r:
        WebhookChannel(f"{r.base}/hook", name="hooks", secret="s3cret").send(batch(lang="en"))
    (req,) = r.requests
    assert req.headers["content-type"].startswith("application/json")
    payload = req.json()
    assert payload["version"] == 1 and payload["source"] == "llmtally" and payload["lang"] == "en"
    assert payload["summary"] == "llmtally: 2 findings (provisional, 2026-12-02 14:00)"
    assert payload["generated_at"] == "2026-12-02T06:00:00Z"
    assert payload["run"] == {
        "dag_id": "llm_usage_hourly",
        "run_id": "scheduled__2026-12-02T06:00:00+00:00",
        "day": "2026-12-02",
        "provisional": True,
    }
    first, second = payload["findings"]
    assert first == {
        "kind": "budget",
        "key": "budget:feature=chat:2026-12",
        "severity": "critical",
        "title": "Budget passed",
        "text": "feature chat used 104% of its December budget",
        "data": {"feature": "chat", "used": 1_040_000, "budget": 1_000_000},
        "url": "https://airflow.example.com/llmtally/",
    }
    assert second["kind"] == "hour_spike" and second["url"] is None
    assert abs(int(req.headers["x-llmtally-timestamp"]) - time.time()) < 60


def test_webhook_wrong_secret_is_refused_and_not_transient() -> None:
    with (
        Receiver(Webhook(secret="right")) as r,
        pytest.raises(DeliveryError, match="HTTP 401") as info,
    ):
        WebhookChannel(f"{r.base}/hook", secret="wrong").send(batch())
    assert not isinstance(info.value, TransientDeliveryError)


def test_webhook_unsigned_has_no_signature_header() -> None:
    with Receiver(Webhook()) as r:
        WebhookChannel(f"{r.base}/hook").send(batch(lang="zh"))
    assert "x-llmtally-signature" not in r.requests[0].headers
    assert r.requests[0].json()["findings"][0]["title"] == "超出预算"


def test_connection_refused_is_transient_and_hides_the_token() -> None:
    with pytest.raises(TransientDeliveryError, match="could not reach") as info:
        WebhookChannel(closed_port_url("/hook/TOKEN123"), timeout=2).send(batch())
    assert "TOKEN123" not in str(info.value)


# ------------------------------------------------------------------ Slack
def test_slack_blocks_and_ok_body() -> None:
    with Receiver(slack) as r:
        SlackChannel(r.base + SLACK_PATH).send(batch(lang="en"))
    payload = r.requests[0].json()
    assert payload["text"].startswith("llmtally: 2 findings (provisional, 2026-12-02 14:00)")
    kinds = [b["type"] for b in payload["blocks"]]
    assert kinds == ["header", "section", "section", "context"]
    assert payload["blocks"][1]["text"]["text"].startswith("🔴 *Critical: Budget passed*")
    assert "<https://airflow.example.com/llmtally/|details>" in payload["blocks"][1]["text"]["text"]


def test_slack_escapes_and_caps_blocks() -> None:
    many = [finding(i) for i in range(70)]
    with Receiver(slack) as r:
        SlackChannel(r.base + SLACK_PATH).send(batch(many))
    blocks = r.requests[0].json()["blocks"]
    assert len(blocks) == 50 and blocks[-1]["type"] == "context"
    assert blocks[-1]["elements"][0]["text"] == "… 22 more"


def test_slack_error_body_is_a_failure() -> None:
    with (
        Receiver(slack) as r,
        pytest.raises(DeliveryError, match="no_service"),
    ):
        SlackChannel(r.base + "/services/wrong").send(batch())


def test_slack_429_carries_retry_after() -> None:
    with (
        Receiver(slack, script=[(429, {"Retry-After": "7"}, b"rate_limited")]) as r,
        pytest.raises(TransientDeliveryError) as info,
    ):
        SlackChannel(r.base + SLACK_PATH).send(batch())
    assert info.value.retry_after == 7.0


# ------------------------------------------------------------------ DingTalk
def test_dingtalk_signed_markdown() -> None:
    with Receiver(DingTalk(token="tok", secret=SECRET)) as r:
        DingTalkChannel(f"{r.base}/robot/send?access_token=tok", secret=SECRET).send(batch(lang="zh"))
    (req,) = r.requests
    assert set(req.query) == {"access_token", "timestamp", "sign"}
    markdown = req.json()["markdown"]
    assert markdown["title"] == "llmtally:2 条发现(临时,2026-12-02 14:00)"
    assert markdown["text"].startswith("#### llmtally:")
    assert (
        "🔴 **严重:超出预算** — 功能 chat 已用完 12 月预算的 104% [详情](https://airflow.example.com/llmtally/)"
        in markdown["text"]
    )


def test_dingtalk_wrong_secret_reports_errmsg() -> None:
    with Receiver(DingTalk(token="tok", secret=SECRET)) as r:
        channel = DingTalkChannel(f"{r.base}/robot/send?access_token=tok", secret="SECwrong")
        with pytest.raises(DeliveryError, match="errcode 310000: sign not match") as info:
            channel.send(batch())
    assert not isinstance(info.value, TransientDeliveryError)


def test_dingtalk_stale_timestamp_is_rejected() -> None:
    with Receiver(DingTalk(token="tok", secret=SECRET)) as r:
        channel = DingTalkChannel(
            f"{r.base}/robot/send?access_token=tok", secret=SECRET, clock=lambda: time.time() - 7200
        )
        with pytest.raises(DeliveryError, match="310000"):
            channel.send(batch())


def test_dingtalk_too_fast_is_transient() -> None:
    busy: Answer = (200, {}, json.dumps({"errcode": 130101, "errmsg": "send too fast"}).encode())
    with (
        Receiver(DingTalk(token="tok"), script=[busy]) as r,
        pytest.raises(TransientDeliveryError, match="130101"),
    ):
        DingTalkChannel(f"{r.base}/robot/send?access_token=tok").send(batch())


# ------------------------------------------------------------------ Feishu
def test_feishu_signed_card() -> None:
    with Receiver(Feishu(secret=SECRET)) as r:
        FeishuChannel(f"{r.base}/open-apis/bot/v2/hook/abc", secret=SECRET).send(batch(lang="en"))
    payload = r.requests[0].json()
    assert isinstance(payload["timestamp"], str) and payload["sign"]
    card = payload["card"]
    assert card["header"]["template"] == "red"
    assert card["header"]["title"]["content"] == "llmtally: 2 findings (provisional, 2026-12-02 14:00)"
    content = card["elements"][0]["content"]
    assert content.splitlines()[0].startswith("🔴 **Critical: Budget passed**")
    assert content.splitlines()[-1] == "Run: llm_usage_hourly / scheduled__2026-12-02T06:00:00+00:00"


def test_feishu_wrong_secret_reports_code() -> None:
    with (
        Receiver(Feishu(secret=SECRET)) as r,
        pytest.raises(DeliveryError, match="code 19021: sign match fail"),
    ):
        FeishuChannel(f"{r.base}/open-apis/bot/v2/hook/abc", secret="other").send(batch())


def test_feishu_unsigned_and_colour_by_severity() -> None:
    with Receiver(Feishu()) as r:
        FeishuChannel(f"{r.base}/open-apis/bot/v2/hook/abc").send(batch([finding(0, "info")]))
    payload = r.requests[0].json()
    assert "sign" not in payload and payload["card"]["header"]["template"] == "blue"


# ------------------------------------------------------------------ WeCom
def test_wecom_markdown() -> None:
    with Receiver(WeCom(key="k-1")) as r:
        WeComChannel(f"{r.base}/cgi-bin/webhook/send?key=k-1").send(batch(lang="zh"))
    content = r.requests[0].json()["markdown"]["content"]
    assert content.splitlines()[0] == "**llmtally:2 条发现(临时,2026-12-02 14:00)**"
    assert "🟠 **警告:小时突增 1** — 14:00 的用量是平时的 4 倍" in content


def test_wecom_truncates_to_4096_bytes() -> None:
    many = [finding(i) for i in range(200)]  # Chinese lines: about 80 bytes each
    with Receiver(WeCom(key="k-1")) as r:
        WeComChannel(f"{r.base}/cgi-bin/webhook/send?key=k-1").send(batch(many, lang="zh"))
    content = r.requests[0].json()["markdown"]["content"]
    size = len(content.encode("utf-8"))
    assert 4096 - 120 < size <= 4096
    *_, more, foot = content.splitlines()
    shown = sum(1 for line in content.splitlines() if line.startswith("🟠"))
    assert more == f"…… 另有 {200 - shown} 条" and 0 < shown < 200
    assert foot == "> 运行:llm_usage_hourly / scheduled__2026-12-02T06:00:00+00:00"


def test_wecom_bad_key_reports_errcode() -> None:
    with (
        Receiver(WeCom(key="k-1")) as r,
        pytest.raises(DeliveryError, match="errcode 93000: invalid webhook url"),
    ):
        WeComChannel(f"{r.base}/cgi-bin/webhook/send?key=nope").send(batch())


def test_non_json_answer_is_a_failure() -> None:
    with (
        Receiver(WeCom(key="k"), script=[(200, {}, b"<html>proxy</html>")]) as r,
        pytest.raises(DeliveryError, match="HTTP 200: <html>proxy</html>"),
    ):
        WeComChannel(f"{r.base}/cgi-bin/webhook/send?key=k").send(batch())


def test_budget_in_every_language() -> None:
    assert budget().title_in("zh") == "超出预算" and budget().title_in("en") == "Budget passed"


def test_timeout_is_transient() -> None:
    def slow(request: Request) -> Answer:
        time.sleep(0.3)
        return 204, {}, b""

    with Receiver(slow) as r, pytest.raises(TransientDeliveryError, match=r"no answer .* within 0\.05 s"):
        WebhookChannel(f"{r.base}/hook", timeout=0.05).send(batch())
