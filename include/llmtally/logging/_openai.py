"""``wrap_openai``: log every Chat Completions and Responses call an OpenAI client makes.

Works with ``OpenAI`` and ``AsyncOpenAI`` (and so with the OpenAI-compatible endpoints of vLLM,
SGLang, DashScope, DeepSeek…), plain and streaming.  Usage is what the server reported; nothing is
estimated or tokenized.  The ``openai`` package is never imported here: responses are read by shape.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, TypeVar

from ._build import _plain
from ._default import get_default_logger
from ._logger import UsageLogger

__all__ = ["response_fields", "wrap_openai"]

_T = TypeVar("_T")
_WRAPPED = "__llmtally_wrapped__"


def _given(value: Any) -> Any:
    """``None`` for the SDK's ``omit`` / ``NOT_GIVEN`` sentinels."""
    if value is None or type(value).__name__ in ("Omit", "NotGiven"):
        return None
    return value


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _reasoning_of(obj: Any) -> Any:
    return _get(obj, "reasoning_content") or _get(obj, "reasoning")


def response_fields(response: Any) -> dict[str, Any]:
    """Record fields of a Chat Completions or Responses result (SDK object or dict)."""
    out: dict[str, Any] = {"usage": _get(response, "usage"), "request_id": _get(response, "id")}
    choices = _get(response, "choices")
    if choices is not None:  # Chat Completions
        out["endpoint"] = "chat.completions"
        if choices:
            first = choices[0]
            msg = _get(first, "message")
            out["completion"] = _get(msg, "content")
            reasoning = _reasoning_of(msg)
            if isinstance(reasoning, str):
                out["reasoning"] = reasoning
            calls = _get(msg, "tool_calls")
            if calls:
                out["tool_calls"] = [_plain(c) for c in calls]
            out["finish_reason"] = _get(first, "finish_reason")
        return out
    output = _get(response, "output")
    if output is not None:  # Responses
        out["endpoint"] = "responses"
        texts: list[str] = []
        thoughts: list[str] = []
        functions: list[dict[str, Any]] = []
        for item in output:
            kind = _get(item, "type")
            if kind == "message":
                for part in _get(item, "content") or []:
                    if _get(part, "type") == "output_text" and isinstance(_get(part, "text"), str):
                        texts.append(_get(part, "text"))
            elif kind == "reasoning":
                for part in (_get(item, "content") or []) + (_get(item, "summary") or []):
                    if isinstance(_get(part, "text"), str):
                        thoughts.append(_get(part, "text"))
            elif kind == "function_call":
                functions.append(
                    {
                        "id": _get(item, "call_id"),
                        "type": "function",
                        "function": {"name": _get(item, "name"), "arguments": _get(item, "arguments")},
                    }
                )
        out["completion"] = "".join(texts)
        if thoughts:
            out["reasoning"] = "".join(thoughts)
        if functions:
            out["tool_calls"] = functions
        details = _get(response, "incomplete_details")
        out["finish_reason"] = _get(details, "reason") or _get(response, "status")
    return out


def _request_fields(endpoint: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {"endpoint": endpoint, "model": _given(kwargs.get("model"))}
    if endpoint == "chat.completions":
        messages = _given(kwargs.get("messages"))
        fields["messages"] = list(messages) if messages is not None else None
    else:
        items: list[Any] = []
        instructions = _given(kwargs.get("instructions"))
        if isinstance(instructions, str):
            items.append({"role": "system", "content": instructions})
        given = _given(kwargs.get("input"))
        if isinstance(given, str):
            items.append({"role": "user", "content": given})
        elif given is not None:
            items.extend(given)
        fields["messages"] = items
    fields["tools"] = _given(kwargs.get("tools"))
    fields["tool_choice"] = _given(kwargs.get("tool_choice"))
    extra_body = _given(kwargs.get("extra_body"))
    if isinstance(extra_body, Mapping) and isinstance(extra_body.get("chat_template_kwargs"), Mapping):
        fields["template_kwargs"] = dict(extra_body["chat_template_kwargs"])
    return {k: v for k, v in fields.items() if v is not None}


def _error_status(exc: BaseException) -> str:
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return "abandoned"
    if any("Timeout" in cls.__name__ for cls in type(exc).__mro__):
        return "timeout"
    return "error"


def _error_fields(exc: BaseException) -> dict[str, Any]:
    fields: dict[str, Any] = {"status": _error_status(exc), "error": type(exc).__name__}
    code = getattr(exc, "status_code", None)
    if isinstance(code, int):
        fields["http_status"] = code
    rid = getattr(exc, "request_id", None)
    if isinstance(rid, str):
        fields["request_id"] = rid
    return fields


class _Call:
    """One instrumented API call: what was sent, what came back, logged exactly once."""

    def __init__(self, logger: UsageLogger | None, tags: Mapping[str, str], request: dict[str, Any]) -> None:
        self.logger = logger
        self.tags = tags
        self.request = request
        self.started = time.time()
        self.t0 = time.perf_counter()
        self.done = False
        # streaming state
        self.hide_usage_chunk = False
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.calls: dict[Any, dict[str, Any]] = {}
        self.streamed: dict[str, Any] = {}
        self.final: Any = None
        self.first_token_ms: float | None = None

    def finish(self, fields: Mapping[str, Any]) -> None:
        if self.done:
            return
        self.done = True
        try:
            record = {**self.request, **{k: v for k, v in fields.items() if v is not None}}
            record.setdefault("status", "ok")
            if self.tags:
                record["tags"] = {**self.tags, **record.get("tags", {})}
            (self.logger or get_default_logger()).log(
                ts=self.started, latency_ms=(time.perf_counter() - self.t0) * 1000.0, **record
            )
        except Exception:  # logging must never break the caller
            pass

    # -- streaming -------------------------------------------------------------------------------

    def observe(self, item: Any) -> None:
        try:
            if self.request["endpoint"] == "chat.completions":
                self._observe_chunk(item)
            else:
                self._observe_event(item)
        except Exception:
            pass

    def _mark_first(self) -> None:
        if self.first_token_ms is None:
            self.first_token_ms = (time.perf_counter() - self.t0) * 1000.0

    def _observe_chunk(self, chunk: Any) -> None:
        s = self.streamed
        s.setdefault("request_id", _get(chunk, "id"))
        usage = _get(chunk, "usage")
        if usage is not None:
            s["usage"] = usage
        for choice in _get(chunk, "choices") or []:
            if (_get(choice, "index") or 0) != 0:
                continue
            delta = _get(choice, "delta")
            content = _get(delta, "content")
            if isinstance(content, str) and content:
                self._mark_first()
                self.text.append(content)
            reasoning = _reasoning_of(delta)
            if isinstance(reasoning, str) and reasoning:
                self._mark_first()
                self.reasoning.append(reasoning)
            for tc in _get(delta, "tool_calls") or []:
                self._mark_first()
                call = self.calls.setdefault(
                    _get(tc, "index"),
                    {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
                )
                if _get(tc, "id"):
                    call["id"] = _get(tc, "id")
                fn = _get(tc, "function")
                if _get(fn, "name"):
                    call["function"]["name"] += _get(fn, "name")
                if _get(fn, "arguments"):
                    call["function"]["arguments"] += _get(fn, "arguments")
            if _get(choice, "finish_reason"):
                s["finish_reason"] = _get(choice, "finish_reason")

    def _observe_event(self, event: Any) -> None:
        kind = _get(event, "type") or ""
        if kind == "response.output_text.delta":
            self._mark_first()
            self.text.append(_get(event, "delta") or "")
        elif kind in ("response.reasoning_text.delta", "response.reasoning_summary_text.delta"):
            self._mark_first()
            self.reasoning.append(_get(event, "delta") or "")
        elif kind in ("response.created", "response.in_progress"):
            self.streamed["request_id"] = _get(_get(event, "response"), "id")
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            self.final = _get(event, "response")

    def hidden(self, item: Any) -> bool:
        """The usage-only last chunk we asked for on the caller's behalf."""
        return self.hide_usage_chunk and not _get(item, "choices") and _get(item, "usage") is not None

    def stream_fields(self, status: str) -> dict[str, Any]:
        if self.final is not None:
            fields = response_fields(self.final)
        else:
            fields = dict(self.streamed)
            fields["completion"] = "".join(self.text)
            if self.reasoning:
                fields["reasoning"] = "".join(self.reasoning)
            if self.calls:
                fields["tool_calls"] = [self.calls[k] for k in sorted(self.calls, key=lambda k: k or 0)]
        if status == "abandoned" and fields.get("finish_reason") and self.final is None:
            status = "ok"  # everything but the trailing usage chunk was read
        fields["status"] = status
        fields["ttft_ms"] = round(self.first_token_ms, 3) if self.first_token_ms is not None else None
        return fields

    def finish_stream(self, status: str, exc: BaseException | None = None) -> None:
        if self.done:
            return
        fields = self.stream_fields(status)
        if exc is not None:
            fields.update(_error_fields(exc))
        self.finish(fields)

    def sync_iter(self, inner: Iterator[Any]) -> Iterator[Any]:
        try:
            for item in inner:
                self.observe(item)
                if not self.hidden(item):
                    yield item
        except GeneratorExit:
            self.finish_stream("abandoned")
            close = getattr(inner, "close", None)
            if close is not None:
                close()
            raise
        except BaseException as exc:
            self.finish_stream("error", exc)
            raise
        self.finish_stream("ok")

    async def async_iter(self, inner: AsyncIterator[Any]) -> AsyncIterator[Any]:
        try:
            async for item in inner:
                self.observe(item)
                if not self.hidden(item):
                    yield item
        except GeneratorExit:
            self.finish_stream("abandoned")
            aclose = getattr(inner, "aclose", None)
            if aclose is not None:
                await aclose()
            raise
        except BaseException as exc:
            self.finish_stream("error", exc)
            raise
        self.finish_stream("ok")


def _instrument_stream(stream: Any, call: _Call, is_async: bool) -> Any:
    """Route the SDK stream's iteration through ``call``; closing or dropping it logs too."""
    finalizer = weakref.finalize(stream, call.finish_stream, "abandoned")
    finalizer.atexit = False
    inner = getattr(stream, "_iterator", None)
    if inner is None:  # not the SDK's Stream: hand back a plain (async) iterator
        return call.async_iter(stream.__aiter__()) if is_async else call.sync_iter(iter(stream))
    ref = weakref.ref(stream)  # the replacement close() must not keep the stream alive
    close = type(stream).close
    if is_async:
        stream._iterator = call.async_iter(inner)

        async def aclose() -> None:
            call.finish_stream("abandoned")
            s = ref()
            if s is not None:
                await close(s)

        stream.close = aclose
    else:
        stream._iterator = call.sync_iter(inner)

        def sclose() -> None:
            call.finish_stream("abandoned")
            s = ref()
            if s is not None:
                close(s)

        stream.close = sclose
    return stream


def _prepare(
    endpoint: str,
    kwargs: dict[str, Any],
    logger: UsageLogger | None,
    tags: Mapping[str, str],
    include_usage: bool,
) -> tuple[_Call, bool]:
    stream = kwargs.get("stream") is True
    call = _Call(logger, tags, _request_fields(endpoint, kwargs))
    if stream and endpoint == "chat.completions" and include_usage:
        options = _given(kwargs.get("stream_options"))
        if options is None or (isinstance(options, Mapping) and "include_usage" not in options):
            kwargs["stream_options"] = {**(options or {}), "include_usage": True}
            call.hide_usage_chunk = True
    return call, stream


def _wrap_create(
    create: Callable[..., Any],
    endpoint: str,
    logger: UsageLogger | None,
    tags: Mapping[str, str],
    include_usage: bool,
    is_async: bool,
) -> Callable[..., Any]:
    if is_async:

        @functools.wraps(create)
        async def acreate(*args: Any, **kwargs: Any) -> Any:
            call, stream = _prepare(endpoint, kwargs, logger, tags, include_usage)
            try:
                result = await create(*args, **kwargs)
            except BaseException as exc:
                call.finish(_error_fields(exc))
                raise
            if stream:
                return _instrument_stream(result, call, is_async=True)
            call.finish(response_fields(result))
            return result

        setattr(acreate, _WRAPPED, True)
        return acreate

    @functools.wraps(create)
    def screate(*args: Any, **kwargs: Any) -> Any:
        call, stream = _prepare(endpoint, kwargs, logger, tags, include_usage)
        try:
            result = create(*args, **kwargs)
        except BaseException as exc:
            call.finish(_error_fields(exc))
            raise
        if stream:
            return _instrument_stream(result, call, is_async=False)
        call.finish(response_fields(result))
        return result

    setattr(screate, _WRAPPED, True)
    return screate


def wrap_openai(
    client: _T, logger: UsageLogger | None = None, *, include_usage: bool = True, **tags: Any
) -> _T:
    """Instrument an ``OpenAI`` / ``AsyncOpenAI`` client in place and return it.

    Every ``client.chat.completions.create(...)`` and ``client.responses.create(...)`` call (sync or
    async, plain or ``stream=True``) is logged to ``logger`` (default: the default logger) with the
    messages, tools and model sent, the text, reasoning and tool calls received, the usage the server
    reported, latency, time to first token and status (``ok``, ``error``, ``timeout`` or ``abandoned``
    for a stream closed or dropped early).  ``tags`` are added to every record.

    For streamed chats the wrapper asks for ``stream_options.include_usage`` (unless the caller set
    it, or ``include_usage=False``) and hides the extra usage-only chunk from the caller.  Wrapping
    twice is harmless.  Copies made with ``client.with_options(...)`` are not instrumented; wrap them
    too.
    """
    str_tags = {str(k): str(v) for k, v in tags.items() if v is not None}
    for path, endpoint in (("chat.completions", "chat.completions"), ("responses", "responses")):
        resource: Any = client
        try:
            for part in path.split("."):
                resource = getattr(resource, part)
            create = resource.create
        except AttributeError:
            continue
        if getattr(create, _WRAPPED, False):
            continue
        # the SDK's async create() is a plain function returning a coroutine (argument checks wrap it)
        is_async = inspect.iscoroutinefunction(create) or type(resource).__name__.startswith("Async")
        resource.create = _wrap_create(create, endpoint, logger, str_tags, include_usage, is_async)
    return client
