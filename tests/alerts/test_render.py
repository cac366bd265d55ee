"""Messages in Chinese and English, and the findings they are made of."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from llmtally import InputError
from llmtally.alerts import AlertBatch, Finding, webhook_payload
from llmtally.alerts._render import MARKDOWN, PLAIN, fit, header, html_body, lines, truncate_bytes
from tests.alerts.helpers import NOW, RUN, batch, budget, finding


def test_header_in_both_languages() -> None:
    assert header(batch(lang="en")) == "llmtally: 2 findings (provisional, 2026-12-02 14:00)"
    assert header(batch(lang="zh")) == "llmtally:2 条发现(临时,2026-12-02 14:00)"
    assert header(batch([budget()], lang="en", provisional=False)) == "llmtally: 1 finding (2026-12-02)"
    assert header(batch([budget()], lang="zh", provisional=False)) == "llmtally:1 条发现(2026-12-02)"


def test_lines_in_both_languages() -> None:
    en = lines(batch(lang="en"), MARKDOWN)
    assert en == [
        "🔴 **Critical: Budget passed** — feature chat used 104% of its December budget "
        "[details](https://airflow.example.com/llmtally/)",
        "🟠 **Warning: Hour spike 1** — 14:00 used 4x its usual tokens",
    ]
    zh = lines(batch(lang="zh"), PLAIN)
    assert (
        zh[0]
        == "🔴 严重:超出预算 — 功能 chat 已用完 12 月预算的 104% 详情: https://airflow.example.com/llmtally/"
    )


def test_missing_language_falls_back_and_newlines_stay_on_one_line() -> None:
    only_en = Finding("silence", "silence:svc", "info", {"en": "No logs"}, {"en": "service a\nsent nothing"})
    (line,) = lines(AlertBatch([only_en], RUN, NOW, lang="zh"), MARKDOWN)
    assert line == "🔵 **提示:No logs** — service a sent nothing"


def test_html_escapes() -> None:
    f = Finding("budget", "k", "warning", {"en": "<b>x</b>"}, {"en": "a & b"}, url="https://x/?a=1&b=2")
    page = html_body(AlertBatch([f], RUN, NOW, lang="en"))
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "a &amp; b" in page and 'href="https://x/?a=1&amp;b=2"' in page


def test_fit_keeps_whole_lines_and_counts_the_rest() -> None:
    body = [f"line {i} " + "字" * 10 for i in range(50)]
    text = fit("head", body, 300, "en", foot="foot")
    assert len(text.encode()) <= 300
    out = text.splitlines()
    assert out[0] == "head" and out[-1] == "foot" and out[-2] == f"… {50 - (len(out) - 3)} more"
    assert all(line in body for line in out[1:-2])
    assert fit("head", ["a", "b"], 300, "en") == "head\na\nb"


def test_truncate_bytes_never_splits_a_character() -> None:
    cut = truncate_bytes("汉字" * 100, 10)
    assert len(cut.encode()) <= 10 and cut.endswith("…")
    cut.encode().decode("utf-8")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"severity": "fatal"},
        {"key": ""},
        {"title": {}},
        {"title": {"fr": "x"}},
        {"data": {"when": datetime(2026, 1, 1, tzinfo=UTC)}},
        {"data": {"ratio": float("nan")}},
        {"data": {"nested": {1: "x"}}},
    ],
)
def test_finding_is_validated(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {
        "kind": "budget",
        "key": "k",
        "severity": "info",
        "title": {"en": "t"},
        "text": {"en": ""},
    }
    with pytest.raises(InputError):
        Finding(**{**base, **kwargs})  # type: ignore[arg-type]


def test_batch_is_validated() -> None:
    with pytest.raises(InputError):
        AlertBatch([budget()], RUN, NOW, lang="fr")
    with pytest.raises(InputError):
        AlertBatch([budget()], RUN, datetime(2026, 12, 2))


def test_webhook_payload_is_json_safe_and_ordered_as_given() -> None:
    import json

    payload = webhook_payload(batch([finding(3, "info"), budget()], lang="zh"))
    assert [f["key"] for f in payload["findings"]] == ["hour_spike:3", "budget:feature=chat:2026-12"]
    assert json.loads(json.dumps(payload)) == payload
