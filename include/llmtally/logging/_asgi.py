"""``UsageMiddleware``: tag every usage record of an HTTP request with its route, user and tenant.

Pure ASGI (no Starlette import), so it works with FastAPI, Starlette and any ASGI app, including
streaming responses.  Tags travel in a context variable: records logged by the endpoint, by code it
awaits, or by sync endpoints run in a thread pool (which copy the context) all carry them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from typing import Any

from ._context import _tags

__all__ = ["UsageMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _RequestTags(Mapping[str, str]):
    """Tags whose ``route`` is read when the record is written, after the router matched it."""

    __slots__ = ("_base", "_scope")

    def __init__(self, base: dict[str, str], scope: Scope) -> None:
        self._base = base
        self._scope = scope

    def _resolved(self) -> dict[str, str]:
        tags = dict(self._base)
        route = getattr(self._scope.get("route"), "path", None)
        if isinstance(route, str):
            tags["route"] = route
        return tags

    def __getitem__(self, key: str) -> str:
        return self._resolved()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._resolved())

    def __len__(self) -> int:
        return len(self._resolved())


class UsageMiddleware:
    """ASGI middleware that tags usage records with ``route``, ``user``, ``tenant`` (and more).

    ``route`` is the matched route's template (``/items/{id}``) when the framework records it in the
    scope (Starlette and FastAPI do), else the request path.  ``user`` and ``tenant`` come from the
    ``user_header`` and ``tenant_header`` request headers; ``headers`` maps further header names to
    tag names.  ``tags`` are constant tags.  Usage::

        app.add_middleware(llmtally.UsageMiddleware, user_header="x-user-id")
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        user_header: str | None = "x-user-id",
        tenant_header: str | None = "x-tenant-id",
        headers: Mapping[str, str] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        self.app = app
        wanted: dict[bytes, str] = {}
        if user_header:
            wanted[user_header.lower().encode("latin-1")] = "user"
        if tenant_header:
            wanted[tenant_header.lower().encode("latin-1")] = "tenant"
        for header, tag in (headers or {}).items():
            wanted[header.lower().encode("latin-1")] = tag
        self._wanted = wanted
        self._constant = {str(k): str(v) for k, v in (tags or {}).items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app with the request's tags in effect."""
        if scope.get("type") not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        base = {**_tags.get(), **self._constant}
        path = scope.get("path")
        if isinstance(path, str):
            base["route"] = path
        for name, value in scope.get("headers") or ():
            tag = self._wanted.get(name.lower())
            if tag is not None:
                base[tag] = value.decode("latin-1")
        token = _tags.set(_RequestTags(base, scope))
        try:
            await self.app(scope, receive, send)
        finally:
            _tags.reset(token)
