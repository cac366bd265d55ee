"""Celery worker hook: recount engines loaded once per worker process, before any task.

Point Airflow's Celery configuration here (on the workers; harmless elsewhere)::

    AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=llmtally.jobs.celery.CELERY_CONFIG
    LLMTALLY_PRELOAD_MODELS='*'          # or "qwen3-8b,deepseek-chat"; on the recount queue's workers

:data:`CELERY_CONFIG` is Airflow's own default Celery configuration (with time for a pool process to
preload before it reports for work); importing this module
(which Airflow does in every Celery worker before its pool processes start) connects Celery's
``worker_process_init`` signal to :func:`llmtally.jobs._engines.preload`, so each pool process loads
the named models' tokenizers and engines once.  Airflow 3 runs every task in a fork of that pool
process, so every recount shard finds them loaded (its summary says ``"preloaded"``).
"""

from __future__ import annotations

from typing import Any

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from celery.signals import worker_process_init

from ._engines import preload, preload_models

__all__ = ["CELERY_CONFIG"]

CELERY_CONFIG: dict[str, Any] = {**DEFAULT_CELERY_CONFIG, "worker_proc_alive_timeout": 300.0}
"""Airflow's default Celery configuration, with one change: a pool process may take up to 300 s
(Celery's default: 4) to report for work, since it preloads the engines first; otherwise Celery
kills a replacement pool process (after a crash, or when autoscaling) that is still loading."""


def _preload_engines(**_kwargs: Any) -> None:
    models = preload_models()
    if models:
        preload(models)


worker_process_init.connect(_preload_engines, weak=False)
