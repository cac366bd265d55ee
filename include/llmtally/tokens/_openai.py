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
from collections.abc import Mapping, Sequence
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


class TiktokenCounter:
    """Counts as the OpenAI API bills, for one tiktoken encoding."""

    def __init__(self, encoding: Any, *, name: str) -> None:
        self._enc = encoding
        self._name = name
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
    def fingerprint(self) -> str:
        """Hash of the encoding's identity."""
        return self._fingerprint

    def count(self, text: str, *, add_special_tokens: bool = False) -> int:
        """Tokens of ``text``; special-token look-alikes count as plain text (OpenAI adds none)."""
        del add_special_tokens
        if not isinstance(text, str):
            raise InputError(f"text must be a string, not {type(text).__name__}")
        return len(self._enc.encode_ordinary(text)) if text else 0

    def _value_tokens(self, value: Any) -> int:
        if value is None:
            return 0
        if isinstance(value, str):
            return self.count(value)
        if isinstance(value, list):  # content parts
            total = 0
            for part in value:
                if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                    total += self.count(part["text"])
                elif isinstance(part, Mapping) and part.get("type") in ("image_url", "input_image"):
                    total += IMAGE_PART_TOKENS
                else:
                    total += self.count(json.dumps(part, ensure_ascii=False))
            return total
        return self.count(json.dumps(value, ensure_ascii=False, separators=(",", ":")))

    def _json_tokens(self, value: Mapping[str, Any], skip: frozenset[str]) -> int:
        extra = {k: v for k, v in value.items() if k not in skip}
        return self.count(json.dumps(extra, ensure_ascii=False)) if extra else 0

    def count_tools(self, tools: Sequence[Mapping[str, Any]], tool_choice: Any = None) -> int:
        """Tokens the tool definitions (and a forced ``tool_choice``) add to a prompt."""
        c = self._costs
        total = 0
        for tool in tools:
            fn = tool.get("function", tool) if isinstance(tool, Mapping) else None
            if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
                raise InputError('each tool needs {"type": "function", "function": {"name": ...}}')
            total += c.func_init
            desc = str(fn.get("description") or "")
            total += self.count(fn["name"] + ":" + desc.removesuffix("."))
            total += self._json_tokens(fn, _MODELLED_FUNCTION_KEYS)
            params = fn.get("parameters") or {}
            props = params.get("properties") or {}
            if props:
                total += c.prop_init
                for key, prop in props.items():
                    prop = prop if isinstance(prop, Mapping) else {}
                    total += c.prop_key
                    ptype = prop.get("type", "")
                    ptype = "|".join(map(str, ptype)) if isinstance(ptype, list) else str(ptype)
                    if "enum" in prop:
                        total += c.enum_init
                        for item in prop["enum"]:
                            total += c.enum_item + self.count(str(item))
                    pdesc = str(prop.get("description") or "").removesuffix(".")
                    total += self.count(f"{key}:{ptype}:{pdesc}")
                    total += self._json_tokens(prop, _MODELLED_PROPERTY_KEYS)
            total += self._json_tokens(params, _MODELLED_PARAMETER_KEYS)
        if tools:
            total += c.func_end
        if tool_choice == "none" or tool_choice == "required":
            total += 1
        elif isinstance(tool_choice, Mapping):
            fn = tool_choice.get("function", tool_choice)
            name = fn.get("name") if isinstance(fn, Mapping) else None
            total += 4 + (self.count(name) if isinstance(name, str) else 0)
        return total

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
        if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
            raise InputError("messages must be a non-empty list of {'role': ..., 'content': ...} objects")
        total = 0
        for i, msg in enumerate(messages):
            if not isinstance(msg, Mapping):
                raise InputError(f"message {i} is not an object")
            total += TOKENS_PER_MESSAGE
            for key, value in msg.items():
                total += self._value_tokens(value)
                if key == "name":
                    total += TOKENS_PER_NAME
        if add_generation_prompt:
            total += REPLY_PRIMING
        if tools:
            total += self.count_tools(tools, tool_choice)
        return total

    def count_batch(self, items: Sequence[BatchItem]) -> list[int]:
        """Counts in order; plain texts are encoded on all cores."""
        counts = [0] * len(items)
        text_idx = [i for i, it in enumerate(items) if isinstance(it, str)]
        if text_idx:
            texts = [items[i] for i in text_idx]
            encoded = self._enc.encode_ordinary_batch(texts, num_threads=os.cpu_count() or 1)
            for i, ids in zip(text_idx, encoded, strict=True):
                counts[i] = len(ids)
        for i, it in enumerate(items):
            if isinstance(it, str):
                continue
            if not isinstance(it, Mapping) or "messages" not in it:
                raise InputError('a batch item must be a string or an object with "messages"')
            counts[i] = self.count_messages(
                it["messages"],
                tools=it.get("tools"),
                tool_choice=it.get("tool_choice"),
                add_generation_prompt=bool(it.get("add_generation_prompt", True)),
            )
        return counts


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
