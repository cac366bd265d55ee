"""Request-scoped tags: :func:`tags` and :func:`track`, carried in a :mod:`contextvars` variable.

A context variable follows the code that runs a request: each thread and each ``asyncio`` task sees
its own value (tasks copy the context they were created in), so tags set around one request never
leak into another running concurrently.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

__all__ = ["current_tags", "tags", "track"]

_P = ParamSpec("_P")
_R = TypeVar("_R")

_EMPTY: Mapping[str, str] = {}
_tags: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar("llmtally_tags", default=_EMPTY)


def current_tags() -> Mapping[str, str]:
    """The tags in effect here (read-only; a new mapping is set, never mutated)."""
    return _tags.get()


def _merged(kv: Mapping[str, Any]) -> dict[str, str]:
    merged = dict(_tags.get())
    for key, value in kv.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[str(key)] = str(value)
    return merged


@contextmanager
def tags(**kv: Any) -> Iterator[Mapping[str, str]]:
    """Tag every usage record logged inside the block, e.g. ``with llmtally.tags(user="u1"):``.

    Nested blocks add to (and may override) the outer tags; a value of ``None`` removes a tag.
    Values are recorded as strings.  Safe in threads and ``asyncio`` tasks.
    """
    token = _tags.set(_merged(kv))
    try:
        yield _tags.get()
    finally:
        _tags.reset(token)


def track(feature: str | None = None, **kv: Any) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Decorate a function so that records logged while it runs carry ``feature`` (and ``kv``) tags.

    Works on plain functions, ``async`` functions, generators and async generators::

        @llmtally.track(feature="summarize")
        async def summarize(text: str) -> str: ...
    """
    extra = dict(kv)
    if feature is not None:
        extra["feature"] = feature

    def decorate(fn: Callable[_P, _R]) -> Callable[_P, _R]:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with tags(**extra):
                    return await fn(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        if inspect.isasyncgenfunction(fn):

            @functools.wraps(fn)
            async def run_asyncgen(*args: Any, **kwargs: Any) -> Any:
                agen = fn(*args, **kwargs)
                try:
                    while True:
                        with tags(**extra):
                            try:
                                item = await agen.__anext__()
                            except StopAsyncIteration:
                                return
                        yield item
                finally:
                    await agen.aclose()

            return run_asyncgen

        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def run_gen(*args: Any, **kwargs: Any) -> Any:
                gen = fn(*args, **kwargs)
                try:
                    while True:
                        with tags(**extra):
                            try:
                                item = next(gen)
                            except StopIteration as stop:
                                return stop.value
                        yield item
                finally:
                    gen.close()

            return run_gen

        @functools.wraps(fn)
        def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            with tags(**extra):
                return fn(*args, **kwargs)

        return run

    return decorate
