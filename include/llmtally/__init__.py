"""llmtally: exact LLM token accounting.

Services log usage with :class:`UsageLogger` (or :func:`wrap_openai`, :func:`track`, :func:`tags`);
the Airflow pipeline recounts every record with :func:`load_tokenizer`'s counters, reconciles,
loads aggregates into PostgreSQL and reports.  ``import llmtally`` stays light: submodules that
need optional packages are imported on first use.
"""

from __future__ import annotations

from ._exceptions import (
    ConfigError,
    DataQualityError,
    DeliveryError,
    InputError,
    LlmtallyError,
    StorageError,
    TemplateError,
    TokenizerError,
    TokenizerLoadError,
    UnknownModelError,
)
from .logging import UsageLogger, UsageMiddleware, log_token_usage, tags, track, wrap_openai
from .tokens import TokenCounter, load_tokenizer

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataQualityError",
    "DeliveryError",
    "InputError",
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
