"""``wrap_openai``: log every Chat Completions, Responses, Completions and Embeddings call a client makes.

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


def _choice_fields(choice: Any) -> dict[str, Any]:
    """One choice of a Chat Completions (``message``) or legacy Completions (``text``) result."""
    msg = _get(choice, "message")
    out: dict[str, Any] = {"index": _get(choice, "index") or 0}
    if msg is None:  # legacy completions
        out["completion"] = _get(choice, "text")
    else:
        out["completion"] = _get(msg, "content")
        reasoning = _reasoning_of(msg)
        if isinstance(reasoning, str):
            out["reasoning"] = reasoning
        calls = _get(msg, "tool_calls")
        if calls:
            out["tool_calls"] = [_plain(c) for c in calls]
    out["finish_reason"] = _get(choice, "finish_reason")
    return {k: v for k, v in out.items() if v is not None}


def _with_choices(out: dict[str, Any], choices: list[dict[str, Any]]) -> dict[str, Any]:
    """Choice 0 as the record's own ``completion`` etc.; every choice in ``choices`` when n > 1."""
    if choices:
        out.update({k: v for k, v in choices[0].items() if k != "index"})
    if len(choices) > 1:
        out["choices"] = choices
    return out


def response_fields(response: Any) -> dict[str, Any]:
    """Record fields of a Chat Completions, legacy Completions, Embeddings or Responses result.

    ``response`` is an SDK object or a dict.  With several choices (``n > 1``) the record keeps
    choice 0 in ``completion`` / ``reasoning`` / ``tool_calls`` / ``finish_reason`` and every choice
    in ``choices``, so the recount bills them all.  An embeddings result keeps only its usage.
    """
    out: dict[str, Any] = {"usage": _get(response, "usage"), "request_id": _get(response, "id")}
    if _get(response, "object") == "list" and _get(response, "data") is not None:  # embeddings
        out["endpoint"] = "embeddings"
        return out
    choices = _get(response, "choices")
    if choices is not None:  # Chat Completions or legacy Completions
        fields = sorted((_choice_fields(c) for c in choices), key=lambda c: c["index"])
        legacy = bool(choices) and _get(choices[0], "message") is None
        out["endpoint"] = "completions" if legacy else "chat.completions"
        return _with_choices(out, fields)
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


def _inputs(given: Any) -> list[Any] | None:
    """A prompt / embeddings ``input`` as a list of strings or token-id lists."""
    if given is None:
        return None
    if isinstance(given, str):
        return [given]
    items = list(given)
    if items and all(isinstance(x, int) for x in items):
        return [items]  # one prompt given as token ids
    return [x if isinstance(x, str) else list(x) for x in items]


def _listed(value: Any) -> Any:
    """``value`` with iterators (generators) made lists, at the top and one level down."""
    if isinstance(value, Iterator):
        value = list(value)
    if isinstance(value, list) and any(isinstance(x, Iterator) for x in value):
        value = [list(x) if isinstance(x, Iterator) else x for x in value]
    return value


def _request_fields(endpoint: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {"endpoint": endpoint, "model": _given(kwargs.get("model"))}
    if endpoint == "chat.completions":
        messages = _given(kwargs.get("messages"))
        fields["messages"] = list(messages) if messages is not None else None
    elif endpoint in ("completions", "embeddings"):
        inputs = _inputs(_given(kwargs.get("prompt" if endpoint == "completions" else "input")))
        if inputs is not None and len(inputs) == 1 and isinstance(inputs[0], str):
            fields["prompt"] = inputs[0]
        else:
            fields["inputs"] = inputs
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


def _expected_choices(request: Mapping[str, Any], kwargs: Mapping[str, Any]) -> int:
    """How many choices a call asks for: ``n`` (per prompt of a legacy completions ``request``)."""
    n = _given(kwargs.get("n"))
    per = n if isinstance(n, int) and n > 0 else 1
    if request["endpoint"] == "completions":
        return per * max(1, len(request.get("inputs") or ()))
    return per


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


class _Choice:
    """What a stream delivered for one choice index."""

    __slots__ = ("calls", "finish_reason", "reasoning", "text")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.calls: dict[Any, dict[str, Any]] = {}
        self.finish_reason: str | None = None

    def fields(self, index: int) -> dict[str, Any]:
        out: dict[str, Any] = {"index": index, "completion": "".join(self.text)}
        if self.reasoning:
            out["reasoning"] = "".join(self.reasoning)
        if self.calls:
            out["tool_calls"] = [self.calls[k] for k in sorted(self.calls, key=lambda k: k or 0)]
        if self.finish_reason:
            out["finish_reason"] = self.finish_reason
        return out


class _Call:
    """One instrumented API call: what was sent, what came back, logged exactly once."""

    def __init__(
        self,
        logger: UsageLogger | None,
        tags: Mapping[str, str],
        request: dict[str, Any],
        expected: int = 1,
    ) -> None:
        self.logger = logger
        self.tags = tags
        self.request = request
        self.expected = expected
        self.started = time.time()
        self.t0 = time.perf_counter()
        self.done = False
        # streaming state
        self.hide_usage_chunk = False
        self.usage_requested = False
        self.choices: dict[int, _Choice] = {}
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
            if self.request["endpoint"] == "responses":
                self._observe_event(item)
            else:
                self._observe_chunk(item)
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
            index = _get(choice, "index") or 0
            acc = self.choices.get(index)
            if acc is None:
                acc = self.choices[index] = _Choice()
            delta = _get(choice, "delta")
            content = _get(delta, "content") if delta is not None else _get(choice, "text")
            if isinstance(content, str) and content:
                self._mark_first()
                acc.text.append(content)
            reasoning = _reasoning_of(delta)
            if isinstance(reasoning, str) and reasoning:
                self._mark_first()
                acc.reasoning.append(reasoning)
            for tc in _get(delta, "tool_calls") or []:
                self._mark_first()
                call = acc.calls.setdefault(
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
                acc.finish_reason = _get(choice, "finish_reason")

    def _observe_event(self, event: Any) -> None:
        kind = _get(event, "type") or ""
        acc = self.choices.setdefault(0, _Choice())
        if kind == "response.output_text.delta":
            self._mark_first()
            acc.text.append(_get(event, "delta") or "")
        elif kind in ("response.reasoning_text.delta", "response.reasoning_summary_text.delta"):
            self._mark_first()
            acc.reasoning.append(_get(event, "delta") or "")
        elif kind in ("response.created", "response.in_progress"):
            self.streamed["request_id"] = _get(_get(event, "response"), "id")
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            self.final = _get(event, "response")

    def all_finished(self) -> bool:
        """Every expected choice has its ``finish_reason`` (a chat or completions stream)."""
        done = sum(1 for c in self.choices.values() if c.finish_reason)
        return done >= self.expected

    def awaits_usage(self) -> bool:
        """Generation is over and the usage chunk asked for has not come yet."""
        return (
            self.usage_requested
            and self.request["endpoint"] != "responses"
            and "usage" not in self.streamed
            and self.all_finished()
        )

    def hidden(self, item: Any) -> bool:
        """The usage-only last chunk we asked for on the caller's behalf."""
        return self.hide_usage_chunk and not _get(item, "choices") and _get(item, "usage") is not None

    def stream_fields(self, status: str) -> dict[str, Any]:
        if self.final is not None:
            fields = response_fields(self.final)
        else:
            fields = _with_choices(
                dict(self.streamed), [self.choices[i].fields(i) for i in sorted(self.choices)]
            )
        if status == "abandoned" and self.final is None and self.choices and self.all_finished():
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

    def _ahead(self, item: Any, pulled: list[Any]) -> list[Any]:
        """What to hand the caller now: ``item``, then what was read ahead of it."""
        out = [] if self.hidden(item) else [item]
        out.extend(x for x in pulled if not self.hidden(x))
        if pulled and "usage" in self.streamed:
            self.finish_stream("ok")  # complete: log now, even if the caller stops reading here
        return out

    def sync_iter(self, inner: Iterator[Any]) -> Iterator[Any]:
        try:
            for item in inner:
                self.observe(item)
                pulled: list[Any] = []
                failure: Exception | None = None
                # The last finish_reason came: read on to the usage chunk before handing it over,
                # so a caller who stops at finish_reason still gets the server's usage recorded.
                try:
                    while self.awaits_usage():
                        nxt = next(inner, _END)
                        if nxt is _END:
                            break
                        self.observe(nxt)
                        pulled.append(nxt)
                except Exception as exc:  # the caller still gets what came before it
                    failure = exc
                yield from self._ahead(item, pulled)
                if failure is not None:
                    raise failure
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
                pulled: list[Any] = []
                failure: Exception | None = None
                try:
                    while self.awaits_usage():
                        nxt = await anext(inner, _END)
                        if nxt is _END:
                            break
                        self.observe(nxt)
                        pulled.append(nxt)
                except Exception as exc:  # the caller still gets what came before it
                    failure = exc
                for out in self._ahead(item, pulled):
                    yield out
                if failure is not None:
                    raise failure
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


_END = object()


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
    for key in ("prompt", "input"):  # an iterator would be used up here: hand the SDK a list
        if key in kwargs:
            kwargs[key] = _listed(kwargs[key])
    try:
        request = _request_fields(endpoint, kwargs)
        expected = _expected_choices(request, kwargs)
    except Exception:  # an input we cannot read: log what we can, never break the call
        request, expected = {"endpoint": endpoint, "model": str(kwargs.get("model"))}, 1
    call = _Call(logger, tags, request, expected)
    if stream and endpoint in ("chat.completions", "completions"):
        options = _given(kwargs.get("stream_options"))
        asked = isinstance(options, Mapping) and options.get("include_usage") is True
        if include_usage and (
            options is None or (isinstance(options, Mapping) and "include_usage" not in options)
        ):
            kwargs["stream_options"] = {**(options or {}), "include_usage": True}
            call.hide_usage_chunk = True
            asked = True
        call.usage_requested = asked
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


_ENDPOINTS = ("chat.completions", "responses", "completions", "embeddings")


def wrap_openai(
    client: _T, logger: UsageLogger | None = None, *, include_usage: bool = True, **tags: Any
) -> _T:
    """Instrument an ``OpenAI`` / ``AsyncOpenAI`` client in place and return it.

    Every ``client.chat.completions.create(...)``, ``client.responses.create(...)``, legacy
    ``client.completions.create(...)`` and ``client.embeddings.create(...)`` call (sync or async,
    plain or ``stream=True``) is logged to ``logger`` (default: the default logger) with the
    messages, prompt or inputs, tools and model sent, the text, reasoning and tool calls received
    (every choice when ``n > 1``), the usage the server reported, latency, time to first token and
    status (``ok``, ``error``, ``timeout`` or ``abandoned`` for a stream closed or dropped early).
    ``tags`` are added to every record.  Embedding vectors are never logged.

    For streamed chats and completions the wrapper asks for ``stream_options.include_usage``
    (unless the caller set it, or ``include_usage=False`` for a server that rejects the option) and
    hides the extra usage-only chunk from the caller.  When the last ``finish_reason`` arrives it
    reads on to that usage chunk before handing the finishing chunk over, so a caller who stops
    reading at ``finish_reason`` still has the server's usage recorded.  Wrapping twice is
    harmless.  Copies made with ``client.with_options(...)`` are not instrumented; wrap them too.
    """
    str_tags = {str(k): str(v) for k, v in tags.items() if v is not None}
    for endpoint in _ENDPOINTS:
        resource: Any = client
        try:
            for part in endpoint.split("."):
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
