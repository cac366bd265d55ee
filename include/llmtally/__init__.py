"""llmtally: exact LLM token accounting.

Services log usage with :class:`UsageLogger` (or :func:`wrap_openai`, :func:`track`, :func:`tags`);
the Airflow pipeline recounts every record with :func:`load_tokenizer`'s counters, reconciles,
loads aggregates into PostgreSQL and reports.  ``import llmtally`` stays light: submodules that
need optional packages are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._exceptions import (
    ConfigError,
    DataQualityError,
    DeliveryError,
    FinalDayError,
    InputError,
    LessEvidenceError,
    LlmtallyError,
    StorageError,
    TemplateError,
    TokenizerError,
    TokenizerLoadError,
    UnknownModelError,
)
from .logging import UsageLogger, UsageMiddleware, log_token_usage, tags, track, wrap_openai

if TYPE_CHECKING:
    from .tokens import TokenCounter, load_tokenizer

# Counting pulls in the `tokenizers` library; a service that only logs never needs it.
_LAZY = {"TokenCounter": ".tokens", "load_tokenizer": ".tokens"}

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataQualityError",
    "DeliveryError",
    "FinalDayError",
    "InputError",
    "LessEvidenceError",
    "LlmtallyError",
    "StorageError",
    "TemplateError",
    "TokenCounter",
    "TokenizerError",
    "TokenizerLoadError",
    "UnknownModelError",
    "UsageLogger",
    "UsageMiddleware",
    "__version__",
    "load_tokenizer",
    "log_token_usage",
    "tags",
    "track",
    "wrap_openai",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'llmtally' has no attribute {name!r}")
