"""A small OpenAI-compatible HTTP server for tests: real sockets, real SSE, scripted by model name.

Models: ``echo`` (answers "Hello there!" in Chat Completions / Responses, reports usage),
``nousage`` (no usage object, like some self-hosted servers), ``tools`` (one tool call),
``reasoner`` (``reasoning_content`` deltas, DeepSeek/vLLM style), ``err-500`` / ``err-429``
(errors), ``slow`` (answers after 2 s), ``cut`` (streams two chunks, then drops the connection).
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
TOOL_ARGS = ['{"city"', ': "Par', 'is"}']


class Server:
    """The scripted server; ``url`` is its ``/v1`` base URL."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/responses", self.responses, methods=["POST"]),
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
        usage = None if model == "nousage" else USAGE
        if body.get("stream"):
            include = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                self._chat_sse(model, usage if include else None), media_type="text/event-stream"
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
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        }
        if usage is not None:
            out["usage"] = usage
        return JSONResponse(out)

    async def _chat_sse(self, model: str, usage: dict[str, Any] | None) -> AsyncIterator[bytes]:
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
            yield chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}])
        if usage is not None:
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
