"""Where a :class:`UsageLogger` writes: rotated JSON Lines files, or memory (tests).

A sink receives complete JSON Lines batches from the logger's writer thread and, when the logger's
queue is full, spills of records built by the threads that call :meth:`UsageLogger.log`: it must
be thread-safe and append each batch whole (never interleaved with another).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from .._exceptions import ConfigError

__all__ = ["FileSink", "MemorySink", "Sink", "log_file_name"]


@runtime_checkable
class Sink(Protocol):
    """Receives serialised batches (from several threads: see the module docstring)."""

    def write_batch(self, data: bytes, count: int) -> None:
        """Persist ``count`` complete JSON lines (``data`` ends with a newline) as one unit, never
        interleaved with another batch; raise on failure (``OSError`` with its ``errno`` names the
        reason of a loss marker: ``ENOSPC`` is "disk full", ``EROFS`` "read-only")."""

    def close(self) -> None:
        """Release files; later writes may reopen."""


_UNSAFE = re.compile(r"[^A-Za-z0-9_.]+")
_KEEP_ON = frozenset(c for c in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if c is not None)
"""Errors after which a file that took nothing of the batch is kept for the retry (disk full)."""


def _safe(part: str) -> str:
    return _UNSAFE.sub("_", part).strip("_.") or "unknown"


def log_file_name(service: str, host: str, pid: int, opened: float, seq: int) -> str:
    """``usage-<service>-<host>-<pid>-<YYYYmmddTHHMMSS>-<seq>.jsonl`` (UTC open time).

    ``service`` and ``host`` keep only ``[A-Za-z0-9_.]`` (others become ``_``), so the dashes
    separate fields.
    """
    stamp = datetime.fromtimestamp(opened, UTC).strftime("%Y%m%dT%H%M%S")
    return f"usage-{_safe(service)}-{_safe(host)}-{pid}-{stamp}-{seq}.jsonl"


class FileSink:
    """Append-only JSON Lines files, one per process and period, rotated by size and time.

    Each batch goes to the file with a single ``os.write`` of complete lines on an ``O_APPEND``
    descriptor, under a lock held from the rotation check to the end of the write, so batches from
    the writer thread and from callers (a full queue) never interleave, and a reader sees whole
    lines or a trailing partial line (never a half line followed by more data).  A short write is
    completed by further writes; if that fails too (the disk filled up in mid-batch) the file is
    abandoned and the next batch opens a new one, so a partial line can only ever be the last line
    of a file.  A write that fails having written nothing keeps the file when the disk is full (so a
    long outage does not leave a trail of files) and abandons it otherwise; an abandoned file that
    holds nothing is removed.  A child process (after ``fork``) opens its own files.

    ``rotate_seconds`` cuts files at multiples of that period (UTC, default one hour), so one file
    never spans two days in any whole-hour time zone.  Files are created with mode ``0o640``: raw logs
    hold prompts and belong on a restricted volume.  ``retention_days`` (default: keep forever) deletes
    this service's own files not written to for that long, each time a new file is opened.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        service: str,
        *,
        max_bytes: int = 64 * 1024 * 1024,
        rotate_seconds: float = 3600.0,
        host: str | None = None,
        mode: int = 0o640,
        retention_days: float | None = None,
    ) -> None:
        if retention_days is not None and retention_days <= 0:
            raise ConfigError(f"retention_days must be positive, got {retention_days}")
        if max_bytes <= 0:
            raise ConfigError(f"max_bytes must be positive, got {max_bytes}")
        if rotate_seconds <= 0:
            raise ConfigError(f"rotate_seconds must be positive, got {rotate_seconds}")
        self.directory = Path(directory)
        self.service = service
        self.host = host or socket.gethostname().split(".")[0]
        self.max_bytes = max_bytes
        self.rotate_seconds = float(rotate_seconds)
        self.mode = mode
        self.retention_days = retention_days
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self._period = -1
        self._seq = 0

    @property
    def path(self) -> Path | None:
        """The file being written now (``None`` before the first batch)."""
        return self._path

    def _open(self, now: float) -> int:
        self.directory.mkdir(parents=True, exist_ok=True)
        while True:
            self._seq += 1
            path = self.directory / log_file_name(self.service, self.host, self._pid, now, self._seq)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, self.mode)
            except FileExistsError:
                continue
            self._fd, self._path, self._size = fd, path, 0
            self._period = int(now // self.rotate_seconds)
            if self.retention_days is not None:
                self._expire(now - self.retention_days * 86400)
            return fd

    def _expire(self, cutoff: float) -> None:
        """Delete this service's files (any host or pid) last written before ``cutoff``."""
        prefix = f"usage-{_safe(self.service)}-"
        for old in self.directory.iterdir():
            name = old.name
            if name.startswith(prefix) and (name.endswith(".jsonl") or name.endswith(".jsonl.gz")):
                with contextlib.suppress(OSError):
                    if old != self._path and old.stat().st_mtime < cutoff:
                        old.unlink()

    def _close_file(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)

    def _retire(self) -> None:
        """Close the current file; remove it when nothing was ever written to it (a file opened for a
        write that failed)."""
        if self._fd is None:
            return
        empty = self._size == 0
        self._close_file()
        if empty and self._path is not None:
            with contextlib.suppress(OSError):
                self._path.unlink()

    def write_batch(self, data: bytes, count: int) -> None:
        """Append ``data`` (complete lines) to the current file, rotating first when due."""
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's descriptor and names are not ours
                self._reset()
            now = time.time()
            fd = self._fd
            if fd is not None and (
                int(now // self.rotate_seconds) != self._period
                or (self._size > 0 and self._size + len(data) > self.max_bytes)
            ):
                self._retire()
                fd = None
            if fd is None:
                fd = self._open(now)
            written = 0
            try:
                written = os.write(fd, data)
                while written < len(data):  # a short write: the rest, or the errno of what stops it
                    n = os.write(fd, memoryview(data)[written:])
                    if n <= 0:
                        raise OSError(errno.EIO, f"short write ({written} of {len(data)} bytes)")
                    written += n
            except OSError as exc:
                self._size += written
                if written or exc.errno not in _KEEP_ON:
                    self._retire()  # a partial line stays the last line of this file
                raise
            self._size += written

    def close(self) -> None:
        """Close the current file; the next batch opens a new one."""
        with self._lock:
            if self._pid == os.getpid():
                self._retire()
            else:
                self._reset()


class MemorySink:
    """Keeps written batches in memory: the test double for a :class:`FileSink`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._chunks: list[bytes] = []
        self.closed = False

    def write_batch(self, data: bytes, count: int) -> None:
        """Store the batch."""
        with self._lock:
            self._chunks.append(data)

    def close(self) -> None:
        """Mark closed (the data stays readable)."""
        self.closed = True

    def lines(self) -> list[bytes]:
        """Every line written so far, without newlines."""
        with self._lock:
            return b"".join(self._chunks).splitlines()

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.lines())
