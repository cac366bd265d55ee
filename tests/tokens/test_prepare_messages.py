"""``prepare_messages``' shortcut for plain ``{str: str}`` messages gives what the generic path gives."""

from __future__ import annotations

from typing import Any

import pytest

from llmtally.tokens._template import _REASONING_FIELDS, _plain, prepare_messages


class _Str(str):
    pass


def _generic(messages: list[Any]) -> list[dict[str, Any]]:
    """The generic path alone (as before the shortcut)."""
    out = []
    for raw in messages:
        msg = {k: v for k, v in _plain(raw).items() if v is not None}
        reasoning = next((msg[k] for k in _REASONING_FIELDS if msg.get(k) is not None), None)
        if reasoning is not None:
            msg = {"thinking": reasoning, **msg, "reasoning_content": reasoning}
        out.append(msg)
    return out


CASES: list[list[Any]] = [
    [{"role": "user", "content": "hi"}],
    [{"role": "system", "content": ""}, {"role": "user", "content": "你好"}],
    [{"role": "assistant", "content": "a", "reasoning_content": "r"}],
    [{"role": "assistant", "content": "a", "reasoning": "r"}],
    [{"role": "assistant", "content": "a", "thinking": "t", "reasoning": "r"}],
    [{"role": "assistant", "content": None, "reasoning_content": None, "thinking": "t"}],
    [{"role": "user", "content": _Str("a str subclass")}],
    [{_Str("role"): "user", "content": "key subclass"}],
    [{"role": "user", "content": [{"type": "text", "text": "parts"}]}],
    [{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}],
    [{"role": "user", "content": "x", "name": None}],
]


@pytest.mark.parametrize("messages", CASES)
def test_shortcut_equals_generic_path(messages: list[Any]) -> None:
    got, want = prepare_messages(messages), _generic(messages)
    assert got == want
    assert [list(m) for m in got] == [list(m) for m in want]  # key order too (templates may iterate)
    assert all(type(k) is str for m in got for k in m)
    assert all(m is not r for m, r in zip(got, messages, strict=True))  # copies, never the input
