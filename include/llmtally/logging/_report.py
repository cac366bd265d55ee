"""Rate-limited reporting for the logger (never raises), and how a lost record's reason is named."""

from __future__ import annotations

import errno
import logging
import threading
import time

__all__ = ["Reporter", "loss_reason"]

_FULL = frozenset(code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if code is not None)


def loss_reason(exc: BaseException) -> str:
    """The ``reason`` of a loss marker for records a sink error kept from being written.

    ``disk full`` (``ENOSPC``, ``EDQUOT``), ``read-only`` (``EROFS``), else ``write error: <name>``
    with the errno's name (``EACCES``, ``ENOTDIR``, ...) or, without an errno, the exception's class.
    """
    code = getattr(exc, "errno", None)
    if code in _FULL:
        return "disk full"
    if code == errno.EROFS:
        return "read-only"
    if isinstance(code, int) and code in errno.errorcode:
        return f"write error: {errno.errorcode[code]}"
    return f"write error: {type(exc).__name__}"


class Reporter:
    """Logs an event the first time it is seen, then at most once per ``interval`` with a count.

    Errors are keyed by where they happened and the exception's type (and ``errno``), warnings by
    their key, so a full disk logs one line a minute while it lasts rather than one per batch.
    """

    def __init__(self, log: logging.Logger, interval: float = 60.0) -> None:
        self.log = log
        self.interval = interval
        self._lock = threading.Lock()
        self._seen: dict[tuple[object, ...], tuple[float, int]] = {}

    def _due(self, key: tuple[object, ...]) -> int | None:
        """Suppressed repeats since the last report when ``key`` is due now, else ``None``."""
        now = time.monotonic()
        with self._lock:
            last, repeats = self._seen.get(key, (-1e18, 0))
            if now - last < self.interval:
                self._seen[key] = (last, repeats + 1)
                return None
            self._seen[key] = (now, 0)
        return repeats

    def error(self, where: str, exc: BaseException, message: str) -> None:
        """Report ``exc`` raised while doing ``where`` (suppressing repeats)."""
        try:
            repeats = self._due((where, type(exc).__name__, getattr(exc, "errno", None)))
            if repeats is not None:
                more = f" (and {repeats} more like it since)" if repeats else ""
                self.log.error("llmtally: %s: %s: %s%s", message, type(exc).__name__, exc, more)
        except Exception:  # reporting must never break the writer
            pass

    def warn(self, key: str, message: str, *args: object) -> None:
        """Log ``message % args`` as a warning (suppressing repeats of ``key``; formatted only when
        logged, so a hot path can call this for every event)."""
        try:
            repeats = self._due(("warn", key))
            if repeats is not None:
                more = f" (and {repeats} more like it since)" if repeats else ""
                self.log.warning("llmtally: " + message + "%s", *args, more)
        except Exception:
            pass
