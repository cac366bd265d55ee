"""wrap_openai against a real OpenAI-compatible server over real sockets (the real ``openai`` SDK)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from llmtally.logging import MemorySink, UsageLogger, tags, wrap_openai
from tests.logging.conftest import memory_records
from tests.logging.openai_server import PIECES, RESP_USAGE, TOOL_ARGS, USAGE, Server

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "你好, say hello"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
CHAT_USAGE = {
    "prompt_tokens": 17,
    "completion_tokens": 4,
    "total_tokens": 21,
    "cached_tokens": 8,
    "reasoning_tokens": 0,
}


_clients: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().close()


def _client(server: Server, logger: UsageLogger, **kw: Any) -> openai.OpenAI:
    client = openai.OpenAI(base_url=server.url, api_key="test", max_retries=0, **kw)
    _clients.append(client)
    return wrap_openai(client, logger, app="tests")


def _only(logger: UsageLogger, sink: MemorySink) -> dict[str, Any]:
    assert logger.flush(5)
    records = memory_records(sink)
    assert len(records) == 1, records
    return records[0]


def test_chat_completion_logs_what_was_sent_and_reported(
    openai_server: Server, logger: UsageLogger, sink: MemorySink
) -> None:
    client = _client(openai_server, logger)
    with tags(user="u1"):
        resp = client.chat.completions.create(
            model="echo", messages=MESSAGES, extra_body={"chat_template_kwargs": {"enable_thinking": False}}
        )
    assert resp.choices[0].message.content == "Hello there!"
    rec = _only(logger, sink)
    assert rec["endpoint"] == "chat.completions"
    assert rec["model"] == "echo"
    assert rec["messages"] == MESSAGES
    assert rec["completion"] == "Hello there!"
    assert rec["usage"] == CHAT_USAGE
    assert rec["template_kwargs"] == {"enable_thinking": False}
    assert rec["tags"] == {"app": "tests", "user": "u1"}
    assert rec["status"] == "ok" and rec["finish_reason"] == "stop"
    assert rec["request_id"] == "chatcmpl-1"
    assert rec["latency_ms"] > 0
    assert rec["prompt_chars"] == len("Be brief.") + len("你好, say hello")


def test_no_usage_reported_means_no_usage_logged(
    openai_server: Server, logger: UsageLogger, sink: MemorySink
) -> None:
    _client(openai_server, logger).chat.completions.create(model="nousage", messages=MESSAGES)
    rec = _only(logger, sink)
    assert "usage" not in rec and rec["completion"] == "Hello there!"


def test_tool_calls_and_reasoning(openai_server: Server, logger: UsageLogger, sink: MemorySink) -> None:
    client = _client(openai_server, logger)
    client.chat.completions.create(model="tools", messages=MESSAGES, tools=TOOLS, tool_choice="auto")  # type: ignore[arg-type]
    client.chat.completions.create(model="reasoner", messages=MESSAGES)
    assert logger.flush(5)
    tool_rec, reason_rec = memory_records(sink)
    assert tool_rec["tools"] == TOOLS and tool_rec["tool_choice"] == "auto"
    assert tool_rec["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "".join(TOOL_ARGS)}}
    ]
    assert tool_rec["finish_reason"] == "tool_calls"
    assert reason_rec["reasoning"] == "Think." and reason_rec["completion"] == "Hello there!"


def test_stream_asks_for_usage_and_hides_the_usage_chunk(
    openai_server: Server, logger: UsageLogger, sink: MemorySink
) -> None:
    client = _client(openai_server, logger)
    chunks = list(client.chat.completions.create(model="echo", messages=MESSAGES, stream=True))
    assert openai_server.requests[-1]["stream_options"] == {"include_usage": True}
    assert all(c.choices for c in chunks), "the usage-only chunk must be hidden from a caller who did not ask"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "".join(PIECES)
    rec = _only(logger, sink)
    assert rec["completion"] == "".join(PIECES) and rec["usage"] == CHAT_USAGE and rec["status"] == "ok"
    assert rec["ttft_ms"] <= rec["latency_ms"]


def test_stream_caller_who_asked_for_usage_sees_it(
    openai_server: Server, logger: UsageLogger, sink: MemorySink
) -> None:
    client = _client(openai_server, logger)
    chunks = list(
        client.chat.completions.create(
            model="echo", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert _only(logger, sink)["usage"] == CHAT_USAGE


def test_stream_tool_call_deltas_are_accumulated(
    openai_server: Server, logger: UsageLogger, sink: MemorySink
) -> None:
    stream = _client(openai_server, logger).chat.completions.create(
        model="tools", messages=MESSAGES, tools=TOOLS, stream=True
    )  # type: ignore[arg-type]
    for _ in stream:
        pass
    rec = _only(logger, sink)
    assert rec["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "".join(TOOL_ARGS)}}
    ]
    assert rec["finish_reason"] == "tool_calls" and rec["usage"] == CHAT_USAGE


def test_stream_closed_early_is_logged_abandoned(
    openai_server: Server, logger: UsageLogger, sink: MemorySink
) -> None:
    with _client(openai_server, logger).chat.completions.create(
        model="echo", messages=MESSAGES, stream=True
    ) as stream:
        first = next(iter(stream))
        assert first.choices
    rec = _only(logger, sink)
    assert rec["status"] == "abandoned" and "usage" not in rec


def test_stream_dropped_unread_is_logged_when_collected(
    openai_server: Server, logger: UsageLogger, sink: MemorySink
) -> None:
    stream = _client(openai_server, logger).chat.completions.create(
        model="echo", messages=MESSAGES, stream=True
    )
    del stream
    gc.collect()
    assert _only(logger, sink)["status"] == "abandoned"


def test_server_disconnect_mid_stream_is_an_error(
    openai_server: Server, logger: UsageLogger, sink: MemorySink
) -> None:
    stream = _client(openai_server, logger).chat.completions.create(
        model="cut", messages=MESSAGES, stream=True
    )
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass
    rec = _only(logger, sink)
    assert rec["status"] == "error" and rec["completion"] == "".join(PIECES[:2])


@pytest.mark.parametrize(("model", "status", "http"), [("err-500", "error", 500), ("err-429", "error", 429)])
def test_api_errors_are_logged_and_raised(
    openai_server: Server, logger: UsageLogger, sink: MemorySink, model: str, status: str, http: int
) -> None:
    with pytest.raises(openai.APIStatusError):
        _client(openai_server, logger).chat.completions.create(model=model, messages=MESSAGES)
    rec = _only(logger, sink)
    assert rec["status"] == status and rec["http_status"] == http and rec["messages"] == MESSAGES
    assert rec["error"] in ("InternalServerError", "RateLimitError")
    if http == 429:
        assert rec["request_id"] == "req-429"


def test_timeout_is_logged(openai_server: Server, logger: UsageLogger, sink: MemorySink) -> None:
    with pytest.raises(openai.APITimeoutError):
        _client(openai_server, logger, timeout=0.3).chat.completions.create(model="slow", messages=MESSAGES)
    rec = _only(logger, sink)
    assert rec["status"] == "timeout" and rec["error"] == "APITimeoutError"


def test_responses_api_plain_and_streamed(
    openai_server: Server, logger: UsageLogger, sink: MemorySink
) -> None:
    client = _client(openai_server, logger)
    resp = client.responses.create(model="echo", input="say hello", instructions="Be brief.")
    assert resp.output_text == "Hello there!"
    events = list(client.responses.create(model="echo", input="say hello", stream=True))
    assert events[-1].type == "response.completed"
    assert logger.flush(5)
    plain, streamed = memory_records(sink)
    expected_usage = {
        "prompt_tokens": 11,
        "completion_tokens": 3,
        "total_tokens": 14,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
    }
    assert RESP_USAGE["input_tokens"] == expected_usage["prompt_tokens"]
    for rec in (plain, streamed):
        assert rec["endpoint"] == "responses" and rec["completion"] == "Hello there!"
        assert rec["usage"] == expected_usage and rec["status"] == "ok"
    assert plain["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "say hello"},
    ]


def test_wrapping_twice_logs_once(openai_server: Server, logger: UsageLogger, sink: MemorySink) -> None:
    client = wrap_openai(_client(openai_server, logger), logger)
    client.chat.completions.create(model="echo", messages=MESSAGES)
    _only(logger, sink)


def test_async_client_plain_stream_and_error(
    openai_server: Server, logger: UsageLogger, sink: MemorySink
) -> None:
    async def main() -> None:
        client = wrap_openai(
            openai.AsyncOpenAI(base_url=openai_server.url, api_key="t", max_retries=0), logger
        )
        with tags(feature="async"):
            await client.chat.completions.create(model="echo", messages=MESSAGES)  # type: ignore[arg-type]
            stream = await client.chat.completions.create(model="tools", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
            chunks = [c async for c in stream]
            assert all(c.choices for c in chunks)
            with pytest.raises(openai.RateLimitError):
                await client.chat.completions.create(model="err-429", messages=MESSAGES)  # type: ignore[arg-type]
            early = await client.chat.completions.create(model="echo", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
            async for _ in early:
                break
            await early.close()
        await client.close()

    asyncio.run(main())
    assert logger.flush(5)
    plain, streamed, failed, early = memory_records(sink)
    assert plain["usage"] == CHAT_USAGE and plain["tags"]["feature"] == "async"
    assert (
        streamed["tool_calls"][0]["function"]["arguments"] == "".join(TOOL_ARGS)
        and streamed["usage"] == CHAT_USAGE
    )
    assert failed["status"] == "error" and failed["http_status"] == 429
    assert early["status"] == "abandoned"
    assert USAGE["total_tokens"] == CHAT_USAGE["total_tokens"]
