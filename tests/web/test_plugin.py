"""The Airflow plugin, as Airflow 3.3 loads and mounts it: registered from the plugins folder,
light to import, views Airflow's own schema accepts, and the app refuses anonymous requests."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from tests.support import REPO_ROOT


def test_airflow_loads_the_plugin_from_the_plugins_folder() -> None:
    from airflow import plugins_manager

    infos = {p["name"]: p for p in plugins_manager.get_plugin_info()}
    assert not {k: v for k, v in plugins_manager.get_import_errors().items() if "llmtally" in k}
    info = infos["llmtally"]
    assert str(info["source"]).endswith("llmtally_plugin.py")
    (app,) = info["fastapi_apps"]
    assert app["url_prefix"] == "/llmtally" and app["name"] == "llmtally usage"
    views = {v["url_route"]: v for v in info["external_views"]}
    assert views["llmtally"]["destination"] == "nav" and views["llmtally"]["href"] == "llmtally/"
    assert views["llmtally"]["name"] == "LLM usage" and views["llmtally"]["category"] == "browse"
    run = views["llmtally-run"]
    assert run["destination"] == "dag_run" and run["href"] == "llmtally/runs/{DAG_ID}/{RUN_ID}"


def test_the_views_fit_airflows_own_schema() -> None:
    from airflow.api_fastapi.core_api.datamodels.plugins import ExternalViewResponse, FastAPIAppResponse

    from llmtally.web.airflow import EXTERNAL_VIEWS, FASTAPI_APPS

    for view in EXTERNAL_VIEWS:
        parsed = ExternalViewResponse.model_validate(view)
        assert parsed.destination == view["destination"] and parsed.url_route == view["url_route"]
    FastAPIAppResponse.model_validate({**FASTAPI_APPS[0], "app": repr(FASTAPI_APPS[0]["app"])})


def test_importing_the_plugin_loads_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "import airflow.plugins_manager\n"
        "before = set(sys.modules)\n"
        f"sys.path.insert(0, {str(REPO_ROOT / 'plugins')!r})\n"
        "import llmtally_plugin\n"
        "print('\\n'.join(sorted(set(sys.modules) - before)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    loaded = set(out.stdout.split())
    assert "llmtally.web.airflow" in loaded
    heavy = {
        m
        for m in loaded
        if m.split(".")[0] in ("fastapi", "jinja2", "psycopg", "matplotlib", "pandas", "pyarrow")
    }
    heavy |= {m for m in loaded if m.startswith(("llmtally.store", "llmtally.report", "llmtally.web._"))}
    assert not heavy, sorted(heavy)


def test_the_mounted_app_refuses_anonymous_requests() -> None:
    from airflow.api_fastapi.app import init_plugins
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    root = FastAPI()
    init_plugins(root)  # what `airflow api-server` does with every plugin's fastapi_apps
    client: Any = TestClient(root)
    for path in (
        "/llmtally/",
        "/llmtally/csv/daily",
        "/llmtally/reports/2026-11-26/zh",
        "/llmtally/runs/d/r",
    ):
        r = client.get(path)
        assert r.status_code == 401, (path, r.status_code, r.text)
