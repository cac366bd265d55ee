"""minijinja renders chat templates exactly as the Jinja2 sandbox (and transformers) do, or not at all."""

from __future__ import annotations

import copy
import json
import logging
import sys
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmtally import InputError, TemplateError
from llmtally.tokens import _minijinja as mj
from llmtally.tokens import load_hf_folder
from llmtally.tokens._template import (
    ChatTemplate,
    _environment,
    _plain,
    _strftime_now,
    _tojson,
    prepare_messages,
)
from tests.support import tokenizer_source
from tests.tokens.corpus import CHATS, TOOLS

pytest.importorskip("minijinja")

FAMILIES = ["qwen3", "llama3_1", "deepseek_v3"]


@cache
def _templates(family: str) -> tuple[ChatTemplate, ChatTemplate]:
    """(minijinja, sandbox) for a family's chat template."""
    t = load_hf_folder(tokenizer_source(family)).template
    assert t is not None
    return (
        ChatTemplate(t.sources, t.special_tokens, renderer="minijinja"),
        ChatTemplate(t.sources, t.special_tokens, renderer="sandbox"),
    )


def _context(t: ChatTemplate, chat: dict[str, Any]) -> dict[str, Any]:
    tools = chat.get("tools")
    return dict(
        messages=prepare_messages(chat["messages"]),
        tools=_plain(list(tools)) if tools is not None else None,
        documents=None,
        add_generation_prompt=chat.get("add_generation_prompt", True),
        **{**t.special_tokens, **chat.get("template_kwargs", {})},
    )


def _unchecked(family: str) -> mj.MiniJinjaTemplate:
    """The family's minijinja template (raw output via ``try_render``: no shadow check in between)."""
    fast, _ = _templates(family)
    assert fast.engine() == "minijinja"
    compiled = fast._fast["default"]
    assert compiled is not None
    return compiled


def _sandbox(family: str, context: dict[str, Any]) -> str | type[Exception]:
    _, slow = _templates(family)
    try:
        return slow._template("default").render(context)
    except Exception as exc:
        return type(exc)


def _chat_kwargs(chat: dict[str, Any]) -> dict[str, Any]:
    return {
        "tools": chat.get("tools"),
        "add_generation_prompt": chat.get("add_generation_prompt", True),
        **chat.get("template_kwargs", {}),
    }


def _long_chat(i: int) -> dict[str, Any]:
    msgs: list[dict[str, Any]] = [{"role": "system", "content": f"系统 {i}\n\n"}]
    for k in range(i % 7 + 1):
        msgs.append({"role": "user", "content": f"问题 {k}: {'x' * k} <|im_end|> "})
        msgs.append({"role": "assistant", "content": f"<think>\n想 {k}\n</think>\n\n答 {k}"})
    msgs.append({"role": "user", "content": "最后"})
    return {"messages": msgs, "tools": TOOLS if i % 3 == 0 else None}


CORPUS = [*CHATS, *mj.PROBE_CHATS, *[_long_chat(i) for i in range(30)]]


@pytest.mark.parametrize("family", FAMILIES)
def test_the_three_templates_render_with_minijinja_by_default(family: str) -> None:
    t = load_hf_folder(tokenizer_source(family)).template
    assert t is not None and t.renderer == "auto"
    assert t.engine() == "minijinja"


@pytest.mark.parametrize("family", FAMILIES)
def test_minijinja_renders_the_corpus_as_the_sandbox(family: str) -> None:
    fast = _unchecked(family)
    for i, chat in enumerate(CORPUS):
        ctx = _context(_templates(family)[0], chat)
        got, want = fast.try_render(ctx), _sandbox(family, ctx)
        if got is not None:
            assert got == want, f"chat {i}"
        else:
            assert i >= len(CHATS) or not isinstance(want, str), f"minijinja declined chat {i}"


transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("family", FAMILIES)
def test_minijinja_renders_as_transformers(family: str) -> None:
    src = tokenizer_source(family)
    ref = transformers.AutoTokenizer.from_pretrained(src)
    fast, _ = _templates(family)
    for chat in CHATS:
        theirs = ref.apply_chat_template(
            copy.deepcopy(chat["messages"]), tokenize=False, **_chat_kwargs(chat)
        )
        assert fast.render(chat["messages"], **_chat_kwargs(chat)) == theirs
    assert fast.engine() == "minijinja"  # no shadow render disagreed


_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            *["", " ", "\n\n", "<think>\nr\n</think>\n\n", "</think>", "<tool_response>", "</tool_response>"],
            *["<|im_end|>", "<｜User｜>", " \x1c ", "items", "count", "\t"],
        ]
    ),
)
_json = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True),
        _text,
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
_call = st.fixed_dictionaries(
    {
        "type": st.just("function"),
        "function": st.fixed_dictionaries({"name": _text, "arguments": _text | _json}),
    }
)
_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant", "tool"]), "content": _text | st.none()},
    optional={"reasoning_content": _text, "tool_calls": st.lists(_call, max_size=2), "name": _text},
)
_chat = st.fixed_dictionaries(
    {"messages": st.lists(_message, min_size=1, max_size=5)},
    optional={
        "tools": st.sampled_from([TOOLS, [], TOOLS[:1]]) | st.lists(_json, max_size=2),
        "add_generation_prompt": st.booleans(),
        "template_kwargs": st.fixed_dictionaries({}, optional={"enable_thinking": st.booleans()}),
    },
)


@pytest.mark.parametrize("family", FAMILIES)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chat=_chat)
def test_property_minijinja_equals_the_sandbox(family: str, chat: dict[str, Any]) -> None:
    ctx = _context(_templates(family)[0], chat)
    got = _unchecked(family).try_render(ctx)
    if got is not None:  # declined renders go to the sandbox, which then decides
        assert got == _sandbox(family, ctx)
    fast, slow = _templates(family)
    try:
        want: Any = slow.render(chat["messages"], **_chat_kwargs(chat))
    except (TemplateError, InputError) as exc:
        want = type(exc)
    try:
        have: Any = fast.render(chat["messages"], **_chat_kwargs(chat))
    except (TemplateError, InputError) as exc:
        have = type(exc)
    assert have == want


# every allow-listed filter, test and method, on values of every kind, against the sandbox
_VALUES = {
    "s": "  Ab,c d\n\t",
    "e": "",
    "z": "日本語 é",
    "n": None,
    "t": True,
    "f": False,
    "i": 7,
    "x": 2.5,
    "l": [3, "a", None, True, {"k": 1}],
    "d": {"b": 1, "a": [1, "x"], "c": {"z": None}},
    "objs": [{"a": 1, "b": "x"}, {"a": 2}, {"a": None, "b": ""}],
}
_CASES = [
    *[f"{{{{ {v}|tojson }}}}" for v in _VALUES if v != "n"],
    "{{ d|tojson(indent=2) }}{{ d|tojson(sort_keys=true) }}{{ d|tojson(separators=(',', ':')) }}",
    "{{ z|tojson(ensure_ascii=true) }}{{ l|tojson(indent=4, sort_keys=true) }}",
    *[
        f"{{{{ {v}|string }}}}|{{{{ {v} }}}}|{{{{ {v}|default('D') }}}}|{{{{ {v}|d('D', true) }}}}"
        for v in _VALUES
    ],
    *[
        f"{{{{ {v}|length }}}}|{{{{ {v}|count }}}}|{{{{ {v}|list|length }}}}"
        for v in ("s", "e", "z", "l", "d", "objs")
    ],
    *[
        f"{{{{ {v}|first }}}}|{{{{ {v}|last }}}}|{{{{ {v}|reverse|join('/') }}}}"
        for v in ("s", "z", "l", "objs")
    ],
    "{{ s|list|join('/') }}{{ d|list|tojson }}{{ objs|list|tojson }}{% for c in z|list %}{{ c }}{% endfor %}",
    "{{ s|trim }}|{{ s|trim('A ') }}|{{ z|trim }}|{{ l|join(', ') }}|{{ s|replace('b', 'X') }}",
    "{{ s|replace('', '-') }}|{% for k, v in d|items %}{{ k }}={{ v }};{% endfor %}|{{ objs|map(attribute='a')|join(',') }}",
    "{{ objs|selectattr('b')|list|tojson }}|{{ objs|rejectattr('b')|list|length }}|{{ l|select|list|tojson }}",
    "{{ l|reject|list|length }}{{ objs|selectattr('a', 'equalto', 2)|list|tojson }}|{{ l|map('string')|join('|') }}",
    "{{ s|safe }}{{ objs|map(attribute='b')|select|join(',') }}{{ 'a' in d|list }}{{ 'b' in d.keys() }}",
    *[
        f"{{% for v in [s, e, n, t, f, i, x, l, d, u] %}}{{{{ v is {test} }}}},{{% endfor %}}"
        for test in (
            *("defined", "undefined", "none", "string", "mapping", "number", "integer"),
            *("boolean", "true", "false"),
        )
    ],
    "{{ i is odd }}{{ i is even }}{{ i is divisibleby 7 }}{{ i is eq 7 }}{{ i is ne 7 }}{{ n is sameas none }}",
    "{{ 'a' is in s }}{{ 'k' is in d }}{{ x is equalto 2.5 }}",
    "{{ s.startswith(' ') }}{{ s.endswith(('\\t', 'x')) }}{{ s.split(',') }}{{ s.split() }}{{ s.split(',', 1) }}",
    "{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ s.strip(' A\\n') }}|{{ s.replace('b', 'Y', 1) }}",
    "{{ d.items()|list|tojson }}{{ d.keys()|join }}{{ d.values()|list|length }}{{ d.get('b') }}{{ d.get('q', 5) }}{{ d.get('q') }}",
    "{% for k, v in d.items() %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}"
    "{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.previtem }}{{ loop.nextitem }}{{ k }}{% endfor %}",
    "{% for v in l if v %}{{ loop.index }}{% if loop.index > 2 %}{% break %}{% endif %}{% else %}E{% endfor %}",
    "{% for v in l %}{% if not v %}{% continue %}{% endif %}{{ v }}{% endfor %}{% for v in u %}{% else %}none{% endfor %}",
    "{% set ns = namespace(a=1, b=[]) %}{% for v in l %}{% set ns.a = ns.a + 1 %}{% endfor %}{{ ns.a }}{{ ns.b }}",
    "{{ l[1:] }}{{ s[::-1] }}{{ l[-1] }}{{ l[9] }}{{ d['a'][0] }}{{ d.c.z }}{{ d.nope }}{{ z[1] }}{{ objs[1].b }}",
    "{{ i + 1 }}{{ i - 10 }}{{ i * 3 }}{{ s * 2 }}{{ i % 3 }}{{ -i % 3 }}{{ -i }}{{ x * 2 }}{{ i ~ x ~ n ~ t }}",
    "{{ s + z }}{{ l + l }}{{ [1, 2] == [1, 2] }}{{ (1, 'a') }}{{ i > 3 and x < 3 or n }}{{ t if f else i }}",
    "{{ range(3)|join }}{{ range(1, 7, 2)|list|length }}{{ dict(a=1, b=s) }}{{ u }}{{ u ~ 'x' }}{{ u is none }}{{ u == none }}",
    "{% for a in [s, i] %}{{ a }}{% endfor %}{{ [s, i]|length }}{{ [s, i]|join }}{{ s in [s, i] }}{{ {'k': i}|tojson }}",
    "{%- if t -%}\n  A  \n{%- elif f %}B{% else %}C{% endif -%}\n   {{ i }}   \n  {%+ if t %}D{% endif %}\n{# c #}\n  E",
    "{% set x2 %}block {{ i }}{% endset %}{{ x2 }}|{% set a2, b2 = [1, 2] %}{{ a2 }}{{ b2 }}",
    "  {% if t %}\n    indented\n  {% endif %}\n\t{% for v in [1] %}\n{{ v }}\n{% endfor %}\n",
]


# undefined values (``u``, missing keys) through every allow-listed filter and call
_UNDEFINED_CASES = [
    *[
        f"{{{{ {v}|{f} }}}}"
        for v in ("u", "d.nope", "l[9]", "[u]", "{'k': u}", "[d.nope, 1]")
        for f in (
            *("tojson", "string", "length", "count", "list", "first", "last", "join", "default('D')"),
            *("trim", "replace('a', 'b')", "items", "map('string')|list", "selectattr('a')|list", "reverse"),
            *("select|list", "reject|list", "rejectattr('a')|list", "safe", "tojson(indent=2)"),
        )
    ],
    "{{ dict(a=u) }}",
    "{{ dict(a=1, b=d.nope)|tojson }}",
    "{{ strftime_now(u) }}",
    "{{ raise_exception(u) }}",
    "{{ [u, n]|tojson }}",
    "{{ d.c|tojson }}{{ d.c.z|tojson }}",
    "{% set ns = namespace(a=u) %}{{ ns.a }}|{{ ns.a is defined }}",
    "{{ u.x }}",
    "{{ u[0] }}",
    "{{ u + 'a' }}",
    "{{ 'a' in u }}",
    "{% for x in u %}{{ x }}{% endfor %}",
    "{% if u %}y{% else %}n{% endif %}{{ not u }}{{ u or 'o' }}{{ u and 1 }}",
    "{{ u == none }}{{ u != n }}{{ u is none }}{{ u ~ 'x' }}{{ u }}",
]


def _both(source: str) -> tuple[str | None, str | type[Exception]]:
    try:
        fast = mj.MiniJinjaTemplate(
            source, tojson=_tojson, strftime_now=_strftime_now, reference=lambda c: ""
        )
    except ValueError:
        fast = None  # not accepted: the sandbox renders it
    try:
        want: str | type[Exception] = _environment().from_string(source).render(_VALUES)
    except Exception as exc:
        want = type(exc)
    return (fast.try_render(dict(_VALUES)) if fast is not None else None), want


@pytest.mark.parametrize("source", _CASES)
def test_allow_listed_constructs_render_as_the_sandbox(source: str) -> None:
    got, want = _both(source)
    assert got is not None and got == want


@pytest.mark.parametrize("source", _UNDEFINED_CASES)
def test_undefined_values_render_as_the_sandbox_or_go_to_it(source: str) -> None:
    got, want = _both(source)
    assert got is None or got == want


@pytest.mark.parametrize(
    "source",
    [
        "{% generation %}{{ x }}{% endgeneration %}",
        "{{ s|title }}",
        "{{ s|upper }}",
        "{{ i / 2 }}",
        "{{ d.items }}",
        "{{ d['keys'] }}",
        "{% macro m() %}x{% endmacro %}{{ m() }}",
        "{% include 'x' %}",
        "{{ s.format(1) }}",
        "{{ x is sequence }}",
        "{{ n is iterable }}",
        "{{ s|e }}",
        "{{ loop_var.cycle }}{{ loop.cycle('a') }}",
        "{{ 0.00001 }}",
        "a\r\nb",
        "{{ '\x1c'|trim }}",
        "{{ ns._x }}",
        "{{ f(*l) }}",
        "{{ {'k': i} }}",
        "{{ [u] }}",
        "{{ l|reverse }}",
        "{{ d|items }}",
        "{{ l|list }}",
        "{{ d.items() }}",
        "{{ range(3) }}",
        "{% set r = l|select %}{% for x in r %}{% endfor %}",
        "{{ (l|list)[0] }}",
        "{{ l|map('string')|length }}",
    ],
)
def test_constructs_outside_the_allow_lists_stay_on_the_sandbox(source: str) -> None:
    with pytest.raises(ValueError):
        mj.MiniJinjaTemplate(source, tojson=_tojson, strftime_now=_strftime_now, reference=lambda c: "")
    t = ChatTemplate(source)
    assert t.engine() == "sandbox"


def test_inputs_printed_differently_go_to_the_sandbox() -> None:
    fast = _unchecked("llama3_1")  # uses |trim: strings are looked at
    ctx = _context(_templates("llama3_1")[0], {"messages": [{"role": "user", "content": "hi \x1c"}]})
    assert fast.try_render(ctx) is None
    for value in (1e-5, 1e16, float("inf"), float("nan"), 2**64):
        ctx = _context(_templates("qwen3")[0], {"messages": [{"role": "user", "content": "x", "v": value}]})
        assert _unchecked("qwen3").try_render(ctx) is None
    ctx = _context(_templates("qwen3")[0], {"messages": [{"role": "user", "content": "x", "v": [0.5, 3]}]})
    assert _unchecked("qwen3").try_render(ctx) is not None
    fast_chat, slow_chat = _templates("llama3_1")
    chat = [{"role": "user", "content": "\x1d padded \x1c"}]
    assert fast_chat.render(chat) == slow_chat.render(chat)


def test_computed_keys_named_like_methods_go_to_the_sandbox() -> None:
    source = "{% for m in messages %}{{ m[m.role] }}{% endfor %}"
    fast = mj.MiniJinjaTemplate(source, tojson=_tojson, strftime_now=_strftime_now, reference=lambda c: "")
    assert fast.try_render({"messages": [{"role": "user", "user": "u"}]}) == "u"
    assert fast.try_render({"messages": [{"role": "items"}]}) is None  # Jinja2 would print dict.items
    t = ChatTemplate(source, renderer="minijinja")
    assert t.render([{"role": "items"}]).startswith("<built-in method items")


def test_errors_are_the_sandboxs_own() -> None:
    t = ChatTemplate("{{ raise_exception('only user and assistant') }}")
    with pytest.raises(TemplateError, match="only user and assistant"):
        t.render([{"role": "user", "content": "x"}])
    t = ChatTemplate("{{ messages[0].content + 1 }}")
    with pytest.raises(InputError):
        t.render([{"role": "user", "content": "x"}])
    t = ChatTemplate("{{ 'a' + messages[0].nope }}", renderer="minijinja")
    assert t.engine() == "minijinja"
    with pytest.raises(TemplateError):
        t.render([{"role": "user", "content": "x"}])


def test_a_failed_self_check_keeps_the_sandbox_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(mj.MiniJinjaTemplate, "try_render", lambda self, ctx: "different")
    with caplog.at_level(logging.INFO, logger="llmtally.tokens"):
        t = ChatTemplate(_templates("qwen3")[1].sources, renderer="auto")
        assert t.engine() == "sandbox"
    assert "self-check probe 0" in caplog.text
    assert t.render([{"role": "user", "content": "hi"}]) == _templates("qwen3")[1].render(
        [{"role": "user", "content": "hi"}]
    )


def test_a_shadow_render_that_differs_switches_the_template_off(caplog: pytest.LogCaptureFixture) -> None:
    source = "{{ messages[0].content }}"
    fast = mj.MiniJinjaTemplate(
        source, tojson=_tojson, strftime_now=_strftime_now, reference=lambda c: "other"
    )
    with caplog.at_level(logging.WARNING, logger="llmtally.tokens"):
        assert fast.render({"messages": [{"content": "x"}]}) is None
    assert fast.disabled is not None and "sandbox from now on" in caplog.text
    assert fast.render({"messages": [{"content": "x"}]}) is None


def test_after_the_shadow_renders_minijinja_renders_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    fast = mj.MiniJinjaTemplate(
        "{{ m }}",
        tojson=_tojson,
        strftime_now=_strftime_now,
        reference=lambda c: calls.append(1) or str(c["m"]),
    )
    for i in range(mj.SHADOW_RENDERS + 10):
        assert fast.render({"m": i}) == str(i)
    assert len(calls) == mj.SHADOW_RENDERS


def test_renderer_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    sources = _templates("qwen3")[1].sources
    monkeypatch.setenv("LLMTALLY_TEMPLATE_RENDERER", "sandbox")
    assert ChatTemplate(sources).engine() == "sandbox"
    assert ChatTemplate(sources, renderer="minijinja").engine() == "minijinja"
    with pytest.raises(ValueError):
        ChatTemplate(sources, renderer="fastest")


def test_without_minijinja_the_sandbox_renders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "llmtally.tokens._minijinja")
    monkeypatch.setitem(sys.modules, "minijinja", None)
    t = ChatTemplate(_templates("qwen3")[1].sources)
    assert t.engine() == "sandbox"
    assert t.render([{"role": "user", "content": "hi"}]).endswith("<|im_start|>assistant\n")


def test_tojson_keeps_transformers_options() -> None:
    t = ChatTemplate(
        "{{ tools|tojson }}|{{ tools[0]|tojson(indent=2, sort_keys=true) }}", renderer="minijinja"
    )
    assert t.engine() == "minijinja"
    out = t.render([{"role": "user", "content": "x"}], tools=TOOLS)
    assert (
        out
        == f"{json.dumps(TOOLS, ensure_ascii=False)}|{json.dumps(TOOLS[0], indent=2, sort_keys=True, ensure_ascii=False)}"
    )
