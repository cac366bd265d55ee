"""Rendering chat templates in worker processes, so one large batch uses every core.

Rendering a chat template is pure Python (the Jinja2 sandbox checks every attribute access) and
holds the GIL: on a recount it is the single-threaded bottleneck while the Rust encoder waits.  For
large batches :class:`RenderPool` renders chunks of chats in ``spawn``-ed worker processes (safe
beside threads; each compiles the template once) while the calling process encodes what is already
rendered.  The output is the same strings, in the same order; errors raised by a template in a
worker are re-raised in the caller.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from .._exceptions import InputError
from ._template import ChatTemplate

__all__ = ["ENV_RENDER_PROCESSES", "RenderPool", "render_item"]

ENV_RENDER_PROCESSES = "LLMTALLY_RENDER_PROCESSES"
"""Worker processes for template rendering (default: the CPUs this process may use; ``0`` or ``1``
renders inline)."""

_worker: tuple[ChatTemplate, dict[str, Any]] | None = None


def render_item(template: ChatTemplate, defaults: Mapping[str, Any], item: Mapping[str, Any]) -> str:
    """The prompt string of one chat batch item (``{"messages": ..., "tools": ..., ...}``)."""
    if not isinstance(item, Mapping) or "messages" not in item:
        raise InputError('a batch item must be a string or an object with "messages"')
    kwargs = item.get("template_kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise InputError('"template_kwargs" must be an object')
    return template.render(
        item["messages"],
        tools=item.get("tools"),
        add_generation_prompt=bool(item.get("add_generation_prompt", True)),
        **{**defaults, **kwargs},
    )


def _init(sources: dict[str, str], specials: dict[str, str], defaults: dict[str, Any]) -> None:
    global _worker
    _worker = (ChatTemplate(sources, specials), defaults)


def _render_chunk(items: list[Mapping[str, Any]]) -> list[str]:
    assert _worker is not None, "render worker not initialised"
    template, defaults = _worker
    return [render_item(template, defaults, it) for it in items]


def processes() -> int:
    """How many render processes a large batch gets (``LLMTALLY_RENDER_PROCESSES``, else CPUs)."""
    env = os.environ.get(ENV_RENDER_PROCESSES, "").strip()
    if env:
        try:
            return max(0, int(env))
        except ValueError:
            return 0
    try:
        return len(os.sched_getaffinity(0))  # the CPUs this process may use (taskset, cgroups)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class RenderPool:
    """A lazily started pool of render processes for one chat template."""

    def __init__(self, template: ChatTemplate, defaults: Mapping[str, Any], workers: int) -> None:
        self._args = (dict(template.sources), dict(template.special_tokens), dict(defaults))
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._pool = ProcessPoolExecutor(
                    max_workers=self._workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_init,
                    initargs=self._args,
                )
                atexit.register(self.close)
            return self._pool

    def render(self, chunks: Sequence[Sequence[Mapping[str, Any]]]) -> Iterator[list[str]]:
        """Each chunk of chat items rendered, chunk by chunk, in order."""
        yield from self._executor().map(_render_chunk, [list(c) for c in chunks])

    def close(self) -> None:
        """Stop the worker processes."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None and self._pid == os.getpid():
            pool.shutdown(wait=False, cancel_futures=True)
