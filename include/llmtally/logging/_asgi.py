"""``UsageMiddleware``: tag every usage record of an HTTP request with its route, user and tenant.

Pure ASGI (no Starlette import), so it works with FastAPI, Starlette and any ASGI app, including
streaming responses.  Tags travel in a context variable: records logged by the endpoint, by code it
awaits, or by sync endpoints run in a thread pool (which copy the context) all carry them.

Attribution is a bill: user and tenant come from what the *application* says (its auth sets
``request.state.user`` / ``request.state.tenant``, or an ``identify`` callable reads them), never
from what a client sends.  Request headers are read only when named in ``trusted_headers`` (for a
gateway that authenticates and sets them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from typing import Any

from ._context import _tags

__all__ = ["Identify", "UsageMiddleware", "from_state"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


Identify = Callable[[Scope], Mapping[str, Any] | None]
"""Reads the request's attribution from its scope once the app ran: ``{"user": ..., "tenant": ...}``."""


def _ident(value: Any) -> str | None:
    """A tag value from what an app stores: a string or number, or an object's ``id``."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int):
        return str(value)
    ident = getattr(value, "id", None)
    return str(ident) if isinstance(ident, str | int) and not isinstance(ident, bool) else None


def from_state(scope: Scope) -> dict[str, Any]:
    """The default :data:`Identify`: ``request.state.user`` and ``request.state.tenant`` (Starlette
    and FastAPI keep ``request.state`` in ``scope["state"]``), as set by the app's own auth."""
    state = scope.get("state")
    if not isinstance(state, Mapping):
        return {}
    return {k: state.get(k) for k in ("user", "tenant") if k in state}


class _RequestTags(Mapping[str, str]):
    """Tags whose ``route`` and identity are read when the record is written, after the router
    matched the route and the app's auth said who is calling."""

    __slots__ = ("_base", "_identify", "_scope")

    def __init__(self, base: dict[str, str], scope: Scope, identify: Identify | None) -> None:
        self._base = base
        self._scope = scope
        self._identify = identify

    def _resolved(self) -> dict[str, str]:
        tags = dict(self._base)
        route = getattr(self._scope.get("route"), "path", None)
        if isinstance(route, str):
            tags["route"] = route
        if self._identify is not None:
            try:
                said = self._identify(self._scope) or {}
            except Exception:  # the app's callable failed: the record keeps its other tags
                said = {}
            for key, value in said.items():
                ident = _ident(value)
                if ident is not None:
                    tags[str(key)] = ident
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
    scope (Starlette and FastAPI do), else the request path.  ``user`` and ``tenant`` come from
    ``identify(scope)``, called when a record is written (after the app's auth ran); the default,
    :func:`from_state`, reads ``request.state.user`` / ``request.state.tenant``.  Client headers are
    never trusted by default: ``trusted_headers`` maps header names to tag names for a gateway that
    sets them (``{"x-user-id": "user"}``).  ``tags`` are constant tags.  Usage::

        app.add_middleware(llmtally.UsageMiddleware)        # and in your auth: request.state.user = ...
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        identify: Identify | None = from_state,
        trusted_headers: Mapping[str, str] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        self.app = app
        self._identify = identify
        self._wanted = {h.lower().encode("latin-1"): t for h, t in (trusted_headers or {}).items()}
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
        token = _tags.set(_RequestTags(base, scope, self._identify))
        try:
            await self.app(scope, receive, send)
        finally:
            _tags.reset(token)
