"""Deliver a report by email: ``multipart/related`` HTML with the charts as inline CID images.

A :class:`Notifier` sends one built message.  :class:`SmtpNotifier` uses :mod:`smtplib` (outside
Airflow, ``LLMTALLY_SMTP_URL``); :class:`AirflowSmtpNotifier` goes through Airflow's ``SmtpHook``
(connection ``smtp_default``), imported only when used.  :func:`send_report` retries transient
failures and raises :class:`DeliveryError` when the message could not be delivered.
"""

from __future__ import annotations

import logging
import os
import re
import smtplib
import time
from collections.abc import Sequence
from email.mime.image import MIMEImage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formatdate, make_msgid
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qs, unquote, urlsplit

from .._config import ENV_REPORT_FROM, ENV_SMTP_URL
from .._exceptions import ConfigError, DeliveryError
from ._render import CHART_IDS, Report

__all__ = [
    "AirflowSmtpNotifier",
    "Notifier",
    "SmtpNotifier",
    "build_message",
    "parse_recipients",
    "send_report",
]

log = logging.getLogger(__name__)
DEFAULT_SENDER = "llmtally@localhost"


@runtime_checkable
class Notifier(Protocol):
    """Sends one email message to its recipients; raises on failure."""

    def send(self, message: MIMEMultipart, sender: str, recipients: Sequence[str]) -> None:
        """Deliver ``message``."""


def build_message(report: Report, sender: str, recipients: Sequence[str]) -> MIMEMultipart:
    """The email: ``related`` [``alternative`` [text, html], PNG charts with Content-ID, inline]."""
    root = MIMEMultipart("related")
    root["Subject"] = report.subject
    root["From"] = sender
    root["To"] = ", ".join(recipients)
    root["Date"] = formatdate(localtime=False)
    root["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "llmtally")
    body = MIMEMultipart("alternative")
    body.attach(MIMEText(report.text, "plain", "utf-8"))
    body.attach(MIMEText(report.html_email, "html", "utf-8"))
    root.attach(body)
    for name, png in report.charts.items():
        image = MIMEImage(png, "png")
        image.add_header("Content-ID", f"<{CHART_IDS[name]}>")
        image.add_header("Content-Disposition", "inline", filename=f"{name}.png")
        root.attach(image)
    return root


class SmtpNotifier:
    """Plain :mod:`smtplib` delivery, e.g. ``SmtpNotifier.from_url("smtp://mail:25")``."""

    def __init__(
        self,
        host: str = "localhost",
        port: int = 25,
        *,
        user: str | None = None,
        password: str | None = None,
        ssl: bool = False,
        starttls: bool = False,
        timeout: float = 30.0,
    ) -> None:
        self.host, self.port, self.user, self.password = host, port, user, password
        self.ssl, self.starttls, self.timeout = ssl, starttls, timeout

    @classmethod
    def from_url(cls, url: str | None = None) -> SmtpNotifier:
        """``smtp://[user:pw@]host[:port][?starttls=1]`` or ``smtps://…`` (default: ``LLMTALLY_SMTP_URL``)."""
        url = url or os.environ.get(ENV_SMTP_URL)
        if not url:
            raise ConfigError(f"no SMTP server: pass --smtp-url or set {ENV_SMTP_URL}=smtp://host:port")
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ConfigError(f"SMTP URL {url!r} must look like smtp://[user:pw@]host[:port]")
        query = parse_qs(parts.query)
        return cls(
            parts.hostname,
            parts.port or (465 if parts.scheme == "smtps" else 25),
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            ssl=parts.scheme == "smtps",
            starttls=query.get("starttls", ["0"])[0] in ("1", "true", "yes"),
        )

    def send(self, message: MIMEMultipart, sender: str, recipients: Sequence[str]) -> None:
        """Connect, optionally STARTTLS and log in, send, quit."""
        klass = smtplib.SMTP_SSL if self.ssl else smtplib.SMTP
        with klass(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.user and self.password:
                smtp.login(self.user, self.password)
            smtp.sendmail(sender, list(recipients), message.as_string())


class AirflowSmtpNotifier:
    """Delivery through Airflow's ``SmtpHook`` (its connection's host, TLS, login and retry settings).

    The hook's own ``send_email_smtp`` attaches files as ``attachment`` parts, so the prepared
    ``multipart/related`` message is handed to the client the hook opened instead.
    """

    def __init__(self, conn_id: str = "smtp_default") -> None:
        self.conn_id = conn_id

    def send(self, message: MIMEMultipart, sender: str, recipients: Sequence[str]) -> None:
        """Open the connection ``conn_id`` and send ``message``."""
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        with SmtpHook(smtp_conn_id=self.conn_id) as hook:
            client: Any = hook._smtp_client  # the hook exposes no public client
            sender = sender if sender != DEFAULT_SENDER else (hook.from_email or sender)
            if message["From"] != sender:
                message.replace_header("From", sender)
            client.sendmail(sender, list(recipients), message.as_string())


def parse_recipients(value: str | Sequence[str] | None) -> list[str]:
    """Addresses from a DAG param / Variable: a list, or one string split on commas, semicolons, spaces."""
    if not value:
        return []
    items = re.split(r"[,;\s]+", value) if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in (str(i).strip() for i in items):
        if not item:
            continue
        if "@" not in item:
            raise ConfigError(f"recipient {item!r} is not an email address")
        if item not in out:
            out.append(item)
    return out


def _permanent(exc: BaseException) -> bool:
    if isinstance(exc, smtplib.SMTPRecipientsRefused | smtplib.SMTPSenderRefused):
        return True
    return isinstance(exc, smtplib.SMTPResponseException) and 500 <= exc.smtp_code < 600


def send_report(
    report: Report,
    recipients: Sequence[str],
    notifier: Notifier,
    *,
    sender: str | None = None,
    attempts: int = 3,
    backoff_s: float = 2.0,
) -> None:
    """Email ``report`` to ``recipients``; transient failures are retried with backoff.

    Raises :class:`DeliveryError` (the last error chained) when it could not be delivered.
    """
    recipients = parse_recipients(recipients)
    if not recipients:
        raise ConfigError("no recipients: pass --to ADDRESS (or the DAG param / Variable)")
    sender = sender or os.environ.get(ENV_REPORT_FROM) or DEFAULT_SENDER
    message = build_message(report, sender, recipients)
    for attempt in range(1, max(attempts, 1) + 1):
        try:
            notifier.send(message, sender, recipients)
            log.info("report %s sent to %d recipient(s)", report.day, len(recipients))
            return
        except Exception as exc:  # any driver or hook error: retry, then fail visibly
            if attempt >= attempts or _permanent(exc):
                raise DeliveryError(
                    f"could not email the report of {report.day} to {', '.join(recipients)} after "
                    f"{attempt} attempt(s): {exc}; check the SMTP server/connection, then re-send "
                    f"with `llmtally report --day {report.day} --send`"
                ) from exc
            log.warning("sending the report of %s failed (%s); retrying", report.day, exc)
            time.sleep(backoff_s * attempt)
