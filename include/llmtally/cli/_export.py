"""``llmtally export``: the chargeback table of a date range, as CSV or Parquet, from PostgreSQL."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .._exceptions import LlmtallyError

__all__ = ["export"]


def _filters(values: tuple[str, ...]) -> dict[str, str | int]:
    out: dict[str, str | int] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{item!r} is not DIMENSION=VALUE", param_hint="--filter")
        out[name.strip()] = int(value) if name.strip() == "http_status" and value.isdigit() else value
    return out


@click.command()
@click.option("--from", "start", required=True, help="First day, YYYY-MM-DD.")
@click.option("--to", "end", required=True, help="Last day, YYYY-MM-DD (inclusive).")
@click.option(
    "--by",
    default="tenant,feature",
    show_default=True,
    help="Comma-separated: day, model, feature, user (user_id), tenant, service, status, http_status.",
)
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True)
@click.option("--filter", "filters", multiple=True, metavar="DIM=VALUE", help="Only these rows (repeatable).")
@click.option(
    "--out", "-o", type=click.Path(dir_okay=False), help="File to write (default: standard output)."
)
@click.option("--dsn", help="PostgreSQL DSN or URI of the aggregates (default: $AIRFLOW_CONN_LLM_USAGE_DB).")
def export(
    start: str, end: str, by: str, fmt: str, filters: tuple[str, ...], out: str | None, dsn: str | None
) -> None:
    """Usage of the days FROM..TO by the --by dimensions, most billed tokens first: requests,
    tokens, share, cost per currency.  The same numbers as the usage page's CSV downloads.

    CSV is UTF-8 with a BOM (Excel reads Chinese names) and neutralises cells a spreadsheet would
    run as a formula; Parquet keeps types (cost as an exact decimal) and needs pyarrow.  A day of
    the range still provisional (an intraday load) is named in a warning on stderr.
    """
    from ..store import PostgresStore, dsn_from_env, schema_from_env
    from ..web._csv import table_csv
    from ..web._export import parquet_bytes, usage_export
    from ..web._query import parse_date

    try:
        first, last = parse_date("--from", start), parse_date("--to", end)
        with PostgresStore(dsn or dsn_from_env(), schema=schema_from_env(), migrate=False) as store:
            table = usage_export(store, first, last, by.split(","), _filters(filters))
            provisional = [q for q in store.quality_between(first, last) if q.provisional]
        for q in provisional:  # a chargeback of a day still being written must say so
            click.echo(f"warning: {q.day} is provisional (the records logged until {q.through}); "
                       "the daily run replaces it with the final day", err=True)  # fmt: skip
        body = table_csv(table) if fmt == "csv" else parquet_bytes(table)
    except LlmtallyError as exc:
        raise click.ClickException(str(exc)) from exc
    if out:
        Path(out).write_bytes(body)
        click.echo(f"{len(table.rows)} rows written to {out}", err=True)
    else:
        sys.stdout.flush()
        sys.stdout.buffer.write(body)
        sys.stdout.buffer.flush()
