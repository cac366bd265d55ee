"""Chat templates rendered by minijinja (Rust), used only where they render exactly as the sandbox.

minijinja -- the engine Hugging Face's text-generation-inference renders chat templates with --
renders the same templates several times faster than the Jinja2 sandbox.  Its Python-compatibility
mode prints values, slices, ``loop`` and string methods as Jinja2 does, and it is configured here as
transformers configures Jinja2 (``trim_blocks``, ``lstrip_blocks``, loop controls, ``tojson`` with
``ensure_ascii=False``/``indent``/``separators``/``sort_keys``, ``raise_exception``,
``strftime_now``, ``dict``).  Where the two still differ, the sandbox renders:

* at load, a template is *accepted* only if every construct it uses is on the allow-lists below
  (checked on Jinja2's own parse of it); ``{% generation %}``, macros, includes, ``|title``,
  ``|upper``, ``/`` and the like are not, and such templates stay on the sandbox; nor are
  sequences the template makes (``|map``, ``.items()``, ``range()``, ``[a, b]``, ``|list``) used
  other than consumed on the spot: Jinja2 has generators and views there, and prints an undefined
  inside a list as ``Undefined``;
* an accepted template must then render a fixed set of probe chats (``PROBE_CHATS``) exactly as the
  sandbox does (a template that raises on a probe must raise in both), and its first
  ``SHADOW_RENDERS`` real renders are rendered by both and compared; any difference switches the
  template back to the sandbox for good, with a warning;
* per render, inputs where the engines are known to differ go to the sandbox: strings holding
  U+001C..U+001F (whitespace to Python's ``str.strip``, not to Rust's), floats Python prints in
  exponent form, integers beyond 64 bits, and -- for templates that look up keys computed at
  render time -- strings named like a ``dict``/``str``/``list`` method (Jinja2 falls back to the
  method when such a key is missing);
* minijinja hands an undefined value to a Python filter or function as ``None`` (Jinja2 hands over
  ``Undefined``, which ``json.dumps`` refuses): ``tojson`` and ``dict`` decline a ``None`` that does
  not come from the input (input containers come back as the very same objects);
* anything minijinja raises is re-rendered by the sandbox, so errors are the sandbox's own.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jinja2
import jinja2.nodes as nodes
import minijinja

__all__ = ["PROBE_CHATS", "SHADOW_RENDERS", "MiniJinjaTemplate", "strips_whitespace", "unsupported_construct"]

logger = logging.getLogger("llmtally.tokens")

SHADOW_RENDERS = 32
"""Real renders per template that are rendered by both engines and compared before minijinja's
output is trusted alone."""

_NODES = frozenset(
    {
        nodes.Template,
        nodes.Output,
        nodes.TemplateData,
        nodes.If,
        nodes.For,
        nodes.Assign,
        nodes.AssignBlock,
        nodes.Break,
        nodes.Continue,
        nodes.Name,
        nodes.NSRef,
        nodes.Const,
        nodes.Getattr,
        nodes.Getitem,
        nodes.Slice,
        nodes.Call,
        nodes.Keyword,
        nodes.Filter,
        nodes.Test,
        nodes.Concat,
        nodes.CondExpr,
        nodes.And,
        nodes.Or,
        nodes.Not,
        nodes.Compare,
        nodes.Operand,
        nodes.Add,
        nodes.Sub,
        nodes.Mul,
        nodes.Mod,
        nodes.Neg,
        nodes.List,
        nodes.Tuple,
        nodes.Dict,
        nodes.Pair,
    }
)
# filters, tests and methods whose results the test suite checks equal in both engines
_FILTERS = frozenset(
    {
        "tojson",
        "trim",
        "length",
        "count",
        "first",
        "last",
        "join",
        "default",
        "d",
        "list",
        "string",
        "replace",
        "items",
        "selectattr",
        "rejectattr",
        "select",
        "reject",
        "map",
        "safe",
        "reverse",
    }
)
_TESTS = frozenset(
    {
        "defined",
        "undefined",
        "none",
        "string",
        "mapping",
        "number",
        "integer",
        "boolean",
        "true",
        "false",
        "sameas",
        "equalto",
        "eq",
        "ne",
        "in",
        "odd",
        "even",
        "divisibleby",
    }
)
_METHODS = frozenset(
    {"startswith", "endswith", "split", "strip", "lstrip", "rstrip", "replace"}
    | {"items", "keys", "values", "get"}
)
_WHITESPACE_METHODS = frozenset({"strip", "lstrip", "rstrip", "split"})
_GLOBAL_CALLS = frozenset({"namespace", "raise_exception", "strftime_now", "range", "dict"})
_LOOP_ATTRS = frozenset(
    {"index", "index0", "revindex", "revindex0", "first", "last", "length", "previtem", "nextitem"}
)
# names Jinja2 resolves to a bound method when a dict, str or list lacks them as a key
METHOD_NAMES = frozenset(
    n for t in (dict, str, list, tuple, int, float) for n in dir(t) if not n.startswith("_")
)
_PY_ONLY_SPACE = re.compile("[\x1c-\x1f]")
_I64 = 2**63


def _float_prints_alike(x: float) -> bool:
    """Python's ``str`` and minijinja agree on floats printed without an exponent."""
    return math.isfinite(x) and (x == 0 or 1e-4 <= abs(x) < 1e16)


def strips_whitespace(ast: nodes.Template) -> bool:
    """Whether the template strips or splits on whitespace (``|trim``, ``.strip()``, ``.split()``):
    Python and Rust disagree on four control characters there."""
    if any(f.name == "trim" and not f.args for f in ast.find_all(nodes.Filter)):
        return True
    return any(
        isinstance(c.node, nodes.Getattr) and c.node.attr in _WHITESPACE_METHODS and not c.args
        for c in ast.find_all(nodes.Call)
    )


# Jinja2 returns generators, dict views or range objects where minijinja returns lists, and prints an
# undefined inside a list as "Undefined" where minijinja prints "undefined": sequences the template
# makes are alike only when consumed on the spot (iterated, joined, measured, ...), never printed,
# stored or indexed.  Sequences from the input hold no undefined and print alike.
_LAZY_FILTERS = frozenset({"items", "map", "select", "reject", "selectattr", "rejectattr", "reverse"})
_ITERATING = frozenset({"list", "join", "first", "map", "select", "reject", "selectattr", "rejectattr"})
_MEASURING = frozenset({"length", "count", "tojson"})  # not for generators: len() refuses them
_VIEW_METHODS = frozenset({"items", "keys", "values"})


def _made_sequence(node: nodes.Node) -> tuple[str, frozenset[str]] | None:
    """``(what, filters that may consume it)`` for an expression that makes a sequence."""
    if isinstance(node, nodes.Filter):
        if node.name in _LAZY_FILTERS:
            return f"|{node.name}", _ITERATING
        if node.name == "list":
            return "|list", _ITERATING | _MEASURING
        return None
    if isinstance(node, nodes.Call):
        callee = node.node
        if isinstance(callee, nodes.Getattr) and callee.attr in _VIEW_METHODS:
            return f".{callee.attr}()", _ITERATING | _MEASURING
        if isinstance(callee, nodes.Name) and callee.name == "range":
            return "range()", _ITERATING | _MEASURING
        return None
    if isinstance(node, (nodes.List, nodes.Tuple, nodes.Dict)):
        inner = [c for c in node.find_all(nodes.Expr) if not isinstance(c, nodes.Pair)]
        if all(isinstance(c, nodes.Const) for c in inner):
            return None  # constants only: nothing undefined inside
        return "a list, tuple or dict literal", _ITERATING | _MEASURING
    return None


def _unconsumed_sequence(ast: nodes.Template) -> str | None:
    """The first sequence the template makes that is used other than consumed on the spot."""
    parents: dict[int, nodes.Node] = {}
    for node in ast.find_all(nodes.Node):
        for child in node.iter_child_nodes():
            parents[id(child)] = node
    for node in ast.find_all((nodes.Filter, nodes.Call, nodes.List, nodes.Tuple, nodes.Dict)):
        made = _made_sequence(node)
        if made is None:
            continue
        what, consumers = made
        parent = parents.get(id(node))
        if isinstance(parent, nodes.For) and parent.iter is node:
            continue
        if isinstance(parent, nodes.Filter) and parent.node is node and parent.name in consumers:
            continue
        if isinstance(parent, nodes.Operand) and parent.op in ("in", "notin"):
            continue
        literal = isinstance(node, (nodes.List, nodes.Tuple, nodes.Dict))
        argument = isinstance(parent, (nodes.Call, nodes.Filter, nodes.Test, nodes.Keyword))
        if literal and argument and node is not getattr(parent, "node", None):
            continue  # an argument, e.g. startswith(("a", "b")) or tojson(separators=(",", ":"))
        if literal and isinstance(parent, (nodes.Assign, nodes.For)) and node is parent.target:
            continue  # a, b = ...: a store target
        return f"uses {what} other than consumed on the spot"
    return None


def unsupported_construct(ast: nodes.Template) -> tuple[str | None, bool]:
    """``(why not, looks up computed keys)``: the first construct outside the allow-lists (``None``
    when there is none) and whether the template indexes with keys computed at render time."""
    namespaces = {
        n.target.name
        for n in ast.find_all(nodes.Assign)
        if isinstance(n.target, nodes.Name)
        and isinstance(n.node, nodes.Call)
        and isinstance(n.node.node, nodes.Name)
        and n.node.node.name == "namespace"
    }
    called = {id(call.node) for call in ast.find_all(nodes.Call)}
    dynamic_keys = False
    for node in ast.find_all(nodes.Node):
        kind = type(node)
        if kind not in _NODES:
            return f"uses {kind.__name__}", dynamic_keys
        if isinstance(node, nodes.Filter) and node.name not in _FILTERS:
            return f"uses the filter {node.name!r}", dynamic_keys
        if isinstance(node, nodes.Test) and node.name not in _TESTS:
            return f"uses the test {node.name!r}", dynamic_keys
        if isinstance(node, (nodes.Call, nodes.Filter, nodes.Test)) and (
            node.dyn_args is not None or node.dyn_kwargs is not None
        ):
            return "passes *args or **kwargs", dynamic_keys
        if isinstance(node, nodes.Call):
            callee = node.node
            if isinstance(callee, nodes.Name):
                if callee.name not in _GLOBAL_CALLS:
                    return f"calls {callee.name!r}", dynamic_keys
                if callee.name == "namespace" and any(k.key.startswith("_") for k in node.kwargs):
                    return "sets an underscore namespace attribute", dynamic_keys
            elif not (isinstance(callee, nodes.Getattr) and callee.attr in _METHODS):
                return "calls a method outside the allow-list", dynamic_keys
        elif isinstance(node, nodes.Getattr):
            owner = node.node
            if node.attr.startswith("_"):
                return f"reads the attribute {node.attr!r}", dynamic_keys
            if isinstance(owner, nodes.Name) and owner.name == "loop":
                if node.attr not in _LOOP_ATTRS:
                    return f"reads loop.{node.attr}", dynamic_keys
            elif isinstance(owner, nodes.Name) and owner.name in namespaces:
                pass
            elif node.attr in METHOD_NAMES and id(node) not in called:
                return f"reads .{node.attr} (a method to Jinja2)", dynamic_keys
        elif isinstance(node, nodes.NSRef) and node.attr.startswith("_"):
            return "sets an underscore namespace attribute", dynamic_keys
        elif isinstance(node, nodes.Getitem):
            key = node.arg
            if isinstance(key, nodes.Const):
                if isinstance(key.value, str) and key.value in METHOD_NAMES:
                    return f"reads [{key.value!r}] (a method to Jinja2 when missing)", dynamic_keys
            elif not isinstance(key, nodes.Slice) and not _numeric(key):
                dynamic_keys = True
        elif isinstance(node, nodes.Const) and isinstance(node.value, float):
            if not _float_prints_alike(node.value):
                return f"holds the float {node.value!r}", dynamic_keys
        elif isinstance(node, nodes.For) and node.recursive:
            return "uses a recursive loop", dynamic_keys
    return _unconsumed_sequence(ast), dynamic_keys


def _numeric(node: nodes.Node) -> bool:
    """Whether an index expression can only be a number (Jinja2 falls back to attributes for strings)."""
    if isinstance(node, nodes.Const):
        return type(node.value) is int
    if isinstance(node, (nodes.Sub, nodes.Mul, nodes.Mod, nodes.Neg)):
        return True  # numbers, or an error in both engines
    if isinstance(node, nodes.Add):
        return _numeric(node.left) or _numeric(node.right)
    return (
        isinstance(node, nodes.Getattr)
        and isinstance(node.node, nodes.Name)
        and node.node.name == "loop"
        and node.attr in _LOOP_ATTRS - {"previtem", "nextitem", "first", "last"}
    )


def _prints_alike(context: dict[str, Any], strings: bool, method_names: bool) -> set[int] | None:
    """The ids of the containers in ``context`` when minijinja renders it exactly as the sandbox
    (see the module docstring), else ``None``; strings are looked at only when the template strips
    whitespace (``strings``) or indexes with computed keys (``method_names``)."""
    stack: list[Any] = [context]
    pop, push = stack.pop, stack.extend
    texts: list[str] = []
    keep = texts.append
    containers: set[int] = set()
    seen = containers.add
    while stack:
        value = pop()
        kind = type(value)
        if kind is str:
            if strings:
                if method_names and value in METHOD_NAMES:
                    return None
                keep(value)
        elif kind is dict:
            seen(id(value))
            push(value.values())
            if strings:
                push(value)  # the keys
        elif kind is list or kind is tuple:
            seen(id(value))
            push(value)
        elif kind is int:
            if not -_I64 <= value < _I64:
                return None
        elif kind is float:
            if not _float_prints_alike(value):
                return None
        elif not (value is None or kind is bool):
            return None
    if texts and _PY_ONLY_SPACE.search("".join(texts)):
        return None
    return containers


class _Declined(Exception):
    """Raised inside a render to hand the context to the sandbox."""


def _holds_undefined(value: Any, inputs: set[int]) -> bool:
    """Whether a value handed to a Python filter may hold an undefined (minijinja passes undefined as
    ``None``, Jinja2 as ``Undefined``): a ``None`` at the top or inside a container the template
    built (containers from the input come back as the same objects, their ``None`` is genuine)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if v is None:
            return True
        kind = type(v)
        if (kind is dict or kind is list or kind is tuple) and id(v) not in inputs:
            stack.extend(v.values() if kind is dict else v)
    return False


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _dict(*args: Any, **kwargs: Any) -> dict[Any, Any]:
    if any(a is None for a in args) or any(v is None for v in kwargs.values()):
        raise _Declined("dict() of an undefined")
    return dict(*args, **kwargs)


class MiniJinjaTemplate:
    """One chat template compiled by minijinja, trusted after the checks in the module docstring.

    :meth:`render` returns ``None`` whenever the caller must render with the sandbox instead.
    """

    def __init__(
        self,
        source: str,
        *,
        tojson: Callable[..., str],
        strftime_now: Callable[[str], str],
        reference: Callable[[dict[str, Any]], str],
        name: str = "default",
    ) -> None:
        if "\r" in source:  # Jinja2 normalises template newlines to "\n"; minijinja keeps them
            raise ValueError("the template source holds carriage returns")
        if _PY_ONLY_SPACE.search(source):
            raise ValueError("the template source holds U+001C..U+001F")
        try:
            ast = jinja2.Environment(extensions=["jinja2.ext.loopcontrols"]).parse(source)
        except jinja2.TemplateSyntaxError as exc:  # e.g. {% generation %}: the sandbox's own tag
            raise ValueError(f"the template does not parse without extensions: {exc}") from exc
        why, self._dynamic_keys = unsupported_construct(ast)
        if why is not None:
            raise ValueError(f"the template {why}")
        self._strings = self._dynamic_keys or strips_whitespace(ast)
        self._local = threading.local()

        def checked_tojson(value: Any, *args: Any, **kwargs: Any) -> str:
            inputs: set[int] = getattr(self._local, "inputs", set())
            if _holds_undefined([value, *args, *kwargs.values()], inputs):
                raise _Declined("tojson of a value that may be undefined")
            return tojson(value, *args, **kwargs)

        self._env = minijinja.Environment(
            trim_blocks=True,
            lstrip_blocks=True,
            filters={"tojson": checked_tojson},
            globals={"raise_exception": _raise_exception, "strftime_now": strftime_now, "dict": _dict},
        )
        try:
            self._env.add_template(name, source)
        except minijinja.TemplateError as exc:
            raise ValueError(f"minijinja does not compile the template: {exc.message}") from exc
        self._name = name
        self._reference = reference
        self._shadow = SHADOW_RENDERS
        self._lock = threading.Lock()
        self.disabled: str | None = None

    def try_render(self, context: dict[str, Any]) -> str | None:
        """minijinja's rendering of ``context``, unchecked; ``None`` where it declines (inputs it is
        known to print differently, or an error)."""
        inputs = _prints_alike(context, self._strings, self._dynamic_keys)
        if inputs is None:
            return None
        self._local.inputs = inputs
        try:
            return str(self._env.render_template(self._name, **context))
        except Exception:  # minijinja's error, a decline, or raise_exception: the sandbox decides
            return None
        finally:
            self._local.inputs = set()

    def self_check(self, contexts: Iterable[dict[str, Any]]) -> str | None:
        """Render ``contexts`` with both engines; the first difference (``None``: none)."""
        for i, context in enumerate(contexts):
            got = self.try_render(context)
            if got is None:
                continue  # declined: the sandbox renders this one at run time as well
            try:
                want = self._reference(context)
            except Exception as exc:
                return f"probe {i}: the sandbox raises {type(exc).__name__}, minijinja renders"
            if got != want:
                return f"probe {i}: {_first_difference(want, got)}"
        return None

    def speedup(self, contexts: Sequence[dict[str, Any]], repeat: int = 5) -> float:
        """How many times faster minijinja (input checks included) renders ``contexts`` than the
        sandbox; best of ``repeat``, over the contexts both render."""
        both = [c for c in contexts if self.try_render(c) is not None]
        fast = slow = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            for c in both:
                self.try_render(c)
            t1 = time.perf_counter()
            for c in both:
                self._reference(c)
            t2 = time.perf_counter()
            fast, slow = min(fast, t1 - t0), min(slow, t2 - t1)
        return slow / fast if both and fast > 0 else 0.0

    def render(self, context: dict[str, Any]) -> str | None:
        """The prompt string, or ``None`` when the sandbox must render this context."""
        if self.disabled is not None:
            return None
        got = self.try_render(context)
        if got is None or self._shadow <= 0:
            return got
        with self._lock:
            self._shadow -= 1
        try:
            want = self._reference(context)
        except Exception:
            want = None
        if want != got:
            self.disabled = "rendered differently" if want is None else _first_difference(want, got)
            logger.warning(
                "chat template %r: minijinja %s; rendering it with the Jinja2 sandbox from now on",
                self._name,
                self.disabled,
            )
            return None
        return got


def _first_difference(want: str, got: str) -> str:
    i = next((k for k, (a, b) in enumerate(zip(want, got, strict=False)) if a != b), min(len(want), len(got)))
    return f"differs at character {i}: sandbox {want[i : i + 30]!r}, minijinja {got[i : i + 30]!r}"


_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "查询天气 <b>&'\"",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "城市"},
                    "unit": {"type": "string", "enum": ["c", "f"]},
                    "days": {"type": "integer", "default": 3, "minimum": 0.5},
                },
                "required": ["city"],
            },
        },
    },
    {"type": "function", "function": {"name": "noop", "description": "", "parameters": {}}},
]
_CALL = {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "北京"}'}}
_CALL_OBJ = {
    "id": "c1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": {"city": "上海", "days": 2, "hot": True}},
}

PROBE_CHATS: list[dict[str, Any]] = [
    {"messages": [{"role": "user", "content": "hi"}]},
    {"messages": [{"role": "user", "content": "hi"}], "add_generation_prompt": False},
    {
        "messages": [
            {"role": "system", "content": "  You are helpful.  \n\n"},
            {"role": "user", "content": "\n\n  第一  \t"},
            {"role": "assistant", "content": " answer "},
            {"role": "user", "content": "<|im_end|><|eot_id|><｜User｜> typed specials\r\n"},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "1+1?"},
            {"role": "assistant", "content": "<think>\nadd\n</think>\n\n2"},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4", "reasoning_content": "again"},
            {"role": "user", "content": "3+3?"},
        ]
    },
    {"messages": [{"role": "user", "content": "q"}], "template_kwargs": {"enable_thinking": False}},
    {"messages": [{"role": "user", "content": "q"}], "template_kwargs": {"enable_thinking": True}},
    {"messages": [{"role": "user", "content": "天气？"}], "tools": _TOOLS},
    {
        "messages": [
            {"role": "system", "content": "tools ok"},
            {"role": "user", "content": "天气？"},
            {"role": "assistant", "content": "", "tool_calls": [_CALL, _CALL_OBJ]},
            {"role": "tool", "content": '{"t": 21}'},
            {"role": "tool", "content": "<tool_response>x</tool_response>"},
            {"role": "assistant", "content": "晴"},
            {"role": "user", "content": "<tool_response>y</tool_response>"},
        ],
        "tools": _TOOLS,
    },
    {
        "messages": [
            {"role": "user", "content": "call"},
            {"role": "assistant", "tool_calls": [_CALL]},
            {"role": "tool", "content": "ok"},
        ],
        "tools": _TOOLS,
        "add_generation_prompt": False,
    },
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "parts"}]}]},
    {"messages": [{"role": "assistant", "content": "first is assistant"}, {"role": "user", "content": ""}]},
    {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
    {"messages": [{"role": "system", "content": "s1"}, {"role": "system", "content": "s2"}]},
    {"messages": [{"role": "user", "content": "名前 😀 é\u0301 \u00a0\u3000 tab\t end"}], "tools": []},
]
"""Chats every accepted template renders with both engines at load (tools, tool calls, reasoning,
multi-turn, typed special tokens, whitespace runs, odd shapes a template may reject)."""
