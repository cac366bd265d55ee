"""Airflow edge of the usage page: what ``plugins/llmtally_plugin.py`` registers (Airflow ≥ 3.1).

* :data:`FASTAPI_APPS` — the app mounted by ``airflow api-server`` at ``/llmtally``.  It is a
  :class:`LazyApp`: importing the plugin (every Airflow process does, the scheduler and workers
  too) imports nothing but this module; FastAPI, Jinja2 and psycopg load on the first request.
  Airflow does not protect plugin apps: every route depends on Airflow's own
  ``requires_authenticated()``, so a request needs the UI's session cookie or a bearer token.
* :data:`EXTERNAL_VIEWS` — "LLM usage" in the navigation (Browse), shown inside the UI at
  ``/plugin/llmtally``, and "Usage of this run" as a tab of every DAG run's page
  (``destination: dag_run``; the UI fills in ``{DAG_ID}`` and ``{RUN_ID}``).

The usage database is ``AIRFLOW_CONN_LLM_USAGE_DB`` when set, else the Airflow connection
``llm_usage_db`` (read in the api-server through its secrets backends); runs and their XComs are
read from Airflow's metadata database.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..store import UsageStore
    from ._run import RunFacts

__all__ = ["EXTERNAL_VIEWS", "FASTAPI_APPS", "URL_PREFIX", "AirflowRuns", "LazyApp", "airflow_app"]

URL_PREFIX = "/llmtally"
"""Where the api-server mounts the app."""

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class LazyApp:
    """An ASGI app that builds the real one (``factory()``) on its first request."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._app: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "llmtally.web.airflow:airflow_app"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = self._factory()
        await self._app(scope, receive, send)


def _usage_dsn() -> str:
    import os

    from .._config import ENV_DB_URL
    from ..store import conninfo, dsn_from_env

    if os.environ.get(ENV_DB_URL):
        return dsn_from_env()
    from airflow.models.connection import Connection

    from ..store.airflow import CONN_ID

    conn = Connection.get_connection_from_secrets(CONN_ID)
    return conninfo(
        host=conn.host,
        port=conn.port,
        dbname=conn.schema,
        user=conn.login,
        password=conn.password,
        extra=conn.extra_dejson,
    )


@contextmanager
def _open_store() -> Iterator[UsageStore]:
    from ..store import PostgresStore, schema_from_env

    with PostgresStore(_usage_dsn(), schema=schema_from_env(), migrate=False) as store:
        yield store


class AirflowRuns:
    """DAG runs and their tasks' return values, from Airflow's metadata database (api-server only)."""

    def read(self, dag_id: str, run_id: str) -> RunFacts | None:
        """The run's state and the ``return_value`` XCom of each of its tasks."""
        from airflow.models.dagrun import DagRun
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        from ..pipeline.shards import merge_recount_summaries
        from ._run import RunFacts

        with create_session() as session:
            state = session.scalar(
                select(DagRun.state).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
            )
            if state is None:
                return None
            query = XComModel.get_many(run_id=run_id, dag_ids=dag_id, key="return_value")
            rows: list[Any] = list(session.scalars(query))
            xcoms = {r.task_id: XComModel.deserialize_value(r) for r in rows if r.map_index in (-1, None)}
            mapped: dict[str, list[tuple[int, Any]]] = {}
            for r in rows:
                if r.map_index not in (-1, None):
                    mapped.setdefault(r.task_id, []).append((r.map_index, XComModel.deserialize_value(r)))
        for task_id, parts in mapped.items():  # the recount: one summary per shard, merged for the day
            values = [v for _, v in sorted(parts, key=lambda part: part[0])]
            xcoms[task_id] = merge_recount_summaries(values) if task_id == "recount" else values
        return RunFacts(dag_id, run_id, str(state), xcoms)


def airflow_app() -> Any:
    """The app as the api-server serves it: Airflow's authentication on every route."""
    from airflow.api_fastapi.core_api.security import requires_authenticated
    from fastapi import Depends

    from ._app import create_app

    return create_app(_open_store, dependencies=[Depends(requires_authenticated())], runs=AirflowRuns())


FASTAPI_APPS = [{"app": LazyApp(airflow_app), "url_prefix": URL_PREFIX, "name": "llmtally usage"}]
"""``AirflowPlugin.fastapi_apps``."""

EXTERNAL_VIEWS = [
    {
        "name": "LLM usage",
        "href": "llmtally/",
        "url_route": "llmtally",
        "destination": "nav",
        "category": "browse",
    },
    {
        "name": "Usage of this run",
        "href": "llmtally/runs/{DAG_ID}/{RUN_ID}",
        "url_route": "llmtally-run",
        "destination": "dag_run",
    },
]
"""``AirflowPlugin.external_views``."""
