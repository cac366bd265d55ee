"""The one exception tree of llmtally.

Every error the library raises on purpose derives from :class:`LlmtallyError`::

    LlmtallyError
    ├── ConfigError (ValueError)              bad llmtally.toml / environment / arguments
    ├── TokenizerError
    │   ├── UnknownModelError (KeyError)      no tokenizer is known for a model name
    │   ├── TokenizerLoadError                files missing, broken, or not fetchable offline
    │   └── TemplateError                     the chat template failed to render
    ├── InputError (ValueError)               a record / JSON line / message list is malformed
    ├── StorageError                          the database failed (driver errors mapped here)
    ├── DataQualityError                      a post-load check found inconsistent aggregates
    │   ├── LessEvidenceError                 a re-run found fewer records/files: the day was kept
    │   └── FinalDayError                     a provisional load met a final day or a later cut: kept
    └── DeliveryError                         a report or an alert could not be sent
        └── TransientDeliveryError            (llmtally.alerts) worth a retry: timeout, 429, 5xx

Messages say what to do next.  Lookup misses subclass ``KeyError`` and bad arguments
``ValueError`` so callers that already catch those keep working.
"""

from __future__ import annotations

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
    "TokenizerError",
    "TokenizerLoadError",
    "UnknownModelError",
]


class LlmtallyError(Exception):
    """Root of every error llmtally raises on purpose."""


class ConfigError(LlmtallyError, ValueError):
    """Configuration (llmtally.toml, environment, arguments) is invalid."""


class TokenizerError(LlmtallyError):
    """A tokenizer could not be resolved, loaded or applied."""


class UnknownModelError(TokenizerError, KeyError):
    """No tokenizer is known for a model name."""

    def __init__(self, model: str, hint: str | None = None) -> None:
        self.model = model
        msg = (
            f"no tokenizer is known for model {model!r}; point at one with "
            f'`[models."{model}"] tokenizer = "/path/to/hf-folder" | "org/repo-id" | "gpt-4o"` '
            "in llmtally.toml (LLMTALLY_CONFIG), or pass --tokenizer DIR_OR_REPO"
        )
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class TokenizerLoadError(TokenizerError):
    """Tokenizer files are missing or broken, or cannot be fetched."""


class TemplateError(TokenizerError):
    """A chat template raised or could not be compiled."""


class InputError(LlmtallyError, ValueError):
    """Input data (a JSON line, a record, a message list) is malformed."""

    def __init__(self, message: str, *, line: int | None = None, source: str | None = None) -> None:
        self.line = line
        self.source = source
        where = ""
        if source is not None:
            where += f"{source}:"
        if line is not None:
            where += f"line {line}: "
        elif where:
            where += " "
        super().__init__(where + message)


class StorageError(LlmtallyError):
    """The aggregate store failed; the driver's error is chained as ``__cause__``."""


class DataQualityError(LlmtallyError):
    """Loaded aggregates failed a consistency check."""


class DeliveryError(LlmtallyError):
    """A report could not be delivered."""


class LessEvidenceError(DataQualityError):
    """A re-run found fewer records or files than the day already holds; the day was kept.

    Raised by :meth:`UsageStore.load_day` unless forced; the message says what is missing and how
    to force the replacement.
    """


class FinalDayError(DataQualityError):
    """A provisional (intraday) load met a day the daily run already loaded as final, or one an
    intraday run cut later; the day was kept.  Raised by :meth:`UsageStore.load_day` whatever
    ``force`` says: only a final load replaces a final day, only a later cut a provisional one."""
