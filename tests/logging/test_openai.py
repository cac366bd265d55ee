"""wrap_openai against a real OpenAI-compatible server over real sockets (the real ``openai`` SDK)."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import openai
import pytest
import tiktoken
from transformers import AutoTokenizer

from llmtally import load_tokenizer
from llmtally._record import prompt_chars
from llmtally.logging import MemorySink, UsageLogger, tags, wrap_openai
from llmtally.pipeline import billed, parse_day, recount
from tests.logging.conftest import memory_records
from tests.logging.openai_server import CHOICES, PIECES, RESP_USAGE, TOOL_ARGS, USAGE, Server
from tests.support import tokenizer_source

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
    assert "prompt_chars" not in rec  # full text: the reader derives it
    assert prompt_chars(rec["messages"]) == len("Be brief.") + len("你好, say hello")


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


# -- n > 1, stopping at finish_reason, legacy completions, embeddings (issue 11) -----------------


def _usage(completion: int, prompt: int = 17) -> dict[str, int]:
    return {**CHAT_USAGE, "completion_tokens": completion, "total_tokens": prompt + completion}


@pytest.mark.parametrize("stream", [False, True])
def test_every_choice_of_n_is_recorded(
    openai_server: Server, logger: UsageLogger, sink: MemorySink, stream: bool
) -> None:
    result = _client(openai_server, logger).chat.completions.create(
        model="echo", messages=MESSAGES, n=3, stream=stream
    )  # type: ignore[call-overload]
    if stream:
        seen: dict[int, str] = {}
        for chunk in result:
            for c in chunk.choices:
                seen[c.index] = seen.get(c.index, "") + (c.delta.content or "")
        assert [seen[i] for i in range(3)] == CHOICES
    rec = _only(logger, sink)
    assert rec["completion"] == CHOICES[0] and rec["finish_reason"] == "stop"
    assert [c["completion"] for c in rec["choices"]] == CHOICES
    assert [c["index"] for c in rec["choices"]] == [0, 1, 2]
    assert all(c["finish_reason"] == "stop" for c in rec["choices"])
    assert rec["completion_chars"] == sum(len(c) for c in CHOICES)
    assert rec["usage"] == _usage(12)


@pytest.mark.parametrize("asked", [False, True])
def test_stream_read_up_to_finish_reason_keeps_the_servers_usage(
    openai_server: Server, logger: UsageLogger, sink: MemorySink, asked: bool
) -> None:
    """A caller that stops at finish_reason and keeps the stream open still gets usage logged."""
    extra: dict[str, Any] = {"stream_options": {"include_usage": True}} if asked else {}
    stream = _client(openai_server, logger).chat.completions.create(
        model="echo", messages=MESSAGES, stream=True, **extra
    )
    text = ""
    for chunk in stream:
        text += chunk.choices[0].delta.content or ""
        if chunk.choices[0].finish_reason:
            break  # the common loop: stop at finish_reason, never read the usage chunk
    assert text == "".join(PIECES)
    rec = _only(logger, sink)  # logged while the stream is still referenced and open
    assert rec["usage"] == CHAT_USAGE and rec["status"] == "ok" and rec["completion"] == text
    stream.close()
    assert logger.flush(5) and len(memory_records(sink)) == 1


def test_include_usage_off_for_servers_that_reject_it(
    openai_server: Server, logger: UsageLogger, sink: MemorySink
) -> None:
    client = wrap_openai(
        openai.OpenAI(base_url=openai_server.url, api_key="t", max_retries=0), logger, include_usage=False
    )
    _clients.append(client)
    chunks = list(client.chat.completions.create(model="echo", messages=MESSAGES, stream=True))
    assert "stream_options" not in openai_server.requests[-1]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "".join(PIECES)
    rec = _only(logger, sink)
    assert "usage" not in rec and rec["status"] == "ok" and rec["completion"] == "".join(PIECES)


@pytest.mark.parametrize("stream", [False, True])
def test_legacy_completions_are_recorded(
    openai_server: Server, logger: UsageLogger, sink: MemorySink, stream: bool
) -> None:
    client = _client(openai_server, logger)
    result = client.completions.create(model="echo", prompt="Say hello", max_tokens=8, stream=stream)
    if stream:
        assert "".join(c.choices[0].text for c in result if c.choices) == "".join(PIECES)
    rec = _only(logger, sink)
    assert rec["endpoint"] == "completions" and rec["prompt"] == "Say hello"
    assert rec["completion"] == "".join(PIECES) and rec["usage"] == _usage(4) and rec["status"] == "ok"
    # several prompts in one call: every prompt and every choice
    client.completions.create(model="echo", prompt=["one", "two"], n=2)
    assert logger.flush(5)
    multi = memory_records(sink)[-1]
    assert multi["inputs"] == ["one", "two"] and "prompt" not in multi
    assert len(multi["choices"]) == 4 and multi["usage"] == _usage(16)


def test_embeddings_are_recorded_without_vectors(
    openai_server: Server, logger: UsageLogger, sink: MemorySink
) -> None:
    client = _client(openai_server, logger)
    result = client.embeddings.create(model="text-embedding-3-small", input=["第一段", "second"])
    assert len(result.data) == 2
    rec = _only(logger, sink)
    assert rec["endpoint"] == "embeddings" and rec["inputs"] == ["第一段", "second"]
    assert rec["usage"] == {
        "prompt_tokens": 9, "completion_tokens": 0, "total_tokens": 9, "cached_tokens": None,
        "reasoning_tokens": None,
    }  # fmt: skip
    rest = {
        k: v for k, v in rec.items() if k not in ("latency_ms", "ts", "id", "prompt_sha256")
    }  # "0.2" by chance
    assert "data" not in rec and "0.2" not in json.dumps(rest), "vectors are never logged"
    assert rec["prompt_chars"] == len("第一段") + len("second") and rec["status"] == "ok"


def test_n_3_and_embeddings_bill_from_the_log_through_the_pipeline(
    openai_server: Server, tmp_path: Path
) -> None:
    """Through the real SDK, the logger's files, the parser and the recount: a server that reports
    no usage with n=3 bills three completions (each with its stop token); embeddings bill their inputs."""
    qwen = load_tokenizer(tokenizer_source("qwen3"))
    gpt = load_tokenizer("text-embedding-3-small")
    lg = UsageLogger(tmp_path, service="svc", schedule_delay=0.05)
    client = _client(openai_server, lg)
    client.chat.completions.create(model="nousage", messages=MESSAGES, n=3)
    list(client.chat.completions.create(model="nousage", messages=MESSAGES, n=3, stream=True))
    client.embeddings.create(model="text-embedding-3-small", input=["第一段文字", "second part"])
    lg.close(timeout=5)
    records = list(parse_day(sorted(tmp_path.glob("usage-*.jsonl")), datetime.now(UTC).date(), "UTC").records)
    assert len(records) == 3
    counts = recount(records, {"nousage": qwen, "text-embedding-3-small": gpt}.__getitem__)
    oracle = AutoTokenizer.from_pretrained(tokenizer_source("qwen3"))
    want = sum(len(oracle.encode(c, add_special_tokens=False)) + 1 for c in CHOICES)  # + <|im_end|>
    assert want > 3 * 2
    for rec in records[:2]:
        b = billed(rec, counts[rec.id])
        assert (b.completion_tokens, b.completion_source) == (want, "recount"), rec.endpoint
        assert b.prompt_tokens == qwen.count_messages(MESSAGES)
    emb = billed(records[2], counts[records[2].id])
    enc = tiktoken.get_encoding("cl100k_base")
    assert counts[records[2].id].prompt_tokens == len(enc.encode("第一段文字")) + len(
        enc.encode("second part")
    )
    assert (emb.prompt_tokens, emb.prompt_source, emb.completion_tokens) == (9, "reported", 0)


def test_async_stream_read_up_to_finish_reason_keeps_usage(
    openai_server: Server, logger: UsageLogger, sink: MemorySink
) -> None:
    async def main() -> None:
        client = wrap_openai(
            openai.AsyncOpenAI(base_url=openai_server.url, api_key="t", max_retries=0), logger
        )
        stream = await client.chat.completions.create(model="echo", messages=MESSAGES, n=3, stream=True)  # type: ignore[call-overload]
        finished = set()
        async for chunk in stream:
            finished |= {c.index for c in chunk.choices if c.finish_reason}
            if len(finished) == 3:
                break
        assert logger.flush(5)
        rec = memory_records(sink)[0]  # logged before the stream is closed
        assert rec["usage"] == _usage(12) and rec["status"] == "ok" and len(rec["choices"]) == 3
        await stream.close()
        await client.close()

    asyncio.run(main())
    assert len(memory_records(sink)) == 1


def test_a_failure_while_reading_ahead_still_hands_over_the_finishing_chunk(
    openai_server: Server, logger: UsageLogger, sink: MemorySink
) -> None:
    stream = _client(openai_server, logger).chat.completions.create(
        model="cut-after-finish", messages=MESSAGES, stream=True
    )
    seen: list[Any] = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            seen.append(chunk.choices[0].finish_reason or chunk.choices[0].delta.content)
    assert seen[-1] == "stop" and "".join(x for x in seen[:-1] if x) == "".join(PIECES)
    rec = _only(logger, sink)
    assert rec["status"] == "error" and rec["completion"] == "".join(PIECES) and "usage" not in rec


def test_generator_inputs_reach_the_server_and_the_record(
    openai_server: Server, logger: UsageLogger, sink: MemorySink
) -> None:
    client = _client(openai_server, logger)
    client.embeddings.create(model="text-embedding-3-small", input=(t for t in [[1, 2, 3], [4, 5]]))
    assert openai_server.requests[-1]["input"] == [[1, 2, 3], [4, 5]]
    assert _only(logger, sink)["inputs"] == [[1, 2, 3], [4, 5]]
