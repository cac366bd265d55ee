"""Counters for OpenAI models, on tiktoken.

Text is counted with ``encode_ordinary`` (special-token look-alikes in user text are plain text, as
the API treats them).  Chats follow the API's own accounting as published in OpenAI's cookbook
("How to count tokens with tiktoken"): 3 tokens per message, 1 per ``name``, 3 to prime the reply;
legacy ``function`` messages and assistant ``function_call`` as measured by open projects.  Tool
definitions are rendered as the API renders them (:mod:`._openai_tools`) and counted with their
overhead: the block joins the request's first system message (which gains a trailing newline) or
comes in a system message of its own.  The constants below were fitted to the published API counts
in ``tests/tokens/data/openai_tools_fixtures.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._exceptions import InputError, TokenizerLoadError
from ._base import BatchItem
from ._openai_tools import tool_prompt

__all__ = ["TiktokenCounter", "load_tiktoken"]

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
IMAGE_PART_TOKENS = 85  # a low-detail image; high detail costs more and is not modelled
FUNCTION_MESSAGE = -2  # a role "function" message costs two tokens less than its parts
FUNCTION_CALL = 3  # an assistant's legacy function_call: 3 plus its name and arguments
TOOLS_OWN_SYSTEM = 9  # the tools block in a system message of its own, beyond the block's text
TOOLS_IN_SYSTEM = 5  # the tools block appended to the request's first system message
CHOICE_NONE = 1  # tool_choice / function_call "none"
FORCED_TOOL = 7  # tool_choice {"type": "function", "function": {"name": ...}}: 7 plus the name
FORCED_FUNCTION = 4  # legacy function_call {"name": ...}: 4 plus the name
_TOOL_CACHE_SIZE = 1024


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
        self._tool_cache: dict[str, tuple[int, int]] = {}
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

    def _definitions(self, tools: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
        """Tokens of the tools block's text (the larger layout) and of the longest function name."""
        key = json.dumps(tools, ensure_ascii=False, separators=(",", ":"), default=str)
        hit = self._tool_cache.get(key)
        if hit is not None:
            return hit
        prompt = tool_prompt(tools)
        layouts = self._lengths(list(prompt.layouts))
        names = self._lengths(list(prompt.names))
        result = (max(layouts, default=0) + sum(self._lengths(list(prompt.extras))), max(names, default=0))
        if len(self._tool_cache) >= _TOOL_CACHE_SIZE:
            self._tool_cache.clear()
        self._tool_cache[key] = result
        return result

    def _tools(
        self, tools: Sequence[Mapping[str, Any]], tool_choice: Any, joined: bool, tally: _Tally
    ) -> None:
        text, longest = self._definitions(tools)
        tally.fixed += text + (TOOLS_IN_SYSTEM if joined else TOOLS_OWN_SYSTEM)
        if tool_choice is None or tool_choice == "auto":
            return
        if tool_choice == "none":
            tally.fixed += CHOICE_NONE
            return
        if isinstance(tool_choice, Mapping):
            fn = tool_choice.get("function", tool_choice)
            name = fn.get("name") if isinstance(fn, Mapping) else None
            if isinstance(name, str) and name:
                tally.fixed += FORCED_FUNCTION if fn is tool_choice and "type" not in fn else FORCED_TOOL
                tally.texts.append(name)
                return
        # "required" and other choices: no published count; counted as forcing the longest name
        tally.fixed += FORCED_TOOL + longest

    def count_tools(self, tools: Sequence[Mapping[str, Any]], tool_choice: Any = None) -> int:
        """Tokens the tool definitions and ``tool_choice`` add to a prompt without a system message
        (the block comes in one of its own).  With a system message the block joins it and costs
        ``TOOLS_OWN_SYSTEM - TOOLS_IN_SYSTEM`` tokens less, plus the newline that message gains."""
        tally = _Tally()
        if tools:
            self._tools(tools, tool_choice, False, tally)
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
        joined = False  # the tools block joins the first system message, which gains a newline
        for i, msg in enumerate(messages):
            if not isinstance(msg, Mapping):
                raise InputError(f"message {i} is not an object")
            tally.fixed += TOKENS_PER_MESSAGE
            pad = bool(tools) and not joined and msg.get("role") == "system"
            for key, value in msg.items():
                if key == "function_call" and isinstance(value, Mapping):
                    tally.fixed += FUNCTION_CALL
                    tally.texts += [
                        v for v in (value.get("name"), value.get("arguments")) if isinstance(v, str)
                    ]
                    continue
                if pad and key == "content" and isinstance(value, str):
                    value, pad = value + "\n", False
                self._value(value, tally)
                if key == "name":
                    tally.fixed += TOKENS_PER_NAME
            if pad:  # content missing or in parts: the newline on its own
                tally.texts.append("\n")
            if msg.get("role") == "function":
                tally.fixed += FUNCTION_MESSAGE
            joined = joined or (bool(tools) and msg.get("role") == "system")
        if add_generation_prompt:
            tally.fixed += REPLY_PRIMING
        if tools:
            self._tools(tools, tool_choice, joined, tally)
        return tally

    def count_messages(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: Any = None,
        add_generation_prompt: bool = True,
        **template_kwargs: Any,
    ) -> int:
        """Prompt tokens as the API reports them; ``functions=`` and ``function_call=`` (the legacy
        parameters) are taken where ``tools`` and ``tool_choice`` are not given."""
        if tools is None:
            tools = template_kwargs.get("functions")
        if tool_choice is None:
            tool_choice = template_kwargs.get("function_call")
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
                tools = it.get("tools")
                choice = it.get("tool_choice")
                tally = self._messages(
                    it["messages"],
                    it.get("functions") if tools is None else tools,
                    it.get("function_call") if choice is None else choice,
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
