"""Counters for OpenAI models, on tiktoken.

Text is counted with ``encode_ordinary`` (special-token look-alikes in user text are plain text, as
the API treats them).  Chats follow the API's own accounting as published in OpenAI's cookbook
("How to count tokens with tiktoken"): 3 tokens per message, 1 per ``name``, 3 to prime the reply;
tool definitions use the cookbook's per-function constants.  Schema parts the cookbook formula does
not model (nested objects, ``items``, ``default``, …) are counted as the tokens of their JSON, an
over-count, so a tool-bearing prompt is never under-counted.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._exceptions import InputError, TokenizerLoadError
from ._base import BatchItem

__all__ = ["TiktokenCounter", "load_tiktoken"]


@dataclass(frozen=True)
class _ToolCosts:
    func_init: int
    prop_init: int
    prop_key: int
    enum_init: int
    enum_item: int
    func_end: int


# From the cookbook, measured against the API: gpt-4o family (o200k) and gpt-3.5/gpt-4 (cl100k).
_TOOL_COSTS = {
    "o200k_base": _ToolCosts(7, 3, 3, -3, 3, 12),
    "cl100k_base": _ToolCosts(10, 3, 3, -3, 3, 12),
}
_MODELLED_PROPERTY_KEYS = frozenset({"type", "description", "enum"})
_MODELLED_PARAMETER_KEYS = frozenset({"type", "properties", "required"})
_MODELLED_FUNCTION_KEYS = frozenset({"name", "description", "parameters"})
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
IMAGE_PART_TOKENS = 85  # a low-detail image; high detail costs more and is not modelled


class _Tally:
    """A prompt's tokens as fixed overheads plus the texts still to be counted."""

    __slots__ = ("fixed", "texts")

    def __init__(self) -> None:
        self.fixed = 0
        self.texts: list[str] = []


class TiktokenCounter:
    """Counts as the OpenAI API bills, for one tiktoken encoding."""

    def __init__(
        self,
        encoding: Any,
        *,
        name: str,
        count_texts: Callable[[list[str]], list[int]] | None = None,
    ) -> None:
        self._enc = encoding
        self._name = name
        self._count_texts = count_texts
        self._costs = _TOOL_COSTS.get(encoding.name, _TOOL_COSTS["o200k_base"])
        # tiktoken files are content-addressed; the encoding name plus its mergeable ranks hash pins them
        h = hashlib.sha256(f"tiktoken:{encoding.name}:{encoding.n_vocab}".encode())
        h.update(json.dumps(sorted(encoding._special_tokens.items())).encode())
        self._fingerprint = h.hexdigest()[:16]

    def __repr__(self) -> str:
        return f"TiktokenCounter(name={self._name!r}, encoding={self._enc.name!r})"

    @property
    def name(self) -> str:
        """The model name this counter was loaded for."""
        return self._name

    @property
    def encoding_name(self) -> str:
        """The tiktoken encoding (``o200k_base``, ``cl100k_base``, …)."""
        return str(self._enc.name)

    @property
    def encoding(self) -> Any:
        """The underlying ``tiktoken.Encoding``."""
        return self._enc

    @property
    def counts_stop_token(self) -> bool:
        """The OpenAI API bills no stop token in ``completion_tokens``."""
        return False

    @property
    def fingerprint(self) -> str:
        """Hash of the encoding's identity."""
        return self._fingerprint

    def with_text_counter(self, count_texts: Callable[[list[str]], list[int]]) -> TiktokenCounter:
        """A counter for the same encoding whose texts are counted by ``count_texts`` (a recount engine)."""
        return TiktokenCounter(self._enc, name=self._name, count_texts=count_texts)

    def _lengths(self, texts: list[str]) -> list[int]:
        if self._count_texts is not None:
            return self._count_texts(texts)
        # tiktoken's batch call starts a thread pool per call: it pays off for long texts only
        if len(texts) >= 16 and sum(map(len, texts)) >= 16_384 * len(texts):
            batch = self._enc.encode_ordinary_batch(texts, num_threads=os.cpu_count() or 1)
            return [len(ids) for ids in batch]
        encode = self._enc.encode_ordinary
        return [len(encode(t)) if t else 0 for t in texts]

    def _total(self, tally: _Tally) -> int:
        return tally.fixed + sum(self._lengths(tally.texts))

    def count(self, text: str, *, add_special_tokens: bool = False) -> int:
        """Tokens of ``text``; special-token look-alikes count as plain text (OpenAI adds none)."""
        del add_special_tokens
        if not isinstance(text, str):
            raise InputError(f"text must be a string, not {type(text).__name__}")
        return self._lengths([text])[0] if text else 0

    @staticmethod
    def _value(value: Any, tally: _Tally) -> None:
        if value is None:
            return
        if isinstance(value, str):
            tally.texts.append(value)
        elif isinstance(value, list):  # content parts
            for part in value:
                if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                    tally.texts.append(part["text"])
                elif isinstance(part, Mapping) and part.get("type") in ("image_url", "input_image"):
                    tally.fixed += IMAGE_PART_TOKENS
                else:
                    tally.texts.append(json.dumps(part, ensure_ascii=False))
        else:
            tally.texts.append(json.dumps(value, ensure_ascii=False, separators=(",", ":")))

    @staticmethod
    def _json(value: Mapping[str, Any], skip: frozenset[str], tally: _Tally) -> None:
        extra = {k: v for k, v in value.items() if k not in skip}
        if extra:
            tally.texts.append(json.dumps(extra, ensure_ascii=False))

    def _tools(self, tools: Sequence[Mapping[str, Any]], tool_choice: Any, tally: _Tally) -> None:
        c = self._costs
        for tool in tools:
            fn = tool.get("function", tool) if isinstance(tool, Mapping) else None
            if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
                raise InputError('each tool needs {"type": "function", "function": {"name": ...}}')
            tally.fixed += c.func_init
            desc = str(fn.get("description") or "")
            tally.texts.append(fn["name"] + ":" + desc.removesuffix("."))
            self._json(fn, _MODELLED_FUNCTION_KEYS, tally)
            params = fn.get("parameters") or {}
            props = params.get("properties") or {}
            if props:
                tally.fixed += c.prop_init
                for key, prop in props.items():
                    prop = prop if isinstance(prop, Mapping) else {}
                    tally.fixed += c.prop_key
                    ptype = prop.get("type", "")
                    ptype = "|".join(map(str, ptype)) if isinstance(ptype, list) else str(ptype)
                    if "enum" in prop:
                        tally.fixed += c.enum_init
                        for item in prop["enum"]:
                            tally.fixed += c.enum_item
                            tally.texts.append(str(item))
                    pdesc = str(prop.get("description") or "").removesuffix(".")
                    tally.texts.append(f"{key}:{ptype}:{pdesc}")
                    self._json(prop, _MODELLED_PROPERTY_KEYS, tally)
            self._json(params, _MODELLED_PARAMETER_KEYS, tally)
        if tools:
            tally.fixed += c.func_end
        if tool_choice == "none" or tool_choice == "required":
            tally.fixed += 1
        elif isinstance(tool_choice, Mapping):
            fn = tool_choice.get("function", tool_choice)
            name = fn.get("name") if isinstance(fn, Mapping) else None
            tally.fixed += 4
            if isinstance(name, str):
                tally.texts.append(name)

    def count_tools(self, tools: Sequence[Mapping[str, Any]], tool_choice: Any = None) -> int:
        """Tokens the tool definitions (and a forced ``tool_choice``) add to a prompt."""
        tally = _Tally()
        self._tools(tools, tool_choice, tally)
        return self._total(tally)

    def _messages(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None,
        tool_choice: Any,
        add_generation_prompt: bool,
    ) -> _Tally:
        if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
            raise InputError("messages must be a non-empty list of {'role': ..., 'content': ...} objects")
        tally = _Tally()
        for i, msg in enumerate(messages):
            if not isinstance(msg, Mapping):
                raise InputError(f"message {i} is not an object")
            tally.fixed += TOKENS_PER_MESSAGE
            for key, value in msg.items():
                self._value(value, tally)
                if key == "name":
                    tally.fixed += TOKENS_PER_NAME
        if add_generation_prompt:
            tally.fixed += REPLY_PRIMING
        if tools:
            self._tools(tools, tool_choice, tally)
        return tally

    def count_messages(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: Any = None,
        add_generation_prompt: bool = True,
        **template_kwargs: Any,
    ) -> int:
        """Prompt tokens as the API reports them (cookbook accounting)."""
        del template_kwargs  # OpenAI models have no client-visible template
        return self._total(self._messages(messages, tools, tool_choice, add_generation_prompt))

    def count_batch(self, items: Sequence[BatchItem]) -> list[int]:
        """Counts in order; every text of every item is counted in one call."""
        tallies: list[_Tally] = []
        for it in items:
            if isinstance(it, str):
                tally = _Tally()
                if it:
                    tally.texts.append(it)
            elif isinstance(it, Mapping) and "messages" in it:
                tally = self._messages(
                    it["messages"],
                    it.get("tools"),
                    it.get("tool_choice"),
                    bool(it.get("add_generation_prompt", True)),
                )
            else:
                raise InputError('a batch item must be a string or an object with "messages"')
            tallies.append(tally)
        lengths = iter(self._lengths([t for tally in tallies for t in tally.texts]))
        return [tally.fixed + sum(next(lengths) for _ in tally.texts) for tally in tallies]


def load_tiktoken(model_or_encoding: str) -> TiktokenCounter:
    """A counter for an OpenAI model name (``gpt-4o``) or a tiktoken encoding name (``o200k_base``)."""
    import tiktoken

    try:
        try:
            enc = tiktoken.encoding_for_model(model_or_encoding)
        except KeyError:
            enc = tiktoken.get_encoding(model_or_encoding)
    except ValueError as exc:
        raise TokenizerLoadError(f"tiktoken knows no model or encoding {model_or_encoding!r}") from exc
    except OSError as exc:  # requests' errors derive from OSError
        cache = os.environ.get("TIKTOKEN_CACHE_DIR", "<tiktoken's default cache>")
        raise TokenizerLoadError(
            f"cannot load tiktoken's files for {model_or_encoding!r} (offline?): put them in "
            f"TIKTOKEN_CACHE_DIR (now {cache}); {exc}"
        ) from exc
    return TiktokenCounter(enc, name=model_or_encoding)
