"""``llmtally report`` and ``llmtally compare``: the daily report and model comparisons, from PostgreSQL."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click

from .._config import load_config
from .._exceptions import InputError, LlmtallyError

__all__ = ["compare", "report"]


def _dsn(dsn: str | None) -> str:
    from ..store import dsn_from_env

    return dsn or dsn_from_env()


def _day(value: str | None, tz: str) -> date:
    if not value:
        return (datetime.now(ZoneInfo(tz)) - timedelta(days=1)).date()
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a date in YYYY-MM-DD form") from exc


_dsn_option = click.option(
    "--dsn", help="PostgreSQL DSN or URI of the aggregates (default: $AIRFLOW_CONN_LLM_USAGE_DB)."
)
_tz_option = click.option(
    "--timezone", "tz", help="Time zone days are cut in (default: config, Asia/Shanghai)."
)


@click.command()
@click.option("--day", "day_", help="Day to report, YYYY-MM-DD (default: yesterday).")
@click.option("--lang", type=click.Choice(["zh", "en"]), help="Report language (default: [report] lang, zh).")
@_dsn_option
@_tz_option
@click.option("--out", type=click.Path(file_okay=False), help="Directory for report-DAY.html/.json.")
@click.option("--send", is_flag=True, help="Email the report to the --to addresses.")
@click.option("--to", "to", multiple=True, help="Recipient (repeatable).")
@click.option("--smtp-url", help="smtp://[user:pw@]host[:port][?starttls=1] (default: $LLMTALLY_SMTP_URL).")
@click.option("--from", "sender", help="Sender address (default: $LLMTALLY_REPORT_FROM).")
@click.option("--archive/--no-archive", default=True, show_default=True, help="Archive in PostgreSQL.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON summary instead of the headline.")
def report(
    day_: str | None,
    lang: str | None,
    dsn: str | None,
    tz: str | None,
    out: str | None,
    send: bool,
    to: tuple[str, ...],
    smtp_url: str | None,
    sender: str | None,
    archive: bool,
    as_json: bool,
) -> None:
    """Render the daily report of DAY from the aggregates (never raw logs); optionally email it."""
    from ..report import ReportSettings, SmtpNotifier, run_daily_report

    if send and not to:
        raise click.UsageError("--send needs at least one --to ADDRESS")
    try:
        timezone = tz or load_config().timezone
        settings = ReportSettings.from_config()
        result = run_daily_report(
            _dsn(dsn),
            _day(day_, timezone),
            lang=lang,
            recipients=to if send else (),
            notifier=SmtpNotifier.from_url(smtp_url) if send else None,
            report_dir=out or settings.report_dir or ".",
            timezone=timezone,
            archive=archive,
            sender=sender,
            settings=settings,
        )
    except LlmtallyError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(result.report.json(), nl=False)
        return
    click.echo(result.report.summary["headline"])
    click.echo(f"html: {result.html_path}")
    click.echo(f"json: {result.json_path}")
    if result.sent_to:
        click.echo(f"sent to: {', '.join(result.sent_to)}")


def _read_texts(path: str) -> list[Any]:
    texts: list[Any] = []
    with Path(path).open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"not valid JSON ({exc.msg})", line=lineno, source=path) from exc
            if isinstance(obj, dict) and isinstance(obj.get("text"), str):
                texts.append(obj["text"])
            elif isinstance(obj, dict) and isinstance(obj.get("messages"), list):
                texts.append(obj["messages"])
            else:
                raise InputError('expected {"text": "..."} or {"messages": [...]}', line=lineno, source=path)
    return texts


@click.command()
@click.option("--feature", required=True, help="Feature tag to compare within.")
@click.option("--model", "models", multiple=True, required=True, help="Model (give two or more).")
@click.option("--day", "day_", help="Last day of the window, YYYY-MM-DD (default: yesterday).")
@click.option(
    "--days", default=28, show_default=True, type=click.IntRange(1, 366), help="Days in the window."
)
@click.option("--texts", type=click.Path(exists=True, dir_okay=False), help="JSONL texts to recount.")
@_dsn_option
@_tz_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def compare(
    feature: str,
    models: tuple[str, ...],
    day_: str | None,
    days: int,
    texts: str | None,
    dsn: str | None,
    tz: str | None,
    as_json: bool,
) -> None:
    """Did the model change help?  Tokens/request, completion/prompt, cost/request (and tokenizer
    efficiency, tokens per 1,000 characters of the same --texts) of FEATURE on each --model."""
    from ..report import model_stats, tokenizer_efficiency
    from ..report._data import fetch_feature_usage

    if len(models) < 2:
        raise click.UsageError("give at least two --model NAME to compare")
    try:
        timezone = tz or load_config().timezone
        last = _day(day_, timezone)
        rows = fetch_feature_usage(_dsn(dsn), feature, models, last - timedelta(days=days - 1), last)
        stats = {m: model_stats(rows, m).as_dict() for m in models}
        efficiency = tokenizer_efficiency(_read_texts(texts), models) if texts else {}
    except LlmtallyError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        out: dict[str, Any] = {"feature": feature, "first_day": (last - timedelta(days=days - 1)).isoformat()}
        out |= {"last_day": last.isoformat(), "models": stats, "tokenizer_efficiency": efficiency}
        click.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    click.echo(f"feature {feature!r}, {days} day(s) to {last} ({timezone})")
    header = f"{'model':<24}{'requests':>10}{'tokens/req':>12}{'compl/prompt':>14}  cost/req"
    if efficiency:
        header += "  tokens/1k chars"
    click.echo(header)
    for m in models:
        s = stats[m]
        cost = ", ".join(f"{v:.6f} {c}" for c, v in s["cost_per_request"].items()) or "-"
        tpr = "-" if s["tokens_per_request"] is None else f"{s['tokens_per_request']:.1f}"
        ratio = "-" if s["completion_prompt_ratio"] is None else f"{s['completion_prompt_ratio']:.3f}"
        line = f"{m:<24}{s['requests']:>10,}{tpr:>12}{ratio:>14}  {cost}"
        if efficiency:
            line += f"  {efficiency[m]['tokens_per_1k_chars']}"
        click.echo(line)
