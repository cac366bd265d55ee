"""The record contract's derived fields: a reader's digest of parsed text is the writer's digest."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from llmtally import _record
from llmtally._record import derived_prompt_fields, prompt_chars, prompt_digest

_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([1e-05, 3.5e-09, 1e16, 1e22, -0.0, 0.5])
    | st.text()
    | st.sampled_from(["\ud800", "a\udfffb", "0.00001", "1e-5", "今天", "\x00\x7f\u2028"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=500, deadline=None)
@given(
    messages=st.none() | st.lists(st.dictionaries(st.text(max_size=8), _values, max_size=4), max_size=3),
    prompt=st.none() | st.text() | st.just("\ud83d"),
    tools=st.none() | st.lists(st.dictionaries(st.text(max_size=8), _values, max_size=3), max_size=2),
)
def test_the_digest_of_parsed_text_is_the_digest_of_the_values(
    messages: Any, prompt: Any, tools: Any
) -> None:
    """What the logger would have written (from the objects) and what a reader derives (from the
    values parsed back from the line, by orjson where installed, by json otherwise) are one digest
    and one character count."""
    expected = (prompt_digest(messages, prompt, tools), prompt_chars(messages, prompt))
    line = json.dumps({"messages": messages, "prompt": prompt, "tools": tools}, ensure_ascii=True)
    back = json.loads(line)
    if messages is None and prompt is None:
        assert derived_prompt_fields(None, None, back["tools"]) == (expected[0], None)
        return
    assert derived_prompt_fields(back["messages"], back["prompt"], back["tools"]) == expected
    orjson, _record._orjson = _record._orjson, None
    try:  # without llmtally[fast]
        assert derived_prompt_fields(back["messages"], back["prompt"], back["tools"]) == expected
    finally:
        _record._orjson = orjson


def test_nonfinite_numbers_are_hashed_as_json_writes_them() -> None:
    """NaN and infinities are not JSON; a line that holds them (json's ``NaN``) is hashed by json,
    as the json writer did (orjson would write ``null``)."""
    messages = [{"role": "user", "content": "x", "score": float("nan")}]
    back = json.loads(json.dumps(messages))
    digest, chars = derived_prompt_fields(back, None, None, nonfinite=True)
    assert digest == prompt_digest(messages) and chars == 1


def test_prompt_chars_counts_text_contents_only() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "你好"}, "plain", {"type": "image_url"}]},
        {"role": "assistant", "content": None, "tool_calls": []},
        "not a message",
    ]
    assert prompt_chars(messages) == 9 + 2 + 5
    assert prompt_chars(None, "prompt") == 6 and prompt_chars(None, None) is None
    assert prompt_chars(messages, "ignored") == 16  # messages win, as in the logger
