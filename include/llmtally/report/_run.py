"""The daily report, end to end: read aggregates, render, write files, archive, send.

:func:`run_daily_report` is what the DAG's report task and ``llmtally report`` call.  Sending comes
last: when it fails the files and the archive are already there, the task fails visibly, and a retry
(or ``llmtally report --day D --send``) re-renders from the aggregates without redoing the pipeline.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._config import ENV_REPORT_DIR, ENV_REPORT_LANG, Config, load_config
from .._exceptions import ConfigError
from .._time import day_bounds
from ..budgets import Budget, budget_rows, evaluate, load_budgets
from ..pricing import ExchangeRates, load_exchange_rates
from ._anomalies import Thresholds
from ._data import fetch_report_data, report_store
from ._i18n import LANGS
from ._render import Report, build_report
from ._send import Notifier, SmtpNotifier, send_report

if TYPE_CHECKING:
    from ._data import StoreSource

__all__ = [
    "ReportResult",
    "ReportSettings",
    "archive_report",
    "make_report",
    "run_daily_report",
    "write_report",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportSettings:
    """``[report]`` in llmtally.toml: ``lang``, ``top``, ``dir`` and ``[report.anomalies]`` thresholds;
    ``[currency]``: the reporting currency and exchange rates; ``[[budgets]]``: the budgets shown."""

    lang: str = "zh"
    top_n: int = 10
    report_dir: str | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)
    fx: ExchangeRates = field(default_factory=ExchangeRates)
    budgets: tuple[Budget, ...] = ()

    @classmethod
    def from_config(cls, config: Config | None = None) -> ReportSettings:
        """Settings: environment (``LLMTALLY_REPORT_LANG``, ``LLMTALLY_REPORT_DIR``,
        ``LLMTALLY_REPORT_CURRENCY``) > file > defaults."""
        cfg = config or load_config()
        table = dict(cfg.section("report"))
        anomalies = table.pop("anomalies", {})
        lang = os.environ.get(ENV_REPORT_LANG) or table.get("lang", "zh")
        top = table.get("top", 10)
        if lang not in LANGS:
            raise ConfigError(f"report language {lang!r} is not supported; use one of {', '.join(LANGS)}")
        if isinstance(top, bool) or not isinstance(top, int) or top < 1:
            raise ConfigError(f"[report] top must be a positive integer, not {top!r}")
        return cls(
            lang=lang,
            top_n=top,
            report_dir=os.environ.get(ENV_REPORT_DIR) or table.get("dir"),
            thresholds=Thresholds.from_mapping(anomalies),
            fx=load_exchange_rates(cfg),
            budgets=load_budgets(cfg),
        )


@dataclass(frozen=True)
class ReportResult:
    """What a run produced: the report, the files written and who it was sent to."""

    report: Report
    html_path: Path | None
    json_path: Path | None
    archived: bool
    sent_to: tuple[str, ...] = ()


def make_report(
    source: StoreSource,
    day: date,
    *,
    lang: str | None = None,
    timezone: str | None = None,
    settings: ReportSettings | None = None,
) -> Report:
    """Read the aggregates of ``day`` (and its history) from ``source`` and render the report.

    ``source`` is a :class:`~llmtally.store.UsageStore`, a PostgreSQL DSN, or a psycopg connection
    the caller owns (see :func:`~llmtally.report._data.report_store`).
    """
    cfg = settings or ReportSettings.from_config()
    tz = timezone or load_config().timezone
    th = cfg.thresholds
    history = max(
        35,
        7 * th.baseline_weeks + 1,
        th.user_baseline_days + 1,
        th.prompt_baseline_days + 1,
        th.outcome_baseline_days + 1,
    )
    data = fetch_report_data(source, day, tz, history_days=history, user_days=th.user_baseline_days + 1)
    budgets: list[dict[str, Any]] = []
    if cfg.budgets:  # each budget as it stood at the end of the day, its thresholds fired so far
        with report_store(source) as store:
            statuses = evaluate(store, cfg.budgets, now=day_bounds(day, tz)[1], tz=tz, rates=cfg.fx)
            budgets = budget_rows(statuses, store, lang or cfg.lang)
    return build_report(
        data, lang=lang or cfg.lang, top_n=cfg.top_n, thresholds=th, fx=cfg.fx, budgets=budgets
    )


def write_report(report: Report, report_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``report-YYYY-MM-DD.html`` and ``.json`` into ``report_dir`` (atomically, replacing)."""
    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"report-{report.day.isoformat()}"
    paths = (out / f"{stem}.html", out / f"{stem}.json")
    for path, text in zip(paths, (report.html_file, report.json()), strict=True):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return paths


def archive_report(source: StoreSource, report: Report) -> None:
    """Store the report in ``report_archive(day, lang, html, json)``, replacing that day and language,
    through the store's :meth:`~llmtally.store.UsageStore.archive_report`."""
    with report_store(source) as store:
        store.archive_report(report.day, report.lang, report.html_file, report.summary)


def run_daily_report(
    source: StoreSource,
    day: date,
    *,
    lang: str | None = None,
    recipients: Sequence[str] = (),
    notifier: Notifier | None = None,
    report_dir: str | os.PathLike[str] | None = None,
    timezone: str | None = None,
    archive: bool = True,
    sender: str | None = None,
    settings: ReportSettings | None = None,
) -> ReportResult:
    """Render the report of ``day`` from the aggregates, write it, archive it, and email it.

    ``source`` is a store, a DSN or a psycopg connection the caller owns (left open; one store
    serves the read and the archive).  Files go to ``report_dir`` (else ``LLMTALLY_REPORT_DIR`` /
    ``[report] dir``; none: no files).  Email is sent when ``recipients``
    are given, through ``notifier`` (in Airflow: :class:`AirflowSmtpNotifier`; default: smtplib to
    ``LLMTALLY_SMTP_URL``, a :class:`ConfigError` when unset).  Raises :class:`DeliveryError` when
    sending failed after retries: files and archive are written first, so a retry only re-sends.
    """
    cfg = settings or ReportSettings.from_config()
    with report_store(source) as store:
        report = make_report(store, day, lang=lang, timezone=timezone, settings=cfg)
        target = report_dir or cfg.report_dir
        html_path = json_path = None
        if target:
            html_path, json_path = write_report(report, target)
            log.info("report of %s written to %s", day, html_path)
        if archive:
            archive_report(store, report)
    sent: tuple[str, ...] = ()
    if recipients:
        send_report(report, recipients, notifier or SmtpNotifier.from_url(), sender=sender)
        sent = tuple(recipients)
    return ReportResult(report, html_path, json_path, archive, sent)
