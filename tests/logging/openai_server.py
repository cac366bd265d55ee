"""A small OpenAI-compatible HTTP server for tests: real sockets, real SSE, scripted by model name.

Models: ``echo`` (answers "Hello there!" in Chat Completions / Responses, reports usage),
``nousage`` (no usage object, like some self-hosted servers), ``tools`` (one tool call),
``reasoner`` (``reasoning_content`` deltas, DeepSeek/vLLM style), ``err-500`` / ``err-429``
(errors), ``slow`` (answers after 2 s), ``cut`` (streams two chunks, then drops the connection),
``cut-after-finish`` (drops it after the finish_reason chunk, before the usage chunk).
``n`` > 1 answers choice ``i`` with ``CHOICES[i]`` (usage: 4 completion tokens per choice).
``/v1/completions`` (legacy, plain and streamed) answers each prompt with ``PIECES``;
``/v1/embeddings`` answers with vectors and ``{prompt_tokens, total_tokens}`` usage.
Every request body is kept in ``server.requests``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

USAGE = {
    "prompt_tokens": 17,
    "completion_tokens": 4,
    "total_tokens": 21,
    "prompt_tokens_details": {"cached_tokens": 8},
    "completion_tokens_details": {"reasoning_tokens": 0},
}
RESP_USAGE = {
    "input_tokens": 11,
    "output_tokens": 3,
    "total_tokens": 14,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens_details": {"reasoning_tokens": 0},
}
PIECES = ["Hel", "lo ", "there!"]
CHOICES = ["".join(PIECES), "Hi!", "你好，很高兴见到你。"]
EMBED_USAGE = {"prompt_tokens": 9, "total_tokens": 9}
TOOL_ARGS = ['{"city"', ': "Par', 'is"}']


class Server:
    """The scripted server; ``url`` is its ``/v1`` base URL."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/responses", self.responses, methods=["POST"]),
                Route("/v1/completions", self.completions, methods=["POST"]),
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
            ]
        )
        self.url = ""

    async def _error(self, model: str) -> Response | None:
        if model == "err-500":
            return JSONResponse({"error": {"message": "boom", "type": "server_error"}}, status_code=500)
        if model == "err-429":
            return JSONResponse(
                {"error": {"message": "slow down", "type": "rate_limit"}},
                status_code=429,
                headers={"x-request-id": "req-429"},
            )
        if model == "slow":
            await asyncio.sleep(2.0)
        return None

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        model = body["model"]
        error = await self._error(model)
        if error is not None:
            return error
        n = int(body.get("n") or 1)
        usage = None if model == "nousage" else _usage_for(n)
        if body.get("stream"):
            include = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                self._chat_sse(model, usage if include else None, n), media_type="text/event-stream"
            )
        message: dict[str, Any] = {"role": "assistant", "content": "Hello there!"}
        finish = "stop"
        if model == "tools":
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": "".join(TOOL_ARGS)},
                    }
                ],
            }
            finish = "tool_calls"
        if model == "reasoner":
            message["reasoning_content"] = "Think."
        out: dict[str, Any] = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}]
            + [
                {"index": i, "message": {"role": "assistant", "content": CHOICES[i]}, "finish_reason": "stop"}
                for i in range(1, n)
            ],
        }
        if usage is not None:
            out["usage"] = usage
        return JSONResponse(out)

    async def _chat_sse(self, model: str, usage: dict[str, Any] | None, n: int = 1) -> AsyncIterator[bytes]:
        def chunk(choices: list[Any], usage: Any = None) -> bytes:
            data = {
                "id": "chatcmpl-2",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": choices,
            }
            if usage is not None:
                data["usage"] = usage
            return f"data: {json.dumps(data)}\n\n".encode()

        yield chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        if model == "tools":
            yield chunk(
                [
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [
                                {
                                    "index": 0,
                                    "id": "call_1",
                                    "type": "function",
                                    "function": {"name": "weather", "arguments": ""},
                                }
                            ]
                        },
                        "finish_reason": None,
                    }
                ]
            )
            for part in TOOL_ARGS:
                yield chunk(
                    [
                        {
                            "index": 0,
                            "delta": {"tool_calls": [{"index": 0, "function": {"arguments": part}}]},
                            "finish_reason": None,
                        }
                    ]
                )
            yield chunk([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}])
        else:
            if model == "reasoner":
                yield chunk([{"index": 0, "delta": {"reasoning_content": "Think."}, "finish_reason": None}])
            for i, piece in enumerate(PIECES):
                if model == "cut" and i == 2:
                    raise RuntimeError("connection dropped mid-stream")
                yield chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
                await asyncio.sleep(0)
            for i in range(1, n):
                yield chunk([{"index": i, "delta": {"content": CHOICES[i]}, "finish_reason": None}])
            yield chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}])
            for i in range(1, n):
                yield chunk([{"index": i, "delta": {}, "finish_reason": "stop"}])
            if model == "cut-after-finish":
                raise RuntimeError("connection dropped before the usage chunk")
        if usage is not None:
            await asyncio.sleep(0.05)  # the usage chunk comes a little after the last finish_reason
            yield chunk([], usage)
        yield b"data: [DONE]\n\n"

    async def responses(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        model = body["model"]
        error = await self._error(model)
        if error is not None:
            return error
        final = {
            "id": "resp_1",
            "object": "response",
            "created_at": 0,
            "status": "completed",
            "model": model,
            "output": [
                {
                    "type": "message",
                    "id": "msg_1",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "Hello there!", "annotations": []}],
                }
            ],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": None if model == "nousage" else RESP_USAGE,
        }
        if not body.get("stream"):
            return JSONResponse(final)

        async def events() -> AsyncIterator[bytes]:
            seq = 0

            def event(kind: str, **data: Any) -> bytes:
                nonlocal seq
                seq += 1
                return f"event: {kind}\ndata: {json.dumps({'type': kind, 'sequence_number': seq, **data})}\n\n".encode()

            created = {**final, "status": "in_progress", "output": [], "usage": None}
            yield event("response.created", response=created)
            for piece in PIECES:
                yield event(
                    "response.output_text.delta",
                    item_id="msg_1",
                    output_index=0,
                    content_index=0,
                    delta=piece,
                    logprobs=[],
                )
            yield event("response.completed", response=final)

        return StreamingResponse(events(), media_type="text/event-stream")

    async def completions(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        model = body["model"]
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        if prompts and all(isinstance(x, int) for x in prompts):
            prompts = [prompts]
        count = len(prompts) * int(body.get("n") or 1)
        usage = None if model == "nousage" else _usage_for(count)
        base = {"id": "cmpl-1", "object": "text_completion", "created": 0, "model": model}
        if not body.get("stream"):
            choices = [
                {"index": i, "text": "".join(PIECES), "finish_reason": "stop", "logprobs": None}
                for i in range(count)
            ]
            return JSONResponse({**base, "choices": choices, **({"usage": usage} if usage else {})})
        include = bool((body.get("stream_options") or {}).get("include_usage"))

        async def sse() -> AsyncIterator[bytes]:
            def chunk(choices: list[Any], usage: Any = None) -> bytes:
                data = {**base, "choices": choices, **({"usage": usage} if usage is not None else {})}
                return f"data: {json.dumps(data)}\n\n".encode()

            for piece in PIECES:
                for i in range(count):
                    yield chunk([{"index": i, "text": piece, "finish_reason": None, "logprobs": None}])
            for i in range(count):
                yield chunk([{"index": i, "text": "", "finish_reason": "stop", "logprobs": None}])
            if include and usage is not None:
                yield chunk([], usage)
            yield b"data: [DONE]\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream")

    async def embeddings(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(len(inputs))]
        return JSONResponse({"object": "list", "data": data, "model": body["model"], "usage": EMBED_USAGE})


def _usage_for(choices: int) -> dict[str, Any]:
    """``USAGE`` with 4 completion tokens per choice."""
    completion = USAGE["completion_tokens"] * choices
    return {
        **USAGE,
        "completion_tokens": completion,
        "total_tokens": USAGE["prompt_tokens"] + completion,
    }


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serve() -> Iterator[Server]:
    """Run the server on 127.0.0.1 (random port) in a thread."""
    server = Server()
    sock = _free_socket()
    config = uvicorn.Config(server.app, log_level="critical", lifespan="off")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        if time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    server.url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    try:
        yield server
    finally:
        uv.should_exit = True
        thread.join(10)
        sock.close()
