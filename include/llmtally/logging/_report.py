"""Duplicate-suppressed error reporting for the writer thread (never raises)."""

from __future__ import annotations

import logging
import threading
import time

__all__ = ["Reporter"]


class Reporter:
    """Logs an error the first time it is seen, then at most once per ``interval`` with a count.

    Errors are keyed by where they happened and the exception's type (and ``errno``), so a full disk
    logs one line a minute rather than one per batch.
    """

    def __init__(self, log: logging.Logger, interval: float = 60.0) -> None:
        self.log = log
        self.interval = interval
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str, object], tuple[float, int]] = {}

    def error(self, where: str, exc: BaseException, message: str) -> None:
        """Report ``exc`` raised while doing ``where`` (suppressing repeats)."""
        try:
            key = (where, type(exc).__name__, getattr(exc, "errno", None))
            now = time.monotonic()
            with self._lock:
                last, repeats = self._seen.get(key, (-1e18, 0))
                if now - last < self.interval:
                    self._seen[key] = (last, repeats + 1)
                    return
                self._seen[key] = (now, 0)
            more = f" (and {repeats} more like it since)" if repeats else ""
            self.log.error("llmtally: %s: %s: %s%s", message, type(exc).__name__, exc, more)
        except Exception:  # reporting must never break the writer
            pass
