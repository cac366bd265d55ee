"""Alert channels from Airflow connections: ``channel_from_airflow("alerts_dingtalk")``.

Reads the connection through ``airflow.sdk.BaseHook.get_connection`` (inside a task: the
``AIRFLOW_CONN_*`` environment variables, the secrets backends, then the execution API) and builds
the channel with :func:`llmtally.alerts.channel_from_connection`.  An email channel sends through
Airflow's ``SmtpHook`` on the same connection.  Imports Airflow, so import this module only in tasks.
"""

from __future__ import annotations

from collections.abc import Iterable

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from .._exceptions import ConfigError
from ..report import AirflowSmtpNotifier
from ._channels import Channel
from ._connections import _ALIASES, channel_from_connection, split_conn_ids

__all__ = ["channel_from_airflow", "channels_from_airflow"]


def channel_from_airflow(conn_id: str) -> Channel:
    """The channel of Airflow connection ``conn_id`` (:class:`ConfigError` when it is missing)."""
    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException as exc:
        raise ConfigError(
            f"no Airflow connection {conn_id!r} for alerts: define it (UI, CLI or AIRFLOW_CONN_"
            f"{conn_id.upper()}) as described in docs/alerts.md"
        ) from exc
    extra = conn.extra_dejson or {}
    kind = str(extra.get("channel") or conn.conn_type or "").strip().lower()
    notifier = AirflowSmtpNotifier(conn_id) if _ALIASES.get(kind, kind) == "email" else None
    return channel_from_connection(
        conn_id,
        conn.conn_type,
        conn.host,
        schema=conn.schema,
        port=conn.port,
        login=conn.login,
        password=conn.password,
        extra=extra,
        notifier=notifier,
    )


def channels_from_airflow(conn_ids: str | Iterable[str]) -> list[Channel]:
    """Channels of several connections: a list, or one string split on commas, semicolons, spaces."""
    return [channel_from_airflow(i) for i in split_conn_ids(conn_ids)]
