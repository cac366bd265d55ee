"""The counter protocol every tokenizer backend implements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeAlias, runtime_checkable

__all__ = ["BatchItem", "ChatItem", "ReplyRenderer", "TokenCounter"]

ChatItem: TypeAlias = Mapping[str, Any]
"""``{"messages": [...], "tools": [...]?, "tool_choice": ...?, "add_generation_prompt": bool?,
"template_kwargs": {...}?}``."""

BatchItem: TypeAlias = str | ChatItem
"""A plain text (counted without special tokens) or a chat (counted as the server bills the prompt)."""


@runtime_checkable
class TokenCounter(Protocol):
    """Counts tokens exactly as one model's serving engine does."""

    @property
    def name(self) -> str:
        """The source this counter was loaded from (folder, repo id or model name)."""
        ...

    @property
    def fingerprint(self) -> str:
        """Stable hash of the tokenizer files and chat template (16 hex chars)."""
        ...

    @property
    def counts_stop_token(self) -> bool:
        """Whether the server's ``completion_tokens`` include the stop token it generated."""
        ...

    def count(self, text: str, *, add_special_tokens: bool = False) -> int:
        """Tokens of ``text`` (added tokens in the text still parse); ``add_special_tokens`` also
        counts what the tokenizer adds around a raw prompt (e.g. BOS)."""
        ...

    def count_messages(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: Any = None,
        add_generation_prompt: bool = True,
        **template_kwargs: Any,
    ) -> int:
        """The prompt tokens a server bills for this chat request."""
        ...

    def count_batch(self, items: Sequence[BatchItem]) -> list[int]:
        """Counts of many texts and chats at once, in order, using all cores."""
        ...


@runtime_checkable
class ReplyRenderer(Protocol):
    """A counter that rebuilds the text a model generated for a reply split into ``content``,
    ``reasoning`` and ``tool_calls`` (Hugging Face counters, with their chat template)."""

    def generated_text(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        content: str | None = None,
        reasoning: str | None = None,
        tool_calls: Any = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        **template_kwargs: Any,
    ) -> str:
        """The generated text, without its end-of-turn token."""
        ...
