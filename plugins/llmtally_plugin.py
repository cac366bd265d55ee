"""llmtally in the Airflow UI (Airflow >= 3.1): "LLM usage" in Browse, "Usage of this run" on runs.

Registration only: the app and the views live in ``llmtally.web.airflow``; importing this file
loads nothing heavy (the app is built on its first request in the api-server).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from llmtally.web.airflow import EXTERNAL_VIEWS, FASTAPI_APPS


class LlmtallyPlugin(AirflowPlugin):
    """The usage page (FastAPI app at /llmtally) and its two UI views."""

    name = "llmtally"
    fastapi_apps = FASTAPI_APPS
    external_views = EXTERNAL_VIEWS
