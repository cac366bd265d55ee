"""The non-blocking usage logger: enqueue on the caller's thread, serialise and write on one thread.

The design follows OpenTelemetry's ``BatchProcessor``: a bounded ``deque``; one named daemon thread
woken when a batch is full or the schedule delay passes; ``flush(timeout)``; ``close(timeout)`` that
drains; ``atexit`` registration; re-initialisation in a forked child; arguments validated at
construction.  :meth:`UsageLogger.log` never raises for runtime trouble and never does I/O.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import socket
import sys
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict

from .._config import (
    ENV_LOG_DIR,
    ENV_LOG_MAX_QUEUE,
    ENV_LOG_TEXT,
    ENV_SERVICE,
)
from .._exceptions import ConfigError
from ._build import Pending, TextPolicy, encode_records, new_ids, record_line
from ._context import _tags
from ._report import Reporter
from ._sinks import FileSink, Sink

__all__ = ["LoggerStats", "UsageLogger"]

_log = logging.getLogger("llmtally.logging")

DEFAULT_DIRECTORY = "logs"
_HAND_OVER_S = 0.0005  # longest stretch of writer work between GIL hand-overs


def _hand_over() -> None:
    """Let the host's threads (an event loop) take the GIL between chunks of writer work.

    ``time.sleep(0)`` releases the GIL and really pauses (Linux's ~50 us timer slack), so a thread
    waiting for the GIL gets it; ``os.sched_yield()`` or a shorter pause do not: the writer would
    usually re-take the GIL first and the waiter would stall for the 5 ms switch interval.
    """
    time.sleep(0)


class LoggerStats(TypedDict):
    """Counters of a :class:`UsageLogger` (since construction, or since ``fork`` in a child)."""

    logged: int
    """Calls to :meth:`UsageLogger.log` (accepted or dropped)."""
    written: int
    """Records handed to the sink successfully."""
    dropped: int
    """Records lost: queue full, logger closed, unserialisable, or still unwritten at close."""
    queued: int
    """Records accepted and not yet written (in the queue or in a batch being retried)."""


def _default_service() -> str:
    name = os.environ.get(ENV_SERVICE)
    if name:
        return name
    argv0 = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else ""
    return argv0 if argv0 and argv0 not in ("-c", "-m", "__main__") else "python"


def _positive(name: str, value: float, kind: type = int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"UsageLogger({name}=...) must be a positive number, got {value!r}")
    if kind is int and not isinstance(value, int):
        raise ConfigError(f"UsageLogger({name}=...) must be an integer, got {value!r}")


class UsageLogger:
    """Records LLM usage without slowing the request that logs it.

    ``directory`` defaults to ``$LLMTALLY_LOG_DIR`` (else ``./logs``); ``service`` to
    ``$LLMTALLY_SERVICE`` (else the program name); ``text`` (``full`` | ``hash`` | ``prefix:N``)
    to ``$LLMTALLY_LOG_TEXT`` (else ``full``).  Files are named and rotated as :class:`FileSink`
    describes; pass ``sink=`` to write elsewhere (e.g. :class:`MemorySink` in tests).

    ``max_queue_size`` bounds memory (default ``$LLMTALLY_LOG_MAX_QUEUE`` or 65,536 records): when
    full, :meth:`log` drops the record, counts it and warns once.  ``max_batch_size`` records wake the
    writer early; otherwise it writes every ``schedule_delay`` seconds.  ``tags`` are added to every
    record (request tags from :func:`llmtally.tags` override them).  ``retention_days`` deletes this
    service's own log files not written to for that long (raw logs hold prompts: keep them short).

    Use one logger per process and service; it is thread-safe and ``async``-safe, closes at exit
    and starts afresh in a forked child (records queued before the fork stay the parent's).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        service: str | None = None,
        *,
        text: str | None = None,
        tags: Mapping[str, Any] | None = None,
        max_queue_size: int | None = None,
        max_batch_size: int = 2048,
        schedule_delay: float = 1.0,
        max_file_bytes: int = 64 * 1024 * 1024,
        rotate_seconds: float = 3600.0,
        retention_days: float | None = None,
        sink: Sink | None = None,
    ) -> None:
        if max_queue_size is None:
            env = os.environ.get(ENV_LOG_MAX_QUEUE)
            try:
                max_queue_size = int(env) if env else 65536
            except ValueError:
                raise ConfigError(f"{ENV_LOG_MAX_QUEUE}={env!r} must be an integer") from None
        _positive("max_queue_size", max_queue_size)
        _positive("max_batch_size", max_batch_size)
        _positive("schedule_delay", schedule_delay, float)
        if max_batch_size > max_queue_size:
            raise ConfigError(
                f"UsageLogger(max_batch_size={max_batch_size}) "
                f"must not exceed max_queue_size={max_queue_size}"
            )
        self.service = service or _default_service()
        self.policy = TextPolicy.parse(text if text is not None else os.environ.get(ENV_LOG_TEXT))
        if sink is None:
            self.directory: Path | None = Path(directory or os.environ.get(ENV_LOG_DIR) or DEFAULT_DIRECTORY)
            sink = FileSink(
                self.directory,
                self.service,
                max_bytes=max_file_bytes,
                rotate_seconds=rotate_seconds,
                retention_days=retention_days,
            )
        else:
            self.directory = Path(directory) if directory is not None else None
        self.sink = sink
        self.default_tags = {str(k): str(v) for k, v in (tags or {}).items()}
        self.host = getattr(sink, "host", None) or socket.gethostname().split(".")[0]
        self.max_queue_size = max_queue_size
        self.max_batch_size = max_batch_size
        self.schedule_delay = float(schedule_delay)
        self._init_state()
        atexit.register(self._at_exit)
        ref = weakref.ref(self)

        def _after_fork() -> None:
            logger = ref()
            if logger is not None:
                logger._after_fork_in_child()

        os.register_at_fork(after_in_child=_after_fork)

    # -- state ---------------------------------------------------------------------------------

    def _init_state(self) -> None:
        self.pid = os.getpid()
        self._queue: collections.deque[Pending] = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # counters and the queue's consumer side
        self._export_lock = threading.Lock()  # one writer at a time (thread, flush, close)
        self._enqueue_dropped = 0  # queue full or closed
        self._later_dropped = 0  # unbuildable, unserialisable, or unwritten at close
        self._taken = 0
        self._written = 0
        self._retry: tuple[bytes, int] | None = None
        self._closed = False
        self._warned_full = False
        self._report = Reporter(_log)
        self._thread = threading.Thread(
            target=self._run, name=f"llmtally-usage-writer-{self.service}", daemon=True
        )
        self._thread.start()

    def _after_fork_in_child(self) -> None:
        if not self._closed:
            self._init_state()

    # -- the hot path ----------------------------------------------------------------------------

    def log(
        self,
        *,
        model: str | None = None,
        messages: Any = None,
        prompt: str | None = None,
        completion: str | None = None,
        tools: Any = None,
        usage: Any = None,
        estimate: Any = None,
        tags: Mapping[str, Any] | None = None,
        ts: Any = None,
        latency_ms: float | None = None,
        status: str = "ok",
        request_id: str | None = None,
        **fields: Any,
    ) -> None:
        """Queue one usage record; returns at once (no serialising, tokenizing or I/O here).

        ``usage`` is what the LLM server reported (an SDK object or dict, any provider's names);
        ``estimate`` what the service itself believed (``{"prompt_tokens", "completion_tokens"}``).
        ``ts`` (request start: ``datetime``, epoch seconds or ISO string) defaults to now minus
        ``latency_ms``.  Extra keyword ``fields`` are kept as record keys (``endpoint``,
        ``finish_reason``, ``reasoning``, ``tool_calls``, ``tool_choice``, ``template_kwargs``,
        ``error``; see :mod:`llmtally._record`).  The ``messages`` list is copied (shallowly):
        appending to it afterwards is safe, mutating its message dicts is not.

        Never raises for runtime trouble: when the queue is full or the logger is closed, the
        record is dropped and counted (``stats()["dropped"]``), with one warning.
        """
        queue = self._queue
        if len(queue) >= self.max_queue_size or self._closed:
            self._drop()
            return
        if messages.__class__ is list:
            messages = messages.copy()
        queue.append(
            Pending(
                time.time(), ts, model, messages, prompt, completion, tools, usage, estimate,
                tags, _tags.get(), latency_ms, status, request_id, fields,
            )
        )  # fmt: skip
        if len(queue) >= self.max_batch_size and not self._wake.is_set():
            self._wake.set()

    def _drop(self) -> None:
        with self._lock:
            self._enqueue_dropped += 1
            first = not self._warned_full
            self._warned_full = True
        if first:
            why = "is closed" if self._closed else f"is full ({self.max_queue_size} records)"
            _log.warning(
                "llmtally usage logger %r %s: dropping records (counted in stats()['dropped']); "
                "the disk may be slow or the service logs faster than it can write",
                self.service,
                why,
            )

    # -- the writer --------------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = self.schedule_delay
        while not self._closed:
            self._wake.wait(self.schedule_delay)
            self._wake.clear()
            if self._closed:
                break
            with self._export_lock:
                ok = self._export(deadline=None)
            if ok:
                backoff = self.schedule_delay
            else:  # the sink failed: retry the same batch later, without spinning
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _take(self, n: int) -> list[Pending]:
        queue = self._queue
        with self._lock:
            k = min(n, len(queue))
            batch = [queue.popleft() for _ in range(k)]
            self._taken += k
        return batch

    def _export(self, deadline: float | None) -> bool:
        """Write everything queued now (caller holds the export lock); False if not all written."""
        if self._retry is not None and not self._write(*self._retry):
            return False
        while self._queue:
            if deadline is not None and time.monotonic() > deadline:
                return False
            batch = self._take(self.max_batch_size)
            if not batch:
                break
            data, count = self._serialise(batch)
            if count and not self._write(data, count):
                return False
        return True

    def _serialise(self, batch: list[Pending]) -> tuple[bytes, int]:
        """Build and encode a batch in small chunks, handing the GIL over between chunks."""
        chunks: list[bytes] = []
        lines: list[str] = []
        records: list[dict[str, Any]] = []
        written = 0
        perf_counter = time.perf_counter
        next_hand_over = perf_counter() + _HAND_OVER_S
        for rid, p in zip(new_ids(len(batch)), batch, strict=True):
            if self.default_tags:
                p = p._replace(context_tags={**self.default_tags, **p.context_tags})
            try:
                line, rec = record_line(
                    p, rid=rid, service=self.service, host=self.host, pid=self.pid, policy=self.policy
                )
            except Exception as exc:  # unbuildable or unserialisable (e.g. a circular reference)
                self._report.error("build", exc, "a usage record could not be serialised; dropped")
                continue
            lines.append(line)
            records.append(rec)
            if perf_counter() >= next_hand_over:
                written += self._encode_chunk(lines, records, chunks)
                _hand_over()
                next_hand_over = perf_counter() + _HAND_OVER_S
        written += self._encode_chunk(lines, records, chunks)
        bad = len(batch) - written
        if bad:
            with self._lock:
                self._later_dropped += bad
        return b"".join(chunks), written

    @staticmethod
    def _encode_chunk(lines: list[str], records: list[dict[str, Any]], chunks: list[bytes]) -> int:
        n = len(lines)
        if n:
            try:
                chunks.append(("\n".join(lines) + "\n").encode("utf-8"))
            except UnicodeEncodeError:  # lone surrogates: write these records with \u escapes
                chunks.append(encode_records(records))
            lines.clear()
            records.clear()
        return n

    def _write(self, data: bytes, count: int) -> bool:
        try:
            self.sink.write_batch(data, count)
        except Exception as exc:
            self._retry = (data, count)
            self._report.error("write", exc, "usage records could not be written; will retry")
            return False
        self._retry = None
        with self._lock:
            self._written += count
        return True

    # -- lifecycle -------------------------------------------------------------------------------

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Write everything logged so far; True when all of it was written within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._export_lock.acquire(timeout=-1 if timeout is None else max(timeout, 0.0)):
            return False
        try:
            return self._export(deadline)
        finally:
            self._export_lock.release()

    def close(self, timeout: float | None = 30.0) -> bool:
        """Stop the writer after writing what is queued; True when nothing was lost.

        Idempotent.  Records still unwritten after ``timeout`` are counted as dropped.  Registered
        with :mod:`atexit`; later :meth:`log` calls drop (and count) their records.
        """
        if self._closed:
            return self.stats()["queued"] == 0
        self._closed = True
        atexit.unregister(self._at_exit)
        self._stop.set()
        self._wake.set()
        start = time.monotonic()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
        left = None if timeout is None else max(0.0, timeout - (time.monotonic() - start))
        ok = self.flush(left)
        if not ok:
            with self._lock:
                lost = len(self._queue)
                self._queue.clear()
                self._taken += lost
                if self._retry is not None:
                    lost += self._retry[1]
                    self._retry = None
                self._later_dropped += lost
            _log.warning("llmtally usage logger %r: %d records not written at close", self.service, lost)
        if self._export_lock.acquire(timeout=0 if not ok else -1):
            try:
                self.sink.close()
            except Exception as exc:
                self._report.error("close", exc, "closing the usage log failed")
            finally:
                self._export_lock.release()
        return ok

    def _at_exit(self) -> None:
        self.close(timeout=5.0)

    def stats(self) -> LoggerStats:
        """Counters ``logged``, ``written``, ``dropped``, ``queued``.

        ``logged == written + dropped + queued`` always holds.
        """
        with self._lock:
            queued = len(self._queue)
            taken, written = self._taken, self._written
            dropped_now, dropped_later = self._enqueue_dropped, self._later_dropped
        return LoggerStats(
            logged=taken + queued + dropped_now,
            written=written,
            dropped=dropped_now + dropped_later,
            queued=queued + taken - written - dropped_later,
        )

    def __enter__(self) -> UsageLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.directory if self.directory is not None else type(self.sink).__name__
        return f"<UsageLogger service={self.service!r} to {where}>"
