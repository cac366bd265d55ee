"""Connection strings for the aggregate database, from Airflow's connection forms (no Airflow import)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .._config import ENV_DB_SCHEMA, ENV_DB_URL
from .._exceptions import ConfigError

__all__ = ["DEFAULT_SCHEMA", "conninfo", "dsn_from_env", "schema_from_env"]

DEFAULT_SCHEMA = "llmtally"
_LIBPQ_EXTRAS = frozenset(
    {
        "sslmode",
        "sslcert",
        "sslkey",
        "sslrootcert",
        "sslcrl",
        "connect_timeout",
        "application_name",
        "options",
        "target_session_attrs",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "gssencmode",
        "client_encoding",
    }
)


def conninfo(
    *,
    host: str | None = None,
    port: int | str | None = None,
    dbname: str | None = None,
    user: str | None = None,
    password: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """A libpq connection string from Airflow connection fields (unknown extras are dropped)."""
    from psycopg.conninfo import make_conninfo

    params: dict[str, Any] = {
        "host": host or None,
        "port": port or None,
        "dbname": dbname or None,
        "user": user or None,
        "password": password or None,
    }
    for key, value in (extra or {}).items():
        if key in _LIBPQ_EXTRAS and value is not None:
            params[key] = value
    return make_conninfo("", **{k: v for k, v in params.items() if v is not None})


def _from_uri(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.scheme.split("+")[0] not in ("postgres", "postgresql"):
        raise ConfigError(f"{ENV_DB_URL}: expected a postgresql:// URI, got scheme {parts.scheme!r}")
    extra = dict(parse_qsl(parts.query))
    if "__extra__" in extra:
        try:
            extra.update(json.loads(extra.pop("__extra__")))
        except ValueError as exc:
            raise ConfigError(f"{ENV_DB_URL}: __extra__ is not JSON") from exc
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{ENV_DB_URL}: bad port") from exc
    # libpq reads connection parameters from the query too, where they win (``?host=/run/socket``
    # names a Unix-socket folder, the only way a URI can)
    return conninfo(
        host=extra.pop("host", None) or unquote(parts.hostname or "") or None,
        port=extra.pop("port", None) or port,
        dbname=extra.pop("dbname", None) or unquote(parts.path.lstrip("/")) or None,
        user=extra.pop("user", None) or (unquote(parts.username) if parts.username else None),
        password=extra.pop("password", None) or (unquote(parts.password) if parts.password else None),
        extra=extra,
    )


def _from_json(text: str) -> str:
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{ENV_DB_URL}: not valid JSON") from exc
    if not isinstance(obj, dict):
        raise ConfigError(f"{ENV_DB_URL}: the JSON form must be an object")
    extra = obj.get("extra") or {}
    if isinstance(extra, str):
        extra = json.loads(extra) if extra.strip() else {}
    return conninfo(
        host=obj.get("host"),
        port=obj.get("port"),
        dbname=obj.get("schema"),
        user=obj.get("login"),
        password=obj.get("password"),
        extra=extra,
    )


def dsn_from_env(env: Mapping[str, str] | None = None) -> str:
    """The DSN of ``AIRFLOW_CONN_LLM_USAGE_DB`` (Airflow's URI or JSON form, or a libpq string).

    Raises :class:`ConfigError` when it is not set.
    """
    value = (env if env is not None else os.environ).get(ENV_DB_URL, "").strip()
    if not value:
        raise ConfigError(
            f"no usage database: set {ENV_DB_URL} (e.g. postgresql://user:pw@host:5432/llm_usage) "
            "or create the Airflow connection llm_usage_db"
        )
    if value.startswith("{"):
        return _from_json(value)
    if "://" in value:
        return _from_uri(value)
    return value


def schema_from_env(env: Mapping[str, str] | None = None) -> str:
    """``LLMTALLY_DB_SCHEMA`` or ``llmtally``."""
    return (env if env is not None else os.environ).get(ENV_DB_SCHEMA, "").strip() or DEFAULT_SCHEMA
