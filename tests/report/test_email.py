"""End to end: the report emailed to a local SMTP server the test starts, and checked as received."""

from __future__ import annotations

import email
import io
from email.message import Message
from email.policy import default
from typing import Any

import pytest

from llmtally import ConfigError, DeliveryError
from llmtally.report import SmtpNotifier, run_daily_report
from tests.report import gen
from tests.report.smtp_sink import SmtpSink


def _ink(png: bytes) -> float:
    """Share of pixels that are not (near-)white background."""
    from matplotlib import image

    px = image.imread(io.BytesIO(png), format="png")[:, :, :3]
    return float((px.min(axis=2) < 0.9).mean())


def test_email_end_to_end(pg_dsn: str, planted_schema: str, use_schema: Any, tmp_path: Any) -> None:
    use_schema(planted_schema)
    with SmtpSink(fail_first=1) as sink:  # the first attempt is refused: the retry delivers
        notifier = SmtpNotifier("127.0.0.1", sink.port, timeout=10)
        result = run_daily_report(
            pg_dsn, gen.DAY, lang="zh", recipients=["ops@example.com", "fin@example.com"], notifier=notifier,
            report_dir=tmp_path, timezone=gen.TZ, sender="llmtally@example.com",
        )  # fmt: skip
    assert result.sent_to == ("ops@example.com", "fin@example.com")
    assert len(sink.messages) == 1
    got = sink.messages[0]
    assert got.recipients == ["ops@example.com", "fin@example.com"]
    msg: Message = email.message_from_bytes(got.data, policy=default)
    assert "2026-11-26" in str(msg["Subject"])
    assert msg.get_content_type() == "multipart/related"
    html = next(p for p in msg.walk() if p.get_content_type() == "text/html").get_content()
    assert f"{result.report.summary['total_tokens']:,}" in html
    images = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    assert len(images) == 3
    for part in images:
        cid = str(part["Content-ID"]).strip("<>")
        assert f'src="cid:{cid}"' in html
        assert str(part["Content-Disposition"]).startswith("inline")
        png = part.get_payload(decode=True)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert _ink(png) > 0.02, f"chart {cid} looks empty"


def test_failed_send_is_visible(pg_dsn: str, steady_schema: str, use_schema: Any) -> None:
    use_schema(steady_schema)
    with SmtpSink(fail_first=10) as sink:
        notifier = SmtpNotifier("127.0.0.1", sink.port, timeout=5)
        with pytest.raises(DeliveryError, match="after 3 attempt"):
            from llmtally.report import make_report, send_report

            report = make_report(pg_dsn, gen.DAY, lang="en", timezone=gen.TZ)
            send_report(report, ["ops@example.com"], notifier, backoff_s=0.01)
    assert sink.messages == []


def test_smtp_url() -> None:
    n = SmtpNotifier.from_url("smtp://bob:s%40cret@mail.example.com:2525?starttls=1")
    assert (n.host, n.port, n.user, n.password, n.starttls, n.ssl) == (
        "mail.example.com",
        2525,
        "bob",
        "s@cret",
        True,
        False,
    )
    assert SmtpNotifier.from_url("smtps://mail").port == 465
    with pytest.raises(ConfigError):
        SmtpNotifier.from_url("http://mail")


def test_parse_recipients() -> None:
    from llmtally.report import parse_recipients

    assert parse_recipients("a@x.org, b@x.org;a@x.org  c@x.org") == ["a@x.org", "b@x.org", "c@x.org"]
    assert parse_recipients(["a@x.org", " "]) == ["a@x.org"] and parse_recipients(None) == []
    with pytest.raises(ConfigError):
        parse_recipients("not-an-address")


def test_airflow_smtp_hook_delivers(
    pg_dsn: str, steady_schema: str, use_schema: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DAG's path: Airflow's SmtpHook (connection smtp_default from the environment)."""
    import json

    from llmtally.report import AirflowSmtpNotifier, make_report, send_report

    use_schema(steady_schema)
    report = make_report(pg_dsn, gen.DAY, lang="en", timezone=gen.TZ)
    with SmtpSink() as sink:
        conn = {"conn_type": "smtp", "host": "127.0.0.1", "port": sink.port,
                "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "airflow@example.com"}}  # fmt: skip
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(conn))
        send_report(report, ["ops@example.com"], AirflowSmtpNotifier("smtp_default"), backoff_s=0.01)
    assert len(sink.messages) == 1 and sink.messages[0].sender == "airflow@example.com"
    msg = email.message_from_bytes(sink.messages[0].data, policy=default)
    assert msg["From"] == "airflow@example.com" and msg.get_content_type() == "multipart/related"
