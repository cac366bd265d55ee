"""The text a model generated, rebuilt from its reply with the model's own chat template.

A server that splits its output into ``content``, ``reasoning`` and ``tool_calls`` (vLLM's reasoning
and tool parsers, SGLang, DeepSeek's API) still billed every token the model emitted: the thinking,
the markers around it and the tool calls in the template's own syntax.  The template is the only
record of that syntax, so the generated text is recovered as the difference of two renderings, the
way transformers renders a conversation:

* ``gen``: what ``add_generation_prompt=True`` appends to the conversation (``<|im_start|>assistant\\n``,
  sometimes with a forced ``<think>\\n``);
* ``turn``: what the reply appended as an assistant message appends;
* the generated text is ``turn`` after ``gen`` (or, where the prompt forced an opening ``<think>``
  the history rendering omits, after the text before that marker), up to the first end-of-turn
  token that follows the reply's last piece -- the engine stops there, and bills that stop token by
  its own rule (``counts_stop_token``).

Every piece of the reply (content, reasoning, each tool call's name and arguments) must appear in
the rendering, or the reply cannot be rebuilt and :class:`TemplateError` says why.  Renderings are
tried in order until one holds every piece: the reply as recorded; a null content as ``""`` (templates
that test ``'</think>' in content``); tool-call arguments parsed into objects (templates that write
them with ``tojson``).

A template that drops reasoning from the assistant turn (DeepSeek-R1 style: history never shows the
thinking) gets it back from the markers the template itself names: ``<think>`` (unless the
generation prompt already opened it) + reasoning + ``</think>`` + the rendered rest.  Servers that
split at ``</think>`` keep the whitespace on both sides in the two fields, so their concatenation is
what the model emitted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .._exceptions import InputError, TemplateError
from ._template import ChatTemplate

__all__ = ["generated_text"]

_THINK = ("<think>", "</think>")


def _calls(tool_calls: Any) -> list[dict[str, Any]]:
    if tool_calls is None:
        return []
    if not isinstance(tool_calls, Sequence) or isinstance(tool_calls, (str, bytes)):
        raise InputError("tool_calls must be a list of {'type': 'function', 'function': {...}} objects")
    out = []
    for call in tool_calls:
        if not isinstance(call, Mapping):
            raise InputError("each tool call must be an object")
        fn = call.get("function", call)
        if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
            raise InputError("a tool call needs function.name")
        out.append({"type": call.get("type") or "function", **dict(call), "function": dict(fn)})
    return out


def _argument_forms(fn: Mapping[str, Any]) -> list[str]:
    """The ways a template may write a call's arguments: as sent, or as ``tojson`` writes the object."""
    args = fn.get("arguments")
    if args is None:
        return []
    if isinstance(args, str):
        forms = [args]
        try:
            parsed = json.loads(args)
        except ValueError:
            return forms
        return [*forms, json.dumps(parsed, ensure_ascii=False)]
    return [json.dumps(args, ensure_ascii=False)]


def _with_parsed_arguments(calls: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    out, changed = [], False
    for call in calls:
        args = call["function"].get("arguments")
        if isinstance(args, str):
            try:
                parsed = json.loads(args)
            except ValueError:
                parsed = args
            if parsed is not args:
                changed = True
                call = {**call, "function": {**call["function"], "arguments": parsed}}
        out.append(call)
    return out if changed else None


def _variants(
    content: str | None, reasoning: str | None, calls: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    base: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning:
        base["reasoning_content"] = reasoning
    if calls:
        base["tool_calls"] = calls
    out = [base]
    if content is None:
        out.append({**base, "content": ""})
    parsed = _with_parsed_arguments(calls)
    if parsed is not None:
        out.extend({**v, "tool_calls": parsed} for v in list(out))
    return out


def _find_all(text: str, pieces: list[list[str]], start: int) -> int | None:
    """The end of the last piece found, in order from ``start``; ``None`` if one is missing.  Each
    entry lists the alternative forms of one piece."""
    pos = start
    for forms in pieces:
        hits = [(i, f) for i, f in ((text.find(f, pos), f) for f in forms if f) if i >= 0]
        if not hits:
            return None
        i, f = min(hits)
        pos = i + len(f)
    return pos


def _cut(text: str, after: int, end_tokens: Sequence[str]) -> str:
    """``text`` up to the first end-of-turn token at or after ``after`` (all of it when none)."""
    hits = [i for i in (text.find(t, after) for t in end_tokens if t) if i >= 0]
    return text[: min(hits)] if hits else text


def generated_text(
    template: ChatTemplate,
    messages: Sequence[Any],
    *,
    content: str | None = None,
    reasoning: str | None = None,
    tool_calls: Any = None,
    tools: Sequence[Any] | None = None,
    end_tokens: Sequence[str] = (),
    **template_kwargs: Any,
) -> str:
    """The text the model generated for this reply, without its end-of-turn token (see the module).

    ``end_tokens`` are the tokenizer's special tokens (its EOS first): the first one after the reply's
    last piece ends the generated text.  Raises :class:`TemplateError` when the template cannot
    show every piece of the reply.
    """
    if content is not None and not isinstance(content, str):
        raise InputError("content must be a string")
    if reasoning is not None and not isinstance(reasoning, str):
        raise InputError("reasoning must be a string")
    calls = _calls(tool_calls)
    history = list(messages)
    base = template.render(history, tools=tools, add_generation_prompt=False, **template_kwargs)
    prompt = template.render(history, tools=tools, add_generation_prompt=True, **template_kwargs)
    if not prompt.startswith(base):
        raise TemplateError("the generation prompt does not extend the conversation's rendering")
    gen = prompt[len(base) :]
    reply_pieces: list[list[str]] = []
    if content and content.strip():
        reply_pieces.append([content.strip()])
    for call in calls:
        reply_pieces.append([call["function"]["name"]])
        forms = _argument_forms(call["function"])
        if forms:
            reply_pieces.append(forms)
    thought = reasoning.strip() if reasoning else ""
    hidden: str | None = None
    for variant in _variants(content, reasoning, calls):
        try:
            full = template.render(
                [*history, variant], tools=tools, add_generation_prompt=False, **template_kwargs
            )
        except (TemplateError, InputError):
            continue
        if not full.startswith(base):
            continue
        turn = full[len(base) :]
        if turn.startswith(gen):
            head = len(gen)
        else:  # the prompt forced text the history omits: only an opened reasoning block is understood
            head = gen.find(_THINK[0])
            if head < 0 or not turn.startswith(gen[:head]):
                continue
        forced = gen[head:]
        if thought:
            found = _find_all(turn, [[thought], *reply_pieces], head)
            if found is not None:
                return _cut(turn, found, end_tokens)[head:]
        found = _find_all(turn, reply_pieces, head)
        if found is None:
            continue
        rest = _cut(turn, found, end_tokens)[head:]
        if not thought:
            return rest
        if hidden is None and _THINK[1] in "".join(template.sources.values()):
            opened = "" if _THINK[0] in forced else _THINK[0]
            hidden = opened + (reasoning or "") + _THINK[1] + rest
    if hidden is not None:
        return hidden
    raise TemplateError(
        "the chat template does not render this reply's "
        + ("reasoning, " if thought else "")
        + ("tool calls" if calls else "content")
        + ": its generated text cannot be rebuilt"
    )
