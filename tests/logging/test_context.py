"""tags() / track() / UsageMiddleware: request tags that follow threads and asyncio tasks."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator

import httpx
from fastapi import Depends, FastAPI, Request

import llmtally
from llmtally.logging import MemorySink, UsageLogger, current_tags
from tests.logging.conftest import memory_records


def test_tags_nest_and_reset() -> None:
    with llmtally.tags(user="u1", tenant="t1"):
        with llmtally.tags(user="u2", feature=None):
            assert dict(current_tags()) == {"user": "u2", "tenant": "t1"}
        assert dict(current_tags()) == {"user": "u1", "tenant": "t1"}
    assert dict(current_tags()) == {}


def test_track_sync_async_and_generators(logger: UsageLogger, sink: MemorySink) -> None:
    @llmtally.track(feature="sync")
    def sync() -> int:
        logger.log(model="m", prompt="s")
        return 1

    @llmtally.track(feature="async", team="x")
    async def coro() -> int:
        await asyncio.sleep(0)
        logger.log(model="m", prompt="a")
        return 2

    @llmtally.track(feature="gen")
    def gen() -> Iterator[int]:
        logger.log(model="m", prompt="g")
        yield 3

    @llmtally.track(feature="agen")
    async def agen() -> AsyncIterator[int]:
        logger.log(model="m", prompt="ag")
        yield 4

    async def run_async() -> list[int]:
        return [await coro(), *[x async for x in agen()]]

    assert sync() == 1 and list(gen()) == [3] and asyncio.run(run_async()) == [2, 4]
    assert sync.__name__ == "sync"
    logger.flush(5)
    assert {r["prompt"]: r["tags"] for r in memory_records(sink)} == {
        "s": {"feature": "sync"}, "g": {"feature": "gen"}, "a": {"feature": "async", "team": "x"}, "ag": {"feature": "agen"},
    }  # fmt: skip


def test_concurrent_tasks_and_threads_keep_their_own_tags(logger: UsageLogger, sink: MemorySink) -> None:
    async def request(user: str) -> None:
        with llmtally.tags(user=user):
            for _ in range(20):
                await asyncio.sleep(0)
                logger.log(model="m", prompt=user)

    async def main() -> None:
        await asyncio.gather(*(request(f"u{i}") for i in range(10)))

    asyncio.run(main())

    def thread(user: str) -> None:
        with llmtally.tags(user=user):
            for _ in range(20):
                time.sleep(0)
                logger.log(model="m", prompt=user)

    threads = [threading.Thread(target=thread, args=(f"t{i}",)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    logger.flush(5)
    records = memory_records(sink)
    assert len(records) == 300
    assert all(r["tags"] == {"user": r["prompt"]} for r in records)


def test_asgi_middleware_tags_route_and_the_apps_own_identity(logger: UsageLogger, sink: MemorySink) -> None:
    app = FastAPI()
    app.add_middleware(
        llmtally.UsageMiddleware, trusted_headers={"x-feature": "feature"}, tags={"service_tier": "gold"}
    )

    def auth(request: Request) -> None:  # the app's own auth says who is calling
        token = request.headers.get("authorization", "")
        users = {"Bearer t-alice": ("alice", "acme"), "Bearer t-bob": ("bob", "globex")}
        if token in users:
            request.state.user, request.state.tenant = users[token]

    @app.post("/items/{item_id}/ask", dependencies=[Depends(auth)])
    async def ask(item_id: int) -> dict[str, int]:
        logger.log(model="m", prompt="async endpoint")
        return {"id": item_id}

    @app.get("/sync", dependencies=[Depends(auth)])
    def sync_endpoint() -> dict[str, str]:  # runs in a worker thread with the request's context
        with llmtally.tags(step="one"):
            logger.log(model="m", prompt="sync endpoint")
        return {}

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            forged = {"x-user-id": "mallory", "x-tenant-id": "victim-corp", "x-feature": "qa"}
            r = await client.post("/items/7/ask", headers={"authorization": "Bearer t-alice", **forged})
            assert r.json() == {"id": 7}
            await client.get("/sync", headers={"X-Tenant-Id": "victim-corp"})  # no auth: no identity

    asyncio.run(main())
    logger.flush(5)
    a, b = memory_records(sink)
    assert a["tags"] == {  # the forged user and tenant headers are ignored; the trusted one is read
        "route": "/items/{item_id}/ask",
        "user": "alice",
        "tenant": "acme",
        "feature": "qa",
        "service_tier": "gold",
    }
    assert b["tags"] == {"route": "/sync", "service_tier": "gold", "step": "one"}


def test_asgi_middleware_trusts_named_gateway_headers_and_a_custom_identify(
    logger: UsageLogger, sink: MemorySink
) -> None:
    def broken(scope: object) -> dict[str, str]:
        raise RuntimeError("the app's identify failed")

    for kwargs, want in [
        ({"trusted_headers": {"x-user-id": "user", "x-tenant-id": "tenant"}, "identify": None},
         {"user": "gw-user", "tenant": "gw-tenant"}),
        ({"identify": lambda scope: {"user": 42, "tenant": None}}, {"user": "42"}),
        ({"identify": broken}, {}),
    ]:  # fmt: skip
        app = FastAPI()
        app.add_middleware(llmtally.UsageMiddleware, **kwargs)

        @app.get("/x")
        async def x() -> dict[str, str]:
            logger.log(model="m", prompt="p")
            return {}

        async def main(app: FastAPI = app) -> None:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                await client.get("/x", headers={"x-user-id": "gw-user", "x-tenant-id": "gw-tenant"})

        asyncio.run(main())
        logger.flush(5)
        *_, rec = memory_records(sink)
        assert rec["tags"] == {"route": "/x", **want}, kwargs
    assert dict(current_tags()) == {}
