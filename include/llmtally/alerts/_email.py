"""Alerts by email, through the report's :class:`~llmtally.report.Notifier` (SMTP or Airflow's hook).

One ``multipart/alternative`` message per batch: the header line as the subject, a plain-text part
and a small HTML part listing the findings.  SMTP refusals (5xx, refused sender or recipients) are
permanent; connection trouble and 4xx answers are retried by :func:`llmtally.alerts.deliver`.
"""

from __future__ import annotations

import os
import smtplib
from collections.abc import Sequence
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formatdate, make_msgid

from .._config import ENV_REPORT_FROM
from .._exceptions import ConfigError, DeliveryError
from ..report import Notifier, parse_recipients
from ..report._send import DEFAULT_SENDER
from ._channels import TransientDeliveryError
from ._finding import AlertBatch
from ._render import PLAIN, header, html_body, lines, run_line

__all__ = ["EmailChannel"]


def _permanent(exc: BaseException) -> bool:
    if isinstance(exc, smtplib.SMTPRecipientsRefused | smtplib.SMTPSenderRefused):
        return True
    return isinstance(exc, smtplib.SMTPResponseException) and 500 <= exc.smtp_code < 600


class EmailChannel:
    """Emails each batch to ``to`` through ``notifier``.

    ``sender`` defaults to ``LLMTALLY_REPORT_FROM``, else the Airflow connection's ``from_email``
    (with :class:`~llmtally.report.AirflowSmtpNotifier`), else ``llmtally@localhost``.
    """

    def __init__(
        self,
        notifier: Notifier,
        to: str | Sequence[str],
        *,
        name: str = "email",
        sender: str | None = None,
        lang: str | None = None,
    ) -> None:
        self.to = parse_recipients(to)
        if not self.to:
            raise ConfigError(f"email channel {name!r} has no recipients: set extra.to to addresses")
        self.notifier, self.name, self.lang = notifier, name, lang
        self.sender = sender or os.environ.get(ENV_REPORT_FROM) or DEFAULT_SENDER

    def __repr__(self) -> str:
        return f"EmailChannel(name={self.name!r}, to={self.to!r})"

    def message(self, batch: AlertBatch) -> MIMEMultipart:
        """The email of ``batch``: subject = header line, plain text and HTML parts."""
        msg = MIMEMultipart("alternative")
        msg["Subject"] = header(batch)
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or "llmtally")
        run = run_line(batch)
        text = "\n".join([header(batch), "", *lines(batch, PLAIN), *(["", run] if run else [])]) + "\n"
        msg.attach(MIMEText(text, "plain", "utf-8"))
        msg.attach(MIMEText(html_body(batch), "html", "utf-8"))
        return msg

    def send(self, batch: AlertBatch) -> None:
        """Send the email once; :class:`TransientDeliveryError` when a retry may help."""
        try:
            self.notifier.send(self.message(batch), self.sender, self.to)
        except Exception as exc:  # smtplib, socket or Airflow hook errors alike
            msg = f"email {self.name!r} to {', '.join(self.to)}: {type(exc).__name__}: {exc}"
            if _permanent(exc):
                raise DeliveryError(msg + "; check the sender and recipient addresses") from exc
            raise TransientDeliveryError(msg + "; check the SMTP server / connection") from exc
