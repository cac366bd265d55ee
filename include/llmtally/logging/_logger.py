"""The non-blocking usage logger: enqueue on the caller's thread, serialise and write on one thread.

The design follows OpenTelemetry's ``BatchProcessor``: a bounded ``deque``; one named daemon thread
woken when a batch is full or the schedule delay passes; ``flush(timeout)``; ``close(timeout)`` that
drains; ``atexit`` registration; re-initialisation in a forked child; arguments validated at
construction.  :meth:`UsageLogger.log` never raises for runtime trouble and does no I/O while the
queue has room.

Unlike OTel it does not drop by default (a usage record is a bill): a full queue hands the record to
the caller's thread, which builds and serialises it itself into a bounded *spill* of whole lines,
written by the caller that fills it or with the writer's next batch (``on_full="write"``).  Whatever
is still lost — the
``drop`` policy, a failing sink beyond the queue's bound, records unwritten at close — is counted
and written into the same log as a *loss marker* (:mod:`llmtally._record`) as soon as the sink
accepts writes again, so the pipeline and the report see it.
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
    ENV_LOG_ON_FULL,
    ENV_LOG_TEXT,
    ENV_SERVICE,
)
from .._exceptions import ConfigError
from ._build import Pending, TextPolicy, loss_line, new_ids, record_line
from ._context import _tags
from ._report import Reporter, loss_reason
from ._sinks import FileSink, Sink

__all__ = ["ON_FULL", "LoggerStats", "UsageLogger"]

_log = logging.getLogger("llmtally.logging")

DEFAULT_DIRECTORY = "logs"
ON_FULL = ("write", "drop", "block")
"""What :meth:`UsageLogger.log` does when the queue is full (see :class:`UsageLogger`)."""
_HAND_OVER_S = 0.0005  # longest stretch of writer work between GIL hand-overs
_HAND_OVER_BUSY_S = 0.0001  # ... while a caller writes records itself (the queue is full)
_SPILL_BYTES = 1024 * 1024  # callers that find the queue full write their records this many bytes at a time
_MAX_BACKOFF_S = 30.0
QUEUE_FULL = "queue full"
UNWRITTEN = "unwritten at exit"
UNSERIALISABLE = "unserialisable record"
CLOSED = "logger closed"  # counted, never a marker: nothing writes after close


_new_pending = tuple.__new__  # Pending(...) without its Python-level __new__: ~0.2 us less per log()


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
    """Calls to :meth:`UsageLogger.log` (accepted or lost)."""
    written: int
    """Records handed to the sink successfully (by the writer, or by a caller when the queue was full)."""
    dropped: int
    """Records lost: ``on_full="drop"``, a failing sink beyond the queue's bound, unserialisable,
    logged after close, or still unwritten at close.  All but the ``after close`` ones are written
    down as loss markers when the sink accepts writes."""
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


def _span(times: list[float]) -> tuple[float, float]:
    if not times:
        now = time.time()
        return now, now
    return min(times), max(times)


class _Retry:
    """A serialised batch (its lines) the sink refused, kept for the next attempt."""

    __slots__ = ("count", "first", "last", "lines")

    def __init__(self, lines: list[bytes], count: int, first: float, last: float) -> None:
        self.lines, self.count, self.first, self.last = lines, count, first, last


class UsageLogger:
    """Records LLM usage without slowing the request that logs it, and without losing it.

    ``directory`` defaults to ``$LLMTALLY_LOG_DIR`` (else ``./logs``); ``service`` to
    ``$LLMTALLY_SERVICE`` (else the program name); ``text`` (``full`` | ``hash`` | ``prefix:N``)
    to ``$LLMTALLY_LOG_TEXT`` (else ``full``).  Files are named and rotated as :class:`FileSink`
    describes; pass ``sink=`` to write elsewhere (e.g. :class:`MemorySink` in tests).

    ``max_queue_size`` bounds memory (default ``$LLMTALLY_LOG_MAX_QUEUE`` or 65,536 records).
    ``on_full`` (default ``$LLMTALLY_LOG_ON_FULL`` or ``"write"``) says what :meth:`log` does when
    the queue is full:

    * ``"write"``: the calling thread builds and serialises that record itself (a few
      microseconds) into the spill, a buffer of whole lines (at most 1 MiB) that the caller filling
      it appends in one write under the sink's lock (that call also waits for the writer's next
      hand-over) and the writer takes with its next batch.  Nothing is lost; spilled records count
      as ``queued`` until written.
    * ``"drop"``: the record is dropped (a fraction of a microsecond), counted, and written down as
      a loss marker; for latency-critical callers that prefer a gap to a slower call.
    * ``"block"``: wait up to ``block_timeout`` seconds (default 1) for room, then spill as
      ``"write"`` does.  Keeps the log in order under a burst; never use it on an event loop.

    While the sink fails (full disk, read-only volume) the writer keeps the batch it could not write
    and everything queued, retries with back-off and warns at most once a minute; records beyond the
    queue's bound are lost (whatever ``on_full`` says: the caller is never made to wait on a broken
    disk) and written down as one loss marker per reason once the sink accepts writes again.

    ``max_batch_size`` records wake the writer early; otherwise it writes every ``schedule_delay``
    seconds.  ``tags`` are added to every record (request tags from :func:`llmtally.tags` override
    them).  ``retention_days`` deletes this service's own log files not written to for that long
    (raw logs hold prompts: keep them short).

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
        on_full: str | None = None,
        block_timeout: float = 1.0,
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
        _positive("block_timeout", block_timeout, float)
        if max_batch_size > max_queue_size:
            raise ConfigError(
                f"UsageLogger(max_batch_size={max_batch_size}) "
                f"must not exceed max_queue_size={max_queue_size}"
            )
        policy = on_full if on_full is not None else (os.environ.get(ENV_LOG_ON_FULL) or "write")
        if policy not in ON_FULL:
            raise ConfigError(
                f"UsageLogger(on_full={policy!r}) is not one of {', '.join(map(repr, ON_FULL))} "
                f"(set it, or {ENV_LOG_ON_FULL})"
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
        self.on_full = policy
        self.block_timeout = float(block_timeout)
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
        self._lock = threading.Lock()  # counters, losses and the queue's consumer side
        self._room = threading.Condition(self._lock)  # on_full="block" waits here for room
        self._blocked = 0
        self._export_lock = threading.Lock()  # one writer at a time (thread, flush, close)
        self._enqueue_dropped = 0  # lost before reaching the queue
        self._later_dropped = 0  # queued or spilled, then lost (unserialisable, sink error, at close)
        self._taken = 0
        self._written = 0  # by the writer (or flush / close)
        self._spill: list[bytes] = []  # lines built by callers that found the queue full, unwritten
        self._spill_bytes = 0
        self._spill_first = self._spill_last = 0.0  # when the spill's records were logged
        self._spilled = 0  # records built by callers (the queue being full)
        self._inline_written = 0  # ... and written by callers (the others go with the writer's batch)
        self._callers_writing = 0  # callers writing records now: the writer hands over every 0.1 ms
        self._ids: list[str] = []  # record ids for callers' records (drawn afresh in a forked child)
        self._losses: dict[str, list[float]] = {}  # reason -> [records, lost at, first, last]
        self._retry: _Retry | None = None
        self._trouble: str | None = None  # the reason the sink is failing, while it fails
        self._trouble_since = 0.0
        self._closed = False
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
        """Queue one usage record; returns at once (no serialising, tokenizing or I/O here while
        the queue has room; when it is full, see ``on_full`` in :class:`UsageLogger`).

        ``usage`` is what the LLM server reported (an SDK object or dict, any provider's names);
        ``estimate`` what the service itself believed (``{"prompt_tokens", "completion_tokens"}``).
        ``ts`` (request start: ``datetime``, epoch seconds or ISO string) defaults to now minus
        ``latency_ms``.  Extra keyword ``fields`` are kept as record keys (``endpoint``,
        ``finish_reason``, ``reasoning``, ``tool_calls``, ``tool_choice``, ``template_kwargs``,
        ``error``; see :mod:`llmtally._record`).  The ``messages`` list is copied (shallowly):
        appending to it afterwards is safe, mutating its message dicts is not.

        Never raises for runtime trouble.  A record that cannot be kept (see :class:`UsageLogger`)
        is counted in ``stats()["dropped"]`` and written down as a loss marker.
        """
        if messages.__class__ is list:
            messages = messages.copy()
        p: Pending = _new_pending(Pending, (
            time.time(), ts, model, messages, prompt, completion, tools, usage, estimate,
            tags, _tags.get(), latency_ms, status, request_id, fields,
        ))  # fmt: skip
        queue = self._queue
        if len(queue) < self.max_queue_size and not self._closed:
            queue.append(p)
            if len(queue) >= self.max_batch_size and not self._wake.is_set():
                self._wake.set()
            return
        self._overflow(p)

    def _overflow(self, p: Pending) -> None:
        """The queue is full or the logger closed: spill ``p`` here, wait for room, or lose it."""
        try:
            if self._closed:
                self._lose(1, p.logged_at, p.logged_at, CLOSED, at_enqueue=True)
                return
            if self.on_full == "block" and self._wait_for_room(p):
                return
            trouble = self._trouble
            if trouble is not None or self._closed:
                self._lose(1, p.logged_at, p.logged_at, trouble or CLOSED, at_enqueue=True)
            elif self.on_full == "drop":
                self._lose(1, p.logged_at, p.logged_at, QUEUE_FULL, at_enqueue=True)
            else:
                self._write_inline(p)
        except Exception as exc:  # never into the caller's request
            self._report.error("log", exc, "a usage record could not be kept")

    def _wait_for_room(self, p: Pending) -> bool:
        """``on_full="block"``: queue ``p`` once there is room; False after ``block_timeout`` (or
        when the sink fails or the logger closes meanwhile)."""
        deadline = time.monotonic() + self.block_timeout
        with self._room:
            self._blocked += 1
            try:
                while self._trouble is None and not self._closed:
                    if len(self._queue) < self.max_queue_size:
                        self._queue.append(p)
                        return True
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._wake.set()
                    self._room.wait(left)
            finally:
                self._blocked -= 1
        return False

    def _write_inline(self, p: Pending) -> None:
        """Build and serialise ``p`` on the caller's thread, into the spill of such lines; the caller
        that fills the spill to ``_SPILL_BYTES`` writes it (one write of whole lines under the sink's
        lock), the writer thread takes what is left with its next batch."""
        try:
            line = self._line(p, self._next_id())
        except Exception as exc:
            self._report.error("build", exc, "a usage record could not be serialised; dropped")
            self._lose(1, p.logged_at, p.logged_at, UNSERIALISABLE, at_enqueue=True)
            return
        at = p.logged_at
        with self._lock:
            spill = self._spill
            if not spill:
                self._spill_first = self._spill_last = at
            elif at > self._spill_last:
                self._spill_last = at
            elif at < self._spill_first:
                self._spill_first = at
            spill.append(line)
            self._spilled += 1
            self._spill_bytes += len(line) + 1
            if self._spill_bytes < _SPILL_BYTES and not self._closed:
                return
            lines, n, first, last = self._take_spill_locked()  # (closed meanwhile: no one else will)
            if not n:
                return
            self._callers_writing += 1
        try:
            lines.append(b"")  # the last line's newline
            self.sink.write_batch(b"\n".join(lines), n)
        except Exception as exc:
            self._lose(n, first, last, self._failed(exc), at_enqueue=False)
        else:
            with self._lock:
                self._inline_written += n
        finally:
            with self._lock:
                self._callers_writing -= 1

    def _take_spill_locked(self) -> tuple[list[bytes], int, float, float]:
        """The spill's lines, how many, and when the first and last of them were logged (the caller
        holds ``_lock``); the spill is empty afterwards."""
        lines, self._spill, self._spill_bytes = self._spill, [], 0
        return lines, len(lines), self._spill_first, self._spill_last

    def _next_id(self) -> str:
        try:
            return self._ids.pop()
        except IndexError:  # drawn 64 at a time: one getrandom call instead of one per record
            ids = self._ids = new_ids(64)
            return ids.pop()

    def _lose(self, n: int, first: float, last: float, reason: str, *, at_enqueue: bool) -> None:
        """Count ``n`` lost records (logged between ``first`` and ``last``) under ``reason``."""
        if n <= 0:
            return
        with self._lock:
            if at_enqueue:
                self._enqueue_dropped += n
            else:
                self._later_dropped += n
            if reason != CLOSED:
                loss = self._losses.get(reason)
                if loss is None:
                    self._losses[reason] = [n, time.time(), first, last]
                else:
                    loss[0] += n
                    loss[2] = min(loss[2], first)
                    loss[3] = max(loss[3], last)
        if reason == CLOSED:
            self._report.warn(
                reason,
                "usage logger %r is closed: records logged after close() are dropped (counted in "
                "stats()['dropped'])",
                self.service,
            )
        elif reason == QUEUE_FULL:
            self._report.warn(
                reason,
                "usage logger %r: the queue is full (%d records): dropping records (on_full='drop'); "
                "counted in stats()['dropped'] and written to the log as a loss marker",
                self.service,
                self.max_queue_size,
            )
        else:
            self._report.warn(
                reason,
                "usage logger %r is losing records (%s): the sink is failing and the queue (%d records) "
                "is full; they are counted in stats()['dropped'] and written to the log as a loss "
                "marker when the sink works again",
                self.service,
                reason,
                self.max_queue_size,
            )

    def _failed(self, exc: BaseException) -> str:
        """The sink refused a write: remember why (callers stop trying meanwhile); warn rarely."""
        reason = loss_reason(exc)
        with self._lock:
            if self._trouble is None:
                self._trouble_since = time.monotonic()
            self._trouble = reason
            if self._blocked:
                self._room.notify_all()
        self._report.error("write", exc, "usage records could not be written; kept and retried")
        return reason

    def _recovered(self) -> None:
        with self._lock:
            was, self._trouble = self._trouble, None
            queued = len(self._queue)
            lasted = time.monotonic() - self._trouble_since
        if was is not None:
            self._report.warn(
                "recovered",
                "usage logger %r: the sink accepts writes again after %.0f s (%s); writing the %d "
                "records kept and the loss markers",
                self.service,
                lasted,
                was,
                queued,
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
                backoff = min(backoff * 2, _MAX_BACKOFF_S)

    def _take(self, n: int) -> list[Pending]:
        queue = self._queue
        with self._lock:
            k = min(n, len(queue))
            batch = [queue.popleft() for _ in range(k)]
            self._taken += k
            if self._blocked:
                self._room.notify_all()
        return batch

    def _export(self, deadline: float | None) -> bool:
        """Write everything queued now, and the loss markers (caller holds the export lock); False
        if not all written."""
        retry = self._retry
        if retry is not None and not self._write(retry.lines, retry.count, retry.first, retry.last):
            return False
        while self._queue:
            if deadline is not None and time.monotonic() > deadline:
                return False
            batch = self._take(self.max_batch_size)
            if not batch:
                break
            lines = self._serialise(batch)
            first, last = _span([p.logged_at for p in batch])
            if not self._write(lines, len(lines), first, last):
                return False
        if self._losses or self._spill:
            return self._write([], 0, 0.0, 0.0)
        return True

    def _line(self, p: Pending, rid: str) -> bytes:
        return record_line(
            p, rid=rid, service=self.service, host=self.host, pid=self.pid, policy=self.policy,
            defaults=self.default_tags,
        )  # fmt: skip

    def _serialise(self, batch: list[Pending]) -> list[bytes]:
        """Build a batch's lines, handing the GIL over every ``_HAND_OVER_S`` of work."""
        lines: list[bytes] = []
        bad: list[float] = []
        perf_counter = time.perf_counter
        handed_over = perf_counter()
        line = self._line
        for rid, p in zip(new_ids(len(batch)), batch, strict=True):
            try:
                lines.append(line(p, rid))
            except Exception as exc:  # unbuildable or unserialisable (e.g. a circular reference)
                self._report.error("build", exc, "a usage record could not be serialised; dropped")
                bad.append(p.logged_at)
                continue
            busy = perf_counter() - handed_over
            if busy >= _HAND_OVER_S or (busy >= _HAND_OVER_BUSY_S and self._callers_writing):
                _hand_over()
                handed_over = perf_counter()
        if bad:
            self._lose(len(bad), min(bad), max(bad), UNSERIALISABLE, at_enqueue=False)
        return lines

    def _take_markers(self) -> tuple[list[bytes], dict[str, list[float]]]:
        with self._lock:
            if not self._losses:
                return [], {}
            losses, self._losses = self._losses, {}
        ids = new_ids(len(losses))
        lines = [
            loss_line(rid=rid, at=at, service=self.service, host=self.host, pid=self.pid,
                      records=int(n), first=first, last=last, reason=reason)
            for rid, (reason, (n, at, first, last)) in zip(ids, losses.items(), strict=True)
        ]  # fmt: skip
        return [line.encode("utf-8", "backslashreplace") for line in lines], losses

    def _put_back(self, losses: dict[str, list[float]]) -> None:
        with self._lock:
            for reason, (n, at, first, last) in losses.items():
                loss = self._losses.get(reason)
                if loss is None:
                    self._losses[reason] = [n, at, first, last]
                else:
                    loss[0] += n
                    loss[1] = min(loss[1], at)
                    loss[2] = min(loss[2], first)
                    loss[3] = max(loss[3], last)

    def _write(self, lines: list[bytes], count: int, first: float, last: float) -> bool:
        """Append the pending loss markers, the spill and ``lines`` (``count`` records) in one write."""
        markers, losses = self._take_markers()
        if self._spill:
            with self._lock:
                spill, n, spill_first, spill_last = self._take_spill_locked()
            if n:
                if count:
                    first, last = min(first, spill_first), max(last, spill_last)
                else:
                    first, last = spill_first, spill_last
                lines, count = spill + lines, count + n
        if not markers and not count:
            return True
        try:
            self.sink.write_batch(b"\n".join([*markers, *lines, b""]), count + len(losses))
        except Exception as exc:
            self._put_back(losses)
            if count:
                self._retry = _Retry(lines, count, first, last)
            self._failed(exc)
            return False
        self._retry = None
        with self._lock:
            self._written += count
        if self._trouble is not None:
            self._recovered()
        return True

    # -- lifecycle -------------------------------------------------------------------------------

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Write everything logged so far (and pending loss markers); True when all of it was
        written within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._export_lock.acquire(timeout=-1 if timeout is None else max(timeout, 0.0)):
            return False
        try:
            return self._export(deadline)
        finally:
            self._export_lock.release()

    def close(self, timeout: float | None = 30.0) -> bool:
        """Stop the writer after writing what is queued; True when nothing was lost.

        Idempotent.  Records still unwritten after ``timeout`` (or because the sink fails) are
        counted as dropped and written down as one loss marker (``unwritten at exit``) in one last
        attempt; when even that fails, an error is logged and ``stats()`` is their only trace.
        Registered with :mod:`atexit`; later :meth:`log` calls drop (and count) their records.
        """
        if self._closed:
            return self.stats()["queued"] == 0
        self._closed = True
        atexit.unregister(self._at_exit)
        with self._lock:
            self._room.notify_all()
        self._stop.set()
        self._wake.set()
        start = time.monotonic()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
        left = None if timeout is None else max(0.0, timeout - (time.monotonic() - start))
        ok = self.flush(left)
        if not ok:
            self._abandon_unwritten()
        if self._export_lock.acquire(timeout=0 if not ok else -1):
            try:
                self.sink.close()
            except Exception as exc:
                self._report.error("close", exc, "closing the usage log failed")
            finally:
                self._export_lock.release()
        return ok

    def _abandon_unwritten(self) -> None:
        """At close: count what is still unwritten as lost, and try once to write its marker."""
        with self._lock:
            pending = list(self._queue)
            self._queue.clear()
            self._taken += len(pending)
            retry, self._retry = self._retry, None
            _, spilled, spill_first, spill_last = self._take_spill_locked()
        times = [p.logged_at for p in pending]
        if retry is not None:
            times += [retry.first, retry.last]
        if spilled:
            times += [spill_first, spill_last]
        lost = len(pending) + (retry.count if retry is not None else 0) + spilled
        if lost:
            first, last = _span(times)
            self._lose(lost, first, last, UNWRITTEN, at_enqueue=False)
        marked = False
        if self._export_lock.acquire(timeout=0.2):  # a writer still busy writes the markers itself
            try:
                marked = self._write([], 0, 0.0, 0.0)
            finally:
                self._export_lock.release()
        if marked:
            if lost:
                _log.warning(
                    "llmtally usage logger %r: %d records not written at close; a loss marker says so",
                    self.service,
                    lost,
                )
            return
        with self._lock:
            unmarked = int(sum(loss[0] for loss in self._losses.values()))
        _log.error(
            "llmtally usage logger %r: %d records not written at close, and no loss marker could be "
            "written for %d lost records: this message and stats() are their only trace",
            self.service,
            lost,
            unmarked,
        )

    def _at_exit(self) -> None:
        self.close(timeout=5.0)

    def stats(self) -> LoggerStats:
        """Counters ``logged``, ``written``, ``dropped``, ``queued``.

        ``logged == written + dropped + queued`` always holds.
        """
        with self._lock:
            queued = len(self._queue)
            taken, written, inline = self._taken, self._written, self._inline_written
            spilled = self._spilled
            dropped_now, dropped_later = self._enqueue_dropped, self._later_dropped
        return LoggerStats(
            logged=taken + queued + spilled + dropped_now,
            written=written + inline,
            dropped=dropped_now + dropped_later,
            queued=queued + taken + spilled - written - inline - dropped_later,
        )

    def __enter__(self) -> UsageLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.directory if self.directory is not None else type(self.sink).__name__
        return f"<UsageLogger service={self.service!r} to {where}>"
