"""The process-wide default logger and the common recipe's drop-in :func:`log_token_usage`."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from ._logger import UsageLogger

__all__ = ["get_default_logger", "log_token_usage", "set_default_logger"]

_lock = threading.Lock()
_default: UsageLogger | None = None


def get_default_logger() -> UsageLogger:
    """The default :class:`UsageLogger`, created on first use from the environment.

    ``LLMTALLY_LOG_DIR``, ``LLMTALLY_SERVICE`` and ``LLMTALLY_LOG_TEXT`` configure it.  A closed
    default logger is replaced by a fresh one.
    """
    global _default
    logger = _default
    if logger is not None and not logger._closed:
        return logger
    with _lock:
        if _default is None or _default._closed:
            _default = UsageLogger()
        return _default


def set_default_logger(logger: UsageLogger | None) -> UsageLogger | None:
    """Make ``logger`` the default (``None``: create one from the environment on next use).

    Returns the previous default, which is not closed.
    """
    global _default
    with _lock:
        previous, _default = _default, logger
    return previous


def log_token_usage(prompt: Any, response: Any, **fields: Any) -> None:
    """The common recipe's ``log_token_usage(prompt, response)``, without its cost.

    ``prompt`` is the prompt text or a chat message list; ``response`` the generated text (or an
    OpenAI-style response object, whose text and ``usage`` are taken).  Keyword ``fields`` go to
    :meth:`UsageLogger.log` (``model=``, ``usage=``, ``estimate=``, ``latency_ms=``, ``tags=``,
    ``logger=`` to use another logger…).  Nothing is counted here; the pipeline recounts exactly.
    """
    logger = fields.pop("logger", None) or get_default_logger()
    if isinstance(prompt, Sequence) and not isinstance(prompt, str):
        fields.setdefault("messages", prompt)
    else:
        fields.setdefault("prompt", prompt if prompt is None or isinstance(prompt, str) else str(prompt))
    if response is None or isinstance(response, str):
        fields.setdefault("completion", response)
    else:
        from ._openai import response_fields

        for key, value in response_fields(response).items():
            fields.setdefault(key, value)
    logger.log(**fields)
