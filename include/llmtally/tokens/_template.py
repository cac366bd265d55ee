"""Chat templates rendered the way transformers renders them, without importing transformers.

The environment mirrors ``transformers.utils.chat_template_utils``: an immutable Jinja2 sandbox with
``trim_blocks``/``lstrip_blocks``, loop controls, a ``{% generation %}`` block, the ``tojson`` filter
with its keyword arguments and no HTML escaping, and the globals ``raise_exception``, ``strftime_now``,
``dict`` and ``namespace``.  Inputs are prepared the same way: keys whose value is ``None`` are dropped
from messages, reasoning fields are aliased (``reasoning`` / ``thinking`` / ``reasoning_content``),
and the tokenizer's named special tokens are passed as variables.

Rendering itself goes to minijinja where it renders a template exactly as this sandbox does (see
``_minijinja``; the ``fastcount`` extra): ``LLMTALLY_TEMPLATE_RENDERER`` (or ``renderer=``) is
``auto`` (default: minijinja where installed, checked, and faster on the probe chats than the
sandbox, measured at load), ``minijinja`` (where installed and checked, with a warning when a template
stays on the sandbox) or ``sandbox``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.parser
import jinja2.utils
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .._exceptions import InputError, TemplateError

if TYPE_CHECKING:
    from ._minijinja import MiniJinjaTemplate

__all__ = ["DEFAULT_RENDERER", "ENV_TEMPLATE_RENDERER", "RENDERERS", "ChatTemplate", "prepare_messages"]

ENV_TEMPLATE_RENDERER = "LLMTALLY_TEMPLATE_RENDERER"
"""Which engine renders chat templates: ``auto``, ``minijinja`` or ``sandbox``."""
RENDERERS = ("auto", "minijinja", "sandbox")
DEFAULT_RENDERER = "auto"  # minijinja where exact and faster (BENCHMARKS.md, issue 12)
_MIN_SPEEDUP = 1.1  # "auto": minijinja must render the probe chats this much faster than the sandbox

logger = logging.getLogger("llmtally.tokens")
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")
_REASONING_KEYS = frozenset(_REASONING_FIELDS)


class _GenerationBlock(jinja2.ext.Extension):
    """``{% generation %}…{% endgeneration %}`` renders its body unchanged (training masks only)."""

    tags = {"generation"}  # noqa: RUF012 - Jinja's Extension API declares this as a class attribute

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller: Any) -> str:
        return str(caller())


class _Namespace(jinja2.utils.Namespace):
    """``namespace()`` that refuses underscore attributes, as transformers' does."""

    def __init__(*args: Any, **kwargs: Any) -> None:
        self, rest = args[0], args[1:]
        attrs = dict(*rest, **kwargs)
        for name in attrs:
            _Namespace._check(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _Namespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name: object) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"namespace attribute {name!r} is not allowed")


class _TemplateDict:
    def __call__(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict.fromkeys(*args, **kwargs)


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    x: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@functools.cache
def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationBlock, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = _TemplateDict()
    env.globals["namespace"] = _Namespace
    return env


def _plain(value: Any) -> Any:
    """Rebuild template input from plain JSON types (what the sandbox should see)."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if type(value) is dict:  # the usual case, without a call per string
        return {
            (k if type(k) is str else _plain(k)): v if type(v) is str else _plain(v) for k, v in value.items()
        }
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if callable(getattr(value, "model_dump", None)):
        return _plain(value.model_dump())
    return f"<{type(value).__name__}>"


def prepare_messages(messages: Sequence[Any]) -> list[dict[str, Any]]:
    """Messages as transformers hands them to a template: plain dicts, ``None`` values dropped,
    reasoning fields aliased."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise InputError("messages must be a list of {'role': ..., 'content': ...} objects")
    if not messages:
        raise InputError("messages is empty: a chat needs at least one message")
    out: list[dict[str, Any]] = []
    for i, raw in enumerate(messages):
        if (
            type(raw) is dict
            and all(type(v) is str for v in raw.values())
            and all(type(k) is str for k in raw)
        ):
            msg = raw.copy()  # the usual message: what _plain and dropping None values give
        else:
            msg = _plain(raw)
            if not isinstance(msg, dict):
                raise InputError(f"message {i} is not an object: {type(raw).__name__}")
            msg = {k: v for k, v in msg.items() if v is not None}
        if not _REASONING_KEYS.isdisjoint(msg):
            reasoning = next((msg[k] for k in _REASONING_FIELDS if msg.get(k) is not None), None)
            if reasoning is not None:
                msg = {"thinking": reasoning, **msg, "reasoning_content": reasoning}
        out.append(msg)
    return out


class ChatTemplate:
    """A compiled chat template plus the variables the tokenizer contributes (special tokens)."""

    def __init__(
        self,
        source: str | Mapping[str, str],
        special_tokens: Mapping[str, str] | None = None,
        *,
        renderer: str | None = None,
    ) -> None:
        if isinstance(source, str):
            self._sources: dict[str, str] = {"default": source}
        else:
            self._sources = dict(source)
        self.special_tokens = dict(special_tokens or {})
        self._compiled: dict[str, jinja2.Template] = {}
        self.renderer = renderer or os.environ.get(ENV_TEMPLATE_RENDERER, "").strip() or DEFAULT_RENDERER
        if self.renderer not in RENDERERS:
            raise ValueError(f"renderer must be one of {', '.join(RENDERERS)}, not {self.renderer!r}")
        self._fast: dict[str, MiniJinjaTemplate | None] = {}

    @property
    def sources(self) -> Mapping[str, str]:
        """Template texts by name (``default``, ``tool_use``, …)."""
        return self._sources

    def _select(self, tools: object) -> str:
        # transformers: the "tool_use" template when tools are given and it exists, else "default"
        if tools is not None and "tool_use" in self._sources:
            return "tool_use"
        if "default" in self._sources:
            return "default"
        if len(self._sources) == 1:
            return next(iter(self._sources))
        raise TemplateError(
            f"the tokenizer has several chat templates {sorted(self._sources)} and none is named 'default'"
        )

    def _template(self, name: str) -> jinja2.Template:
        tpl = self._compiled.get(name)
        if tpl is None:
            try:
                tpl = _environment().from_string(self._sources[name])
            except jinja2.TemplateSyntaxError as exc:
                raise TemplateError(f"chat template {name!r} does not compile: {exc}") from exc
            self._compiled[name] = tpl
        return tpl

    def render(
        self,
        messages: Sequence[Any],
        tools: Sequence[Any] | None = None,
        add_generation_prompt: bool = True,
        documents: Sequence[Any] | None = None,
        **template_kwargs: Any,
    ) -> str:
        """Render one chat to the exact prompt string the serving engine tokenizes."""
        chat = prepare_messages(messages)
        variables: dict[str, Any] = {**self.special_tokens, **_plain(template_kwargs)}
        name = self._select(tools)
        try:
            context = dict(
                messages=chat,
                tools=_plain(list(tools)) if tools is not None else None,
                documents=_plain(list(documents)) if documents is not None else None,
                add_generation_prompt=add_generation_prompt,
                **variables,
            )
            if name not in self._fast:
                self._fast[name] = self._fast_template(name)
            fast = self._fast[name]
            if fast is not None:
                rendered = fast.render(context)
                if rendered is not None:
                    return rendered
            return self._template(name).render(context)
        except TemplateError:
            raise
        except jinja2.TemplateError as exc:
            raise TemplateError(f"chat template raised: {exc}") from exc
        except (TypeError, AttributeError, KeyError, IndexError, ValueError) as exc:
            raise InputError(f"chat template could not render these messages: {exc!r}") from exc

    def engine(self, name: str = "default") -> str:
        """What renders template ``name``: ``minijinja`` (checked, see ``_minijinja``) or ``sandbox``."""
        if name not in self._fast:
            self._fast[name] = self._fast_template(name)
        fast = self._fast[name]
        return "minijinja" if fast is not None and fast.disabled is None else "sandbox"

    def _fast_template(self, name: str) -> MiniJinjaTemplate | None:
        """minijinja's compiled template ``name`` once it passed its checks, else ``None``."""
        if self.renderer == "sandbox":
            return None
        level = logging.WARNING if self.renderer == "minijinja" else logging.INFO
        try:
            from ._minijinja import PROBE_CHATS, MiniJinjaTemplate
        except ImportError as exc:
            logger.log(level, "chat templates render with the Jinja2 sandbox: %s", exc)
            return None

        def reference(context: dict[str, Any]) -> str:
            return self._template(name).render(context)

        try:
            fast = MiniJinjaTemplate(
                self._sources[name],
                tojson=_tojson,
                strftime_now=_strftime_now,
                reference=reference,
                name=name,
            )
        except Exception as exc:  # minijinja refuses to compile it, or it uses unchecked constructs
            logger.log(level, "chat template %r renders with the Jinja2 sandbox: %s", name, exc)
            return None
        contexts = []
        for probe in PROBE_CHATS:
            kwargs = {**self.special_tokens, **probe.get("template_kwargs", {})}
            tools = probe.get("tools")
            contexts.append(
                dict(
                    messages=prepare_messages(probe["messages"]),
                    tools=_plain(tools) if tools is not None else None,
                    documents=None,
                    add_generation_prompt=probe.get("add_generation_prompt", True),
                    **kwargs,
                )
            )
        why = fast.self_check(contexts)
        if why is not None:
            logger.log(level, "chat template %r renders with the Jinja2 sandbox: self-check %s", name, why)
            return None
        if self.renderer == "auto":
            speedup = fast.speedup(contexts)
            if speedup < _MIN_SPEEDUP:
                logger.info(
                    "chat template %r renders with the Jinja2 sandbox (minijinja %.2fx)", name, speedup
                )
                return None
        return fast
