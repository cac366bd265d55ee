"""The usage page as a FastAPI app: a thin layer over the store's query layer and the page renderer.

Routes (relative to where the app is mounted, ``/llmtally`` in Airflow):

``GET /``                               the page (``start``, ``end`` or ``day``, ``lang``, filters)
``GET /csv/{table}``                    one of its tables as CSV (same parameters)
``GET /reports/{day}/{lang}``           an archived daily report
``GET /runs/{dag_id}/{run_id}``         "Usage of this run" (``lang``)
``GET /runs/{dag_id}/{run_id}/csv/{table}``  one of its tables as CSV

No route takes SQL, a table or a column name: tables are looked up in fixed allow-lists, filters
name dimensions from :data:`~llmtally.web._query.FILTERS`, and bad input is a 400 saying what is
allowed.  Authentication is the host's: Airflow passes its ``requires_authenticated`` dependency
(:mod:`llmtally.web.airflow`); :func:`create_app` applies whatever ``dependencies`` it is given to
every route.  There are no API docs routes (they would load assets from a CDN).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, date, datetime
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

from .._exceptions import InputError, LlmtallyError, StorageError
from .._time import day_bounds, report_timezone, zone
from ..report import ReportSettings
from ..store import UsageStore
from ._csv import table_csv
from ._currency import exchange_rates
from ._data import read_page
from ._i18n import words
from ._page import render_page, render_run
from ._query import parse_date, parse_query
from ._run import RunSource, RunView, read_run
from ._sections import TABLE_IDS

__all__ = ["SECURITY_HEADERS", "StoreOpener", "create_app"]

StoreOpener = Callable[[], AbstractContextManager[UsageStore]]
"""Opens the store for one request (``with opener() as store:``)."""

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
"""Sent with every answer: nothing may load from elsewhere, the page frames only in its own origin."""

_RUN_TABLES = ("files", "recount", "status", "quarantine", "drift")


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def create_app(
    open_store: StoreOpener,
    *,
    dependencies: Sequence[Any] = (),
    runs: RunSource | None = None,
    timezone: str | None = None,
    settings: ReportSettings | None = None,
    today: Callable[[], date] | None = None,
) -> FastAPI:
    """The app over the store ``open_store`` opens per request.

    ``dependencies`` guard every route (Airflow: ``[Depends(requires_authenticated())]``); ``runs``
    reads DAG runs for the per-run view (``None``: that view answers 404); ``timezone`` and
    ``settings`` default to the report's (``llmtally.toml``); ``today`` (the local date) is for tests.
    """
    tz = timezone or report_timezone()
    zone(tz)
    cfg = settings or ReportSettings.from_config()

    def local_today() -> date:
        return today() if today is not None else datetime.now(zone(tz)).date()

    app = FastAPI(
        title="llmtally usage",
        dependencies=list(dependencies),
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    app.add_middleware(_SecurityHeaders)

    @app.exception_handler(LlmtallyError)
    async def library_error(request: Request, exc: LlmtallyError) -> JSONResponse:
        code = 503 if isinstance(exc, StorageError) else 400
        return JSONResponse({"detail": str(exc)}, status_code=code)

    def page(request: Request) -> tuple[str, dict[str, Any]]:
        q = parse_query(request.query_params.multi_items(), today=local_today(), default_lang=cfg.lang)
        rates = exchange_rates()
        end = day_bounds(q.end, tz)[1]  # budgets as they stood at the end of the range, or now
        at = end if q.end < local_today() else min(end, datetime.now(UTC))
        with open_store() as s:
            data = read_page(s, q, tz, cfg.thresholds, budgets=cfg.budgets, rates=rates, now=at)
        html, tables = render_page(data, rates, base=_base(request))
        return html, {"tables": tables, "query": q}

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> HTMLResponse:
        html, _ = page(request)
        return HTMLResponse(html)

    @app.get("/csv/{table_id}")
    def csv(table_id: str, request: Request) -> Response:
        if table_id not in TABLE_IDS:
            raise HTTPException(404, f"no table {table_id[:40]!r}; tables: {', '.join(TABLE_IDS)}")
        _, made = page(request)
        q = made["query"]
        name = f"llmtally-{table_id}-{q.start}-{q.end}.csv"
        return _csv_response(table_csv(made["tables"][table_id]), name)

    @app.get("/reports/{day}/{lang}", response_class=HTMLResponse)
    def archived(day: str, lang: str) -> HTMLResponse:
        d = parse_date("day", day)
        if lang not in ("zh", "en"):
            raise InputError(f"lang={lang[:20]!r} is not supported; use zh or en")
        with open_store() as s:
            hit = s.archived_report(d, lang)
        if hit is None:
            raise HTTPException(404, f"no {lang} report archived for {d}")
        return HTMLResponse(hit[0])

    def run_view(dag_id: str, run_id: str, request: Request) -> tuple[RunView, str]:
        lang = request.query_params.get("lang") or cfg.lang
        unknown = set(request.query_params) - {"lang"}
        if unknown:
            raise InputError(f"unknown parameter {sorted(unknown)[0][:40]!r}; the run view takes lang")
        w = words(lang)
        facts = runs.read(dag_id, run_id) if runs is not None else None
        if facts is None:
            raise HTTPException(404, f"no run {run_id[:100]!r} of {dag_id[:100]!r}")
        with open_store() as s:
            return read_run(s, facts, w), lang

    @app.get("/runs/{dag_id}/{run_id}", response_class=HTMLResponse)
    def run(dag_id: str, run_id: str, request: Request) -> HTMLResponse:
        view, lang = run_view(dag_id, run_id, request)
        return HTMLResponse(render_run(view, lang=lang, timezone=tz, base=_base(request)))

    @app.get("/runs/{dag_id}/{run_id}/csv/{table_id}")
    def run_csv(dag_id: str, run_id: str, table_id: str, request: Request) -> Response:
        if table_id not in _RUN_TABLES:
            raise HTTPException(404, f"no table {table_id[:40]!r}; tables: {', '.join(_RUN_TABLES)}")
        view, _ = run_view(dag_id, run_id, request)
        if table_id not in view.tables:
            raise HTTPException(404, view.message or "no such table for this run")
        return _csv_response(table_csv(view.tables[table_id]), f"llmtally-run-{table_id}.csv")

    return app


class _SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every answer (a plain ASGI middleware: the body streams through)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message["headers"] = [*message.get("headers", []), *(h for h in extra if h[0] not in have)]
            await send(message)

        await self.app(scope, receive, with_headers)


def _csv_response(body: bytes, filename: str) -> Response:
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
