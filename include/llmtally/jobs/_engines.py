"""Recount engines kept per process, and loaded before the first task where a worker preloads them.

A recount shard asks :func:`engine_for` for each model it meets.  The first ask in a process loads
the tokenizer and builds its engine (with the engine's self-check); later asks -- other shards run
by the same process, e.g. in ``dag.test()`` -- get the same engine.  On a Celery worker every
Airflow task runs in a fork of the worker's pool process, so what that pool process loaded before
forking is there in every task at no cost: :func:`preload` (called by :mod:`llmtally.jobs.celery`
when ``LLMTALLY_PRELOAD_MODELS`` is set) loads each named model once per worker process, not once
per shard.  Engines that use a GPU are built after the fork (CUDA cannot cross a fork): for them
only the tokenizer (vocabulary, merges, chat templates) is preloaded.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

from .._config import ENV_PRELOAD_MODELS, load_config

__all__ = ["engine_for", "loaded_engines", "preload", "preload_models"]

log = logging.getLogger("llmtally.jobs")

_engines: dict[tuple[str, str, int], Any] = {}
_preloaded: set[tuple[str, str, int]] = set()
_tokenizers: dict[tuple[str, str, int], Any] = {}  # preloaded for GPU engines, built after the fork
_lock = threading.Lock()


def _key(model: str) -> tuple[str, str, int]:
    """A model under the configuration in force (another llmtally.toml is another engine)."""
    cfg = load_config()
    path = cfg.path
    try:
        mtime = path.stat().st_mtime_ns if path is not None else 0
    except OSError:
        mtime = 0
    return model, str(path or ""), mtime


def _gpu_configured() -> bool:
    section = load_config().section("recount")
    return str(section.get("engine", "")) in ("gpu", "auto") or str(section.get("device", "")) in (
        "cuda",
        "auto",
    )


def engine_for(model: str) -> tuple[Any, str]:
    """This process's :class:`~llmtally.tokens.RecountEngine` for ``model`` and where it came from:
    ``"preloaded"`` (loaded by the worker before this task), ``"preloaded tokenizer"`` (a GPU
    engine built now over the tokenizer the worker loaded), ``"reused"`` (loaded by an earlier task
    of this process) or ``"loaded"`` (just now).  Engines live as long as the process: after
    changing a tokenizer folder or chat template in place, restart the workers (a changed
    llmtally.toml is noticed).  Raises what
    :func:`~llmtally.tokens.load_engine` raises (an unknown model, a tokenizer that cannot load)."""
    from ..tokens import load_engine

    key = _key(model)
    with _lock:
        eng = _engines.get(key)
        if eng is not None:
            return eng, "preloaded" if key in _preloaded else "reused"
        base = _tokenizers.get(key)
    eng = load_engine(model if base is None else base)
    with _lock:
        eng = _engines.setdefault(key, eng)
    return eng, "loaded" if base is None else "preloaded tokenizer"


def loaded_engines() -> dict[str, Any]:
    """The engines this process holds, by model name."""
    with _lock:
        return {key[0]: eng for key, eng in _engines.items()}


def preload_models(value: str | None = None) -> list[str]:
    """The models named by ``value`` (default ``LLMTALLY_PRELOAD_MODELS``): comma-separated names,
    ``*`` for every ``[models]`` entry of llmtally.toml; empty for none."""
    text = (os.environ.get(ENV_PRELOAD_MODELS, "") if value is None else value).strip()
    names: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if part == "*":
            names.extend(load_config().models)
        elif part:
            names.append(part)
    return list(dict.fromkeys(names))


def preload(models: Iterable[str]) -> dict[str, float]:
    """Load ``models`` into this process (seconds each).  A model that fails to load is logged and
    left to the task that meets it (which then fails with the reason); preloading never raises."""
    from ..tokens import load_tokenizer

    gpu = _gpu_configured()
    took: dict[str, float] = {}
    for model in models:
        t0 = time.perf_counter()
        try:
            if gpu:  # tokenizer only: the engine (and CUDA) is built in the task, after the fork;
                # kept here, as the registry starts afresh in a forked child
                base = load_tokenizer(model)
                with _lock:
                    _tokenizers[_key(model)] = base
            else:
                engine_for(model)
                with _lock:
                    _preloaded.add(_key(model))
        except Exception as exc:  # the task that meets the model reports it properly
            log.warning("preload of %s failed (a task that meets it will load it itself): %s", model, exc)
            continue
        took[model] = round(time.perf_counter() - t0, 3)
    if took:
        log.info("preloaded recount engines in process %d: %s", os.getpid(), took)
    return took
