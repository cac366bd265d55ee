"""The usage page: token usage, cost, drill-down, reconciliation and data quality in a browser.

A FastAPI app (:func:`create_app`) over the store's query layer, server-rendered (HTML, inline
CSS and SVG, no scripts, nothing fetched from elsewhere), in Chinese and English; every table
downloads as CSV, and :func:`usage_export` is the chargeback table ``llmtally export`` writes.
In Airflow the plugin in ``plugins/llmtally_plugin.py`` mounts it at ``/llmtally`` behind Airflow's
authentication (:mod:`llmtally.web.airflow`).

Importing this package is light (no FastAPI, Jinja2 or database driver): the names load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._app import create_app
    from ._csv import csv_bytes, neutralise
    from ._data import PageData, read_page
    from ._export import parquet_bytes, usage_export
    from ._query import PageQuery, parse_query
    from ._run import RunFacts, RunSource

__all__ = [
    "PageData",
    "PageQuery",
    "RunFacts",
    "RunSource",
    "create_app",
    "csv_bytes",
    "neutralise",
    "parquet_bytes",
    "parse_query",
    "read_page",
    "usage_export",
]

_WHERE = {
    "create_app": "_app",
    "csv_bytes": "_csv",
    "neutralise": "_csv",
    "PageData": "_data",
    "read_page": "_data",
    "parquet_bytes": "_export",
    "usage_export": "_export",
    "PageQuery": "_query",
    "parse_query": "_query",
    "RunFacts": "_run",
    "RunSource": "_run",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        from importlib import import_module

        return getattr(import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(name)
