"""The services' side: record every LLM call's usage without slowing it down.

:class:`UsageLogger` queues records and writes rotated JSON Lines files from a background thread;
:func:`log_token_usage`, :func:`wrap_openai`, :func:`track` / :func:`tags`, :class:`UsageMiddleware`
and the ``transformers`` helpers (:func:`generate_and_log`, :class:`UsageStreamer`, imported on
first use) feed it.  The file format is :mod:`llmtally._record`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._asgi import UsageMiddleware
from ._build import TextPolicy
from ._context import current_tags, tags, track
from ._default import get_default_logger, log_token_usage, set_default_logger
from ._logger import LoggerStats, UsageLogger
from ._openai import response_fields, wrap_openai
from ._sinks import FileSink, MemorySink, Sink, log_file_name

if TYPE_CHECKING:
    from ._transformers import UsageStreamer, generate_and_log

__all__ = [
    "FileSink",
    "LoggerStats",
    "MemorySink",
    "Sink",
    "TextPolicy",
    "UsageLogger",
    "UsageMiddleware",
    "UsageStreamer",
    "current_tags",
    "generate_and_log",
    "get_default_logger",
    "log_file_name",
    "log_token_usage",
    "response_fields",
    "set_default_logger",
    "tags",
    "track",
    "wrap_openai",
]

_LAZY = {"UsageStreamer": "._transformers", "generate_and_log": "._transformers"}


def __getattr__(name: str) -> Any:
    """Import the ``transformers`` helpers on first use (``import llmtally`` stays light)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
