"""The example chat service answers /chat and leaves a usage record per request."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

import llmtally
from tests.logging.conftest import read_records

pytest.importorskip("transformers")


def test_chat_service_logs_each_request(tmp_path: Path) -> None:
    from examples.chat_service import create_app, load_model

    model, tokenizer, name = load_model(None)
    with llmtally.UsageLogger(tmp_path, service="chat-service") as logger:
        app = create_app(model, tokenizer, name, logger, max_new_tokens=8)

        async def main() -> dict[str, str]:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                r = await client.post("/chat", json={"input": "你好"}, headers={"x-user-id": "u1"})
                r.raise_for_status()
                return dict(r.json())

        body = asyncio.run(main())
    (rec,) = read_records(tmp_path)
    assert isinstance(body["response"], str)
    assert rec["messages"] == [{"role": "user", "content": "你好"}] and rec["model"] == "qwen3-tiny-random"
    assert rec["tags"] == {"route": "/chat", "user": "u1", "feature": "chat"}
    assert rec["usage"]["completion_tokens"] <= 8 and rec["completion"] == body["response"]
