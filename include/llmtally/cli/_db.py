"""``llmtally db``: the aggregate database's schema."""

from __future__ import annotations

import click

from .._exceptions import LlmtallyError

__all__ = ["db"]


@click.group()
def db() -> None:
    """The aggregate database (AIRFLOW_CONN_LLM_USAGE_DB, schema LLMTALLY_DB_SCHEMA)."""


@db.command()
@click.option("--dsn", help="libpq DSN or URI (default: AIRFLOW_CONN_LLM_USAGE_DB).")
@click.option("--schema", help="Schema (default: LLMTALLY_DB_SCHEMA or llmtally).")
def migrate(dsn: str | None, schema: str | None) -> None:
    """Apply pending schema migrations (idempotent)."""
    from ..store import PostgresStore, dsn_from_env, schema_from_env

    try:
        with PostgresStore(dsn or dsn_from_env(), schema=schema or schema_from_env(), migrate=False) as store:
            applied = store.migrate()
    except LlmtallyError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"applied {len(applied)} migration(s): {', '.join(applied)}" if applied else "schema up to date"
    )
