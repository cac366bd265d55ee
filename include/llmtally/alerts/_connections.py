"""A channel from the fields of an Airflow connection (pure: no Airflow import).

The kind is ``extra["channel"]``, else the connection type: ``webhook`` (also ``http``/``https``),
``slack``, ``dingtalk``, ``feishu`` (also ``lark``), ``wecom``, ``email`` (also ``smtp``).

* **URL**: ``host`` as a full URL (``https://hooks.slack.com/services/…``), or a bare host with
  ``schema`` (the scheme, default ``https``), ``port`` and ``extra["path"]``.  DingTalk and WeCom
  also take the bare token: DingTalk ``login`` or ``extra["access_token"]``, WeCom
  ``extra["key"]``, on top of the vendor's URL.
* **Secret**: ``password``, else ``extra["secret"]`` (webhook HMAC, DingTalk 加签, Feishu 签名校验;
  WeCom and Slack carry theirs in the URL, WeCom's key may also be the ``password``).
* ``extra["lang"]``: ``zh`` / ``en`` (default: the caller's); ``extra["timeout"]`` seconds (10).
* **Email**: ``host``/``port``/``login``/``password`` are the SMTP server, with the extras of
  Airflow's SMTP connection (``disable_ssl``, ``disable_tls``, ``from_email``, ``timeout``) and
  ``extra["to"]``: the recipients (a list, or one string split on commas/semicolons/spaces).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from .._exceptions import ConfigError
from ..report import Notifier, SmtpNotifier
from ._channels import Channel
from ._dingtalk import DingTalkChannel
from ._email import EmailChannel
from ._feishu import FeishuChannel
from ._finding import LANGS
from ._slack import SlackChannel
from ._webhook import WebhookChannel
from ._wecom import WeComChannel

__all__ = ["CHANNEL_KINDS", "channel_from_connection"]

CHANNEL_KINDS = ("dingtalk", "email", "feishu", "slack", "webhook", "wecom")
_ALIASES = {"http": "webhook", "https": "webhook", "lark": "feishu", "smtp": "email", "wechat_work": "wecom"}
_DINGTALK_URL = "https://oapi.dingtalk.com/robot/send"
_WECOM_URL = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _url(
    conn_id: str, host: str | None, schema: str | None, port: int | None, path: str, default: str | None
) -> str:
    if host and "://" in host:
        return host.strip()
    if host:
        scheme = schema if schema in ("http", "https") else "https"
        netloc = f"{host.strip().strip('/')}{f':{port}' if port else ''}"
        return f"{scheme}://{netloc}/{path.lstrip('/')}" if path else f"{scheme}://{netloc}"
    if default:
        return default
    raise ConfigError(f"connection {conn_id!r} has no host: set it to the webhook URL (https://…)")


def _with_param(url: str, name: str, value: str | None) -> str:
    if not value or f"{name}=" in urlsplit(url).query:
        return url
    return f"{url}{'&' if '?' in url else '?'}{name}={quote(value, safe='')}"


def split_conn_ids(value: str | Iterable[str] | None) -> list[str]:
    """Connection ids from a list, or one string split on commas, semicolons and spaces; each once."""
    ids = re.split(r"[,;\s]+", value) if isinstance(value, str) else list(value or ())
    return [i for i in dict.fromkeys(i.strip() for i in ids) if i]


def channel_from_connection(
    conn_id: str,
    conn_type: str | None = None,
    host: str | None = None,
    *,
    schema: str | None = None,
    port: int | None = None,
    login: str | None = None,
    password: str | None = None,
    extra: Mapping[str, Any] | None = None,
    notifier: Notifier | None = None,
) -> Channel:
    """The channel a connection describes (see the module docstring); its ``name`` is ``conn_id``.

    ``notifier`` overrides the email channel's SMTP client (``channel_from_airflow`` passes Airflow's
    ``SmtpHook`` for the same connection).  :class:`ConfigError` names what is missing.
    """
    extra = dict(extra or {})
    raw = str(extra.get("channel") or conn_type or "").strip().lower()
    kind = _ALIASES.get(raw, raw)
    if kind not in CHANNEL_KINDS:
        raise ConfigError(
            f"connection {conn_id!r}: unknown alert channel {raw or '(none)'!r}; set extra.channel "
            f"to one of {', '.join(CHANNEL_KINDS)}"
        )
    lang = extra.get("lang") or None
    if lang is not None and lang not in LANGS:
        raise ConfigError(f"connection {conn_id!r}: extra.lang {lang!r} is not one of {LANGS}")
    try:
        timeout = float(extra.get("timeout", 10))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"connection {conn_id!r}: extra.timeout must be a number of seconds") from exc
    secret = password or extra.get("secret") or None
    path = str(extra.get("path") or "")

    if kind == "email":
        if notifier is None:
            if not host:
                raise ConfigError(f"connection {conn_id!r}: set host (and port) to the SMTP server")
            ssl = not _flag(extra.get("disable_ssl", False))
            notifier = SmtpNotifier(
                host,
                port or (465 if ssl else 25),
                user=login or None,
                password=password or None,
                ssl=ssl,
                starttls=not ssl and not _flag(extra.get("disable_tls", False)),
                timeout=timeout,
            )
        return EmailChannel(
            notifier, extra.get("to") or [], name=conn_id, sender=extra.get("from_email"), lang=lang
        )
    if kind == "dingtalk":
        url = _url(conn_id, host, schema, port, path, _DINGTALK_URL)
        url = _with_param(url, "access_token", extra.get("access_token") or login)
        if "access_token=" not in url:
            raise ConfigError(f"connection {conn_id!r}: the DingTalk URL needs its ?access_token=…")
        return DingTalkChannel(url, name=conn_id, secret=secret, lang=lang, timeout=timeout)
    if kind == "wecom":
        url = _with_param(
            _url(conn_id, host, schema, port, path, _WECOM_URL), "key", extra.get("key") or password
        )
        if "key=" not in url:
            raise ConfigError(f"connection {conn_id!r}: the WeCom URL needs its ?key=…")
        return WeComChannel(url, name=conn_id, lang=lang, timeout=timeout)
    url = _url(conn_id, host, schema, port, path, None)
    if kind == "slack":
        return SlackChannel(url, name=conn_id, lang=lang, timeout=timeout)
    if kind == "feishu":
        return FeishuChannel(url, name=conn_id, secret=secret, lang=lang, timeout=timeout)
    return WebhookChannel(url, name=conn_id, secret=secret, lang=lang, timeout=timeout)
