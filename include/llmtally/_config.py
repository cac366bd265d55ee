"""Configuration: constructor argument > environment variable > ``llmtally.toml`` > default.

Every environment variable llmtally reads is a constant here.
"""

from __future__ import annotations

import os
import threading
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._exceptions import ConfigError

__all__ = [
    "ENV_CONFIG",
    "ENV_DB_SCHEMA",
    "ENV_DB_URL",
    "ENV_LOG_DIR",
    "ENV_LOG_DIRS",
    "ENV_LOG_MAX_QUEUE",
    "ENV_LOG_ON_FULL",
    "ENV_LOG_TEXT",
    "ENV_PRELOAD_MODELS",
    "ENV_REPORT_CURRENCY",
    "ENV_REPORT_DIR",
    "ENV_REPORT_FROM",
    "ENV_REPORT_LANG",
    "ENV_SERVICE",
    "ENV_SHARD_RECORDS",
    "ENV_SMTP_URL",
    "ENV_STAGING_DIR",
    "ENV_TIMEZONE",
    "Config",
    "ModelEntry",
    "load_config",
]

ENV_CONFIG = "LLMTALLY_CONFIG"
"""Path of the TOML config file (default: ``llmtally.toml`` in the working directory)."""
ENV_LOG_DIR = "LLMTALLY_LOG_DIR"
"""Directory a service's :class:`UsageLogger` writes raw usage logs into."""
ENV_LOG_DIRS = "LLMTALLY_LOG_DIRS"
"""Directories or glob patterns the pipeline collects from, separated by ``os.pathsep``."""
ENV_LOG_TEXT = "LLMTALLY_LOG_TEXT"
"""``full`` (default), ``hash`` or ``prefix:N``: how much raw text the logger keeps."""
ENV_LOG_MAX_QUEUE = "LLMTALLY_LOG_MAX_QUEUE"
"""Records a :class:`UsageLogger` queues before ``on_full`` applies (default 65536)."""
ENV_LOG_ON_FULL = "LLMTALLY_LOG_ON_FULL"
"""What a :class:`UsageLogger` does with a record when its queue is full: ``write`` it on the
caller's thread (default), ``drop`` it (counted, and written down as a loss marker) or ``block``."""
ENV_SERVICE = "LLMTALLY_SERVICE"
"""Service name recorded by the logger (default: the program name)."""
ENV_REPORT_DIR = "LLMTALLY_REPORT_DIR"
"""Directory reports are written into."""
ENV_REPORT_CURRENCY = "LLMTALLY_REPORT_CURRENCY"
"""Currency reports total costs in, e.g. ``CNY`` (default: ``[currency] report`` in llmtally.toml,
else CNY); rates come from ``[[currency.rates]]`` (see :mod:`llmtally.pricing`)."""
ENV_REPORT_LANG = "LLMTALLY_REPORT_LANG"
"""Language of the daily report, ``zh`` or ``en`` (default: ``[report] lang`` in llmtally.toml, else zh)."""
ENV_REPORT_FROM = "LLMTALLY_REPORT_FROM"
"""Sender address of report emails sent outside Airflow (default ``llmtally@localhost``)."""
ENV_SMTP_URL = "LLMTALLY_SMTP_URL"
"""SMTP server for report emails sent outside Airflow: ``smtp://[user:pw@]host[:port][?starttls=1]``
or ``smtps://...`` (inside Airflow the ``smtp_default`` connection is used instead)."""
ENV_STAGING_DIR = "LLMTALLY_STAGING_DIR"
"""Where a DAG run's tasks hand text-free intermediate files to each other (a volume every worker
mounts; default: the system temp dir)."""
ENV_SHARD_RECORDS = "LLMTALLY_SHARD_RECORDS"
"""Records per recount shard (else ``[recount] shard_records`` in llmtally.toml, else 100,000)."""
ENV_PRELOAD_MODELS = "LLMTALLY_PRELOAD_MODELS"
"""Models whose tokenizers a Celery worker loads once per worker process, before any task
(comma-separated names, or ``*`` for every ``[models]`` entry of llmtally.toml); set it on the
workers of the recount queue (see :mod:`llmtally.jobs.celery`)."""
ENV_TIMEZONE = "LLMTALLY_TIMEZONE"
"""Time zone days are cut in (default ``Asia/Shanghai``)."""
ENV_DB_URL = "AIRFLOW_CONN_LLM_USAGE_DB"
"""The aggregate database: the Airflow connection ``llm_usage_db`` as an env var, in URI form
(``postgresql://user:pw@host:5432/db``) or Airflow's JSON form; read by
:func:`llmtally.store.dsn_from_env`."""
ENV_DB_SCHEMA = "LLMTALLY_DB_SCHEMA"
"""PostgreSQL schema holding llmtally's tables (default ``llmtally``)."""

DEFAULT_TIMEZONE = "Asia/Shanghai"


@dataclass(frozen=True)
class ModelEntry:
    """One ``[models."NAME"]`` table: where its tokenizer is and how it is priced."""

    name: str
    tokenizer: str | None
    template_kwargs: Mapping[str, Any] = field(default_factory=dict)
    price: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Config:
    """Parsed ``llmtally.toml``."""

    path: Path | None = None
    models: Mapping[str, ModelEntry] = field(default_factory=dict)
    timezone: str = DEFAULT_TIMEZONE
    raw: Mapping[str, Any] = field(default_factory=dict)

    def section(self, name: str) -> Mapping[str, Any]:
        """Return a top-level table (``{}`` when absent)."""
        value = self.raw.get(name, {})
        if not isinstance(value, Mapping):
            raise ConfigError(f"{self.path}: [{name}] must be a table")
        return value

    def tables(self, name: str) -> list[Mapping[str, Any]]:
        """Return a top-level array of tables, ``[[name]]`` (``[]`` when absent)."""
        value = self.raw.get(name, [])
        if not isinstance(value, list) or not all(isinstance(t, Mapping) for t in value):
            raise ConfigError(f"{self.path}: {name} must be an array of tables, written [[{name}]]")
        return list(value)


_lock = threading.Lock()
_cache: dict[tuple[str, float], Config] = {}


def _config_path(path: str | os.PathLike[str] | None) -> Path | None:
    if path is not None:
        return Path(path)
    env = os.environ.get(ENV_CONFIG)
    if env:
        p = Path(env)
        if not p.is_file():
            raise ConfigError(f"{ENV_CONFIG}={env} does not name a file")
        return p
    p = Path("llmtally.toml")
    return p if p.is_file() else None


def _parse(path: Path) -> Config:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    models: dict[str, ModelEntry] = {}
    for name, table in raw.get("models", {}).items():
        if not isinstance(table, Mapping):
            raise ConfigError(f'{path}: [models."{name}"] must be a table')
        tok = table.get("tokenizer")
        price = table.get("price")
        if tok is None and price is None:
            raise ConfigError(
                f'{path}: [models."{name}"] needs tokenizer = "<folder | repo id | known model>" '
                "and/or a price table"
            )
        if tok is not None and (not isinstance(tok, str) or not tok):
            raise ConfigError(f'{path}: [models."{name}"].tokenizer must be a non-empty string')
        kwargs = table.get("template_kwargs", {})
        if not isinstance(kwargs, Mapping):
            raise ConfigError(f'{path}: [models."{name}"].template_kwargs must be a table')
        if price is not None and not isinstance(price, Mapping):
            raise ConfigError(f'{path}: [models."{name}"].price must be a table')
        if tok is not None and not Path(tok).expanduser().is_absolute() and (path.parent / tok).exists():
            tok = str((path.parent / tok).resolve())
        models[name] = ModelEntry(name, tok, dict(kwargs), price)
    tz = raw.get("timezone", DEFAULT_TIMEZONE)
    if not isinstance(tz, str):
        raise ConfigError(f"{path}: timezone must be a string such as 'Asia/Shanghai'")
    return Config(path=path, models=models, timezone=tz, raw=raw)


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load the config (explicit path > ``LLMTALLY_CONFIG`` > ``./llmtally.toml`` > empty).

    Parsed files are cached by path and modification time, so edits are picked up.
    """
    p = _config_path(path)
    if p is None:
        return Config(timezone=os.environ.get(ENV_TIMEZONE, DEFAULT_TIMEZONE))
    try:
        key = (str(p.resolve()), p.stat().st_mtime)
    except OSError as exc:
        raise ConfigError(f"cannot read config {p}: {exc}") from exc
    with _lock:
        cfg = _cache.get(key)
        if cfg is None:
            cfg = _parse(p)
            _cache[key] = cfg
    tz = os.environ.get(ENV_TIMEZONE)
    if tz:
        cfg = Config(path=cfg.path, models=cfg.models, timezone=tz, raw=cfg.raw)
    return cfg
