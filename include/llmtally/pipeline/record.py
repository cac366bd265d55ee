"""The typed usage record the pipeline works on (one parsed line of a raw log)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["UsageRecord"]


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One request's usage, with every field of the raw record contract (:mod:`llmtally._record`).

    ``ts`` is aware and in UTC.  ``source`` and ``line`` say where the record was read.  ``legacy``
    records come from the common recipe's ``<asctime> - {dict}`` lines: they carry only the service's
    own counts (held in ``estimate``) and a cut prompt, so they are never recounted and their estimate
    is also their billed number.
    """

    id: str
    ts: datetime
    source: str = ""
    line: int = 0
    v: int = 1
    service: str | None = None
    host: str | None = None
    pid: int | None = None
    request_id: str | None = None
    endpoint: str | None = None
    model: str | None = None
    messages: Sequence[Any] | None = None
    prompt: str | None = None
    tools: Sequence[Any] | None = None
    tool_choice: Any = None
    template_kwargs: Mapping[str, Any] | None = None
    completion: str | None = None
    reasoning: str | None = None
    tool_calls: Any = None
    choices: Sequence[Mapping[str, Any]] | None = None
    inputs: Sequence[Any] | None = None
    text: str | None = None
    prompt_sha256: str | None = None
    prompt_chars: int | None = None
    completion_chars: int | None = None
    usage: Mapping[str, int | None] | None = None
    estimate: Mapping[str, int | None] | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    latency_ms: float | None = None
    status: str | None = None
    finish_reason: str | None = None
    error: str | None = None
    legacy: bool = False
    http_status: int | None = None

    def _usage(self, key: str) -> int | None:
        return self.usage.get(key) if self.usage else None

    def _estimate(self, key: str) -> int | None:
        return self.estimate.get(key) if self.estimate else None

    @property
    def reported_prompt_tokens(self) -> int | None:
        """Prompt tokens the server reported (``None`` when it reported none)."""
        return self._usage("prompt_tokens")

    @property
    def reported_completion_tokens(self) -> int | None:
        """Completion tokens the server reported."""
        return self._usage("completion_tokens")

    @property
    def cached_tokens(self) -> int:
        """Cached prompt tokens the server reported (0 when not reported)."""
        return self._usage("cached_tokens") or 0

    @property
    def reasoning_tokens(self) -> int:
        """Reasoning tokens the server reported (0 when not reported)."""
        return self._usage("reasoning_tokens") or 0

    @property
    def estimated_prompt_tokens(self) -> int | None:
        """The service's own prompt-token estimate."""
        return self._estimate("prompt_tokens")

    @property
    def estimated_completion_tokens(self) -> int | None:
        """The service's own completion-token estimate."""
        return self._estimate("completion_tokens")

    @property
    def has_prompt_text(self) -> bool:
        """Whether full prompt text is present (``text`` is ``full`` or absent)."""
        if self.legacy or self.text not in (None, "full"):
            return False
        return self.messages is not None or self.prompt is not None or self.inputs is not None

    @property
    def feature(self) -> str:
        """The ``feature`` tag ('' when absent)."""
        return self.tags.get("feature", "")

    @property
    def user_id(self) -> str:
        """The ``user`` (or ``user_id``) tag ('' when absent)."""
        return self.tags.get("user") or self.tags.get("user_id") or ""

    @property
    def tenant(self) -> str:
        """The ``tenant`` tag ('' when absent)."""
        return self.tags.get("tenant", "")
