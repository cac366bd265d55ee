"""The writer's lean path writes the general path's record (less what a reader derives from its text)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmtally._record import prompt_chars, prompt_digest
from llmtally.logging import _build
from llmtally.logging._build import Pending, TextPolicy, build_record, record_line

FULL = TextPolicy()


@dataclasses.dataclass
class Point:
    x: float


class Model:
    """Pydantic-like: ``model_dump`` gives plain data."""

    def __init__(self, **kw: Any) -> None:
        self.kw = kw

    def model_dump(self, exclude_none: bool = False) -> dict[str, Any]:
        return dict(self.kw)


_tricky_text = st.text() | st.sampled_from(
    ["0.00001", "1e-5", "2e-07 and 3e-9", "\ud800", "a\udfffb", "今天天气怎么样？", "\x00\x1f\x7f\u2028", ""]
)
_floats = st.floats() | st.sampled_from([1e-05, 3.5e-09, 1e16, 0.0, -0.0, 0.001, 1e15, float("nan")])
_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | _floats | _tricky_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
_plain_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant"]), "content": _tricky_text}
)
_odd_message = st.one_of(
    st.dictionaries(st.sampled_from(["role", "content", "name", "x"]), _values, max_size=4),
    st.fixed_dictionaries(
        {
            "role": st.just("user"),
            "content": st.lists(
                st.fixed_dictionaries({"type": st.just("text"), "text": _tricky_text}), max_size=2
            ),
        }
    ),
    st.builds(lambda c: Model(role="user", content=c), _tricky_text),
    st.builds(lambda c: {"role": "user", "content": c}, st.builds(Point, _floats)),
    st.builds(
        lambda d: {"role": "user", "content": "x", "when": d}, st.just(datetime(2026, 1, 2, tzinfo=UTC))
    ),
)
_messages = (
    st.none()
    | st.lists(_plain_message, max_size=4)
    | st.lists(_plain_message | _odd_message, max_size=3)
    | st.tuples(_plain_message)
)
_tools = st.none() | st.lists(
    st.dictionaries(st.sampled_from(["type", "function", "x"]), _values, max_size=3), max_size=2
) | st.tuples(st.just({"type": "function"}))  # fmt: skip
_usage = st.none() | st.sampled_from(
    [
        {"prompt_tokens": 20, "completion_tokens": 3},
        {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23},
        {"input_tokens": 5, "output_tokens": 2, "input_tokens_details": {"cached_tokens": 1}},
        {"prompt_tokens": 2**70, "completion_tokens": 1},
        {"prompt_tokens": "7", "completion_tokens": 1.0},
        {"nothing": 1},
    ]
)
_fields = st.none() | st.dictionaries(
    st.sampled_from(
        ["endpoint", "finish_reason", "ttft_ms", "reasoning", "tool_calls", "choices", "inputs", "messages",
         "tools", "prompt", "id", "kind", "text", "usage", "status", "extra"]
    ),
    _values,
    max_size=3,
)  # fmt: skip
_tags = st.none() | st.dictionaries(
    st.text(max_size=3), st.none() | st.text(max_size=3) | st.integers(), max_size=2
)
_context = st.just({}) | st.dictionaries(st.text(max_size=3), st.text(max_size=3) | _floats, max_size=2)
_latency = st.none() | _floats | st.integers(-5, 10**6) | st.booleans() | st.just("12")
_ts = (
    st.none()
    | st.just(1_700_000_000.25)
    | st.just("2026-01-01T00:00:00Z")
    | st.just(datetime(2026, 5, 1, tzinfo=UTC))
)


_plain_fields = st.none() | st.dictionaries(
    st.sampled_from(["endpoint", "finish_reason", "ttft_ms", "reasoning", "id", "kind", "extra"]),
    st.none() | _tricky_text | _floats | st.integers(),
    max_size=3,
)
_plain_tools = st.none() | st.lists(
    st.fixed_dictionaries({"type": st.just("function"), "function": st.dictionaries(st.text(max_size=3), _values)}),
    max_size=2,
)  # fmt: skip


@st.composite
def pendings(draw: st.DrawFn) -> Pending:
    """Half of them the common shapes with odd values (the lean path's), half anything."""
    if draw(st.booleans()):
        messages = draw(st.none() | st.lists(_plain_message | _odd_message, max_size=4))
        prompt = draw(_tricky_text) if messages is None or draw(st.booleans()) else None
        return Pending(
            1_700_000_000.5, draw(st.none() | _ts), draw(st.just("qwen3-8b") | st.none()), messages, prompt,
            draw(st.none() | _tricky_text), draw(_plain_tools), draw(_usage),
            draw(st.none() | st.just({"prompt_tokens": 9, "completion_tokens": 1})), draw(_tags),
            draw(_context), draw(st.none() | _floats.filter(lambda x: abs(x) < 1e12) | st.integers(0, 10**6)),
            draw(st.sampled_from(["ok", "error"])), draw(st.none() | st.just("req-1")), draw(_plain_fields),
        )  # fmt: skip
    messages = draw(_messages)
    prompt = (
        draw(st.none() | _tricky_text | st.just(12345)) if draw(st.booleans()) or messages is None else None
    )
    return Pending(
        1_700_000_000.5, draw(_ts), draw(st.none() | st.just("qwen3-8b") | st.just(7)), messages, prompt,
        draw(st.none() | _tricky_text | st.just(3.5)), draw(_tools), draw(_usage),
        draw(st.none() | st.just({"prompt_tokens": 9, "completion_tokens": 1e-05})), draw(_tags), draw(_context),
        draw(_latency), draw(st.sampled_from(["ok", "error", "", None])),
        draw(st.none() | st.just("req-1") | st.just(1e-05)), draw(_fields),
    )  # fmt: skip


def _finite(obj: Any) -> bool:
    if isinstance(obj, float):
        return obj == obj and abs(obj) != float("inf")
    if isinstance(obj, dict):
        return all(_finite(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return all(_finite(v) for v in obj)
    return not isinstance(obj, Point | Model)


def _general(p: Pending, defaults: dict[str, str]) -> bytes:
    if defaults:
        p = p._replace(context_tags={**defaults, **p.context_tags})
    return _build._general_line(p, "0" * 32, "svc", "h", 1, FULL)


def _values_of(obj: Any) -> Any:
    """JSON values with NaN and infinities as null (orjson writes them so, json as NaN)."""
    if isinstance(obj, float) and not _finite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _values_of(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_values_of(v) for v in obj]
    return obj


def derived(rec: dict[str, Any]) -> tuple[Any, Any]:
    """``prompt_sha256`` and ``prompt_chars`` as a reader derives them from a ``full`` record's text
    (what the pipeline's parser does when the logger left them out)."""
    messages, prompt = rec.get("messages"), rec.get("prompt")
    if messages is None and prompt is None:
        return None, None
    return prompt_digest(messages, prompt, rec.get("tools")), prompt_chars(messages, prompt)


@settings(max_examples=1500, deadline=None)
@given(p=pendings(), defaults=st.just({}) | st.just({"env": "prod", "feature": "d"}))
def test_the_lean_line_is_the_general_record_and_its_digest_derives_exactly(
    p: Pending, defaults: dict[str, str]
) -> None:
    """Over odd inputs (small and huge floats, big ints, NaN, lone surrogates, nested tools,
    pydantic-like and dataclass objects, datetimes, clashing extra fields): the lean path writes the
    general path's record, key for key and value for value, less ``prompt_sha256`` and
    ``prompt_chars``, which a reader derives from the parsed line to exactly the general path's
    values; or it leaves the record to the general path."""
    assert _build.use_orjson
    try:
        general = _general(p, defaults)
    except Exception as exc:  # e.g. a latency of 1e300 ms: the writer drops it as unserialisable
        with pytest.raises(type(exc)):
            record_line(p, rid="0" * 32, service="svc", host="h", pid=1, policy=FULL, defaults=defaults)
        return
    lean = _build._lean_line(p, "0" * 32, "svc", "h", 1, defaults)
    line = record_line(p, rid="0" * 32, service="svc", host="h", pid=1, policy=FULL, defaults=defaults)
    assert line == (general if lean is None else lean) and b"\n" not in line
    rec = json.loads(line.decode("utf-8"))
    expected = json.loads(general)
    if lean is not None:
        assert "prompt_sha256" not in rec and "prompt_chars" not in rec
        digest, chars = expected.pop("prompt_sha256", None), expected.pop("prompt_chars", None)
        assert list(rec) == list(expected) and _values_of(rec) == _values_of(expected)
        assert derived(rec)[1] == chars
        if _finite([p.messages, p.tools]):  # (NaN and infinities are not JSON: see docs/logger.md)
            assert derived(rec) == (digest, chars)
            assert derived(json.loads(json.dumps(rec))) == (digest, chars)  # any JSON reader's values
    with_defaults = p._replace(context_tags={**defaults, **p.context_tags}) if defaults else p
    built = build_record(with_defaults, rid="0" * 32, service="svc", host="h", pid=1, policy=FULL)
    assert json.loads(general).keys() == built.keys()
    if "prompt_sha256" in built and _finite([p.messages, p.tools, p.fields]):  # orjson writes NaN as null
        assert json.loads(general)["prompt_sha256"] == built["prompt_sha256"]
    _build.use_orjson = False
    try:  # the base install (stdlib json) writes the same record, with its digest
        slow = json.loads(
            record_line(p, rid="0" * 32, service="svc", host="h", pid=1, policy=FULL, defaults=defaults)
        )
    finally:
        _build.use_orjson = True
    assert slow.keys() == built.keys()
    if "prompt_sha256" in built and _finite([p.messages, p.tools, p.fields]):
        assert slow["prompt_sha256"] == built["prompt_sha256"]
        if lean is not None:
            assert derived(rec) == (slow["prompt_sha256"], slow.get("prompt_chars"))


def test_the_common_shapes_take_the_lean_path() -> None:
    messages = [{"role": "system", "content": "你好"}, {"role": "user", "content": "1e-5 0.00001"}]
    p = Pending(
        1.5, None, "qwen3-8b", messages, None, "晴", [{"type": "function", "function": {"name": "f", "t": 1e-05}}],
        {"prompt_tokens": 3, "completion_tokens": 1}, None, {"feature": "chat"}, {"user": "u1"}, 420.0, "ok",
        "r1", {"endpoint": "chat.completions", "finish_reason": "stop", "ttft_ms": 12.5},
    )  # fmt: skip
    line = _build._lean_line(p, "0" * 32, "svc", "h", 1, {"env": "prod"})
    assert line is not None
    rec = json.loads(line)
    assert "prompt_sha256" not in rec and "prompt_chars" not in rec and rec["completion_chars"] == 1
    assert derived(rec) == (prompt_digest(messages, None, p.tools), 2 + 12)
    assert rec["tags"] == {"env": "prod", "user": "u1", "feature": "chat"}
    assert list(rec)[-2:] == ["messages", "tools"] and rec["tools"][0]["function"]["t"] == 1e-05
    assert line.endswith(b'"messages":[{"role":"system","content":"\xe4\xbd\xa0\xe5\xa5\xbd"},'
                         b'{"role":"user","content":"1e-5 0.00001"}],'
                         b'"tools":[{"type":"function","function":{"name":"f","t":0.00001}}]}')  # fmt: skip
    prompt_only = p._replace(messages=None, tools=None, prompt="hi", fields=None)
    line = _build._lean_line(prompt_only, "0" * 32, "svc", "h", 1, None)
    assert line is not None and derived(json.loads(line)) == (prompt_digest(None, "hi", None), 2)
    for policy in (TextPolicy.parse("hash"), TextPolicy.parse("prefix:3")):  # text gone: computed here
        rec = json.loads(record_line(p, rid="0" * 32, service="s", host="h", pid=1, policy=policy))
        assert rec["prompt_sha256"] == prompt_digest(messages, None, p.tools) and rec["prompt_chars"] == 14


@pytest.mark.parametrize(
    ("field", "value"),
    [("messages", [{"role": "user", "content": "a\ud800"}]), ("completion", "b\udfff"), ("prompt", "\ud83d")],
)
def test_lone_surrogates_are_written_with_escapes_on_their_own_line(field: str, value: Any) -> None:
    base = {"messages": None, "completion": "ok", "prompt": "hi"}
    base[field] = value
    p = Pending(1.0, None, "m", base["messages"], base["prompt"], base["completion"], None, None, None, None,
                {}, None, "ok", None, None)  # fmt: skip
    line = record_line(p, rid="0" * 32, service="s", host="h", pid=1, policy=FULL)
    assert line.isascii() and json.loads(line)[field] == value
    rec = json.loads(line)  # the general path: the digest is written (and would derive the same)
    assert rec["prompt_sha256"] == prompt_digest(base["messages"], base["prompt"], None) == derived(rec)[0]
