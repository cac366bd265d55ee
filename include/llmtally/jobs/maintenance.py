"""Retention, enforced by the ``llm_usage_maintenance`` DAG (``[retention]`` in llmtally.toml).

* raw usage logs: files not written to for ``raw_log_days`` (default 14) are deleted -- where the
  volume is writable; a read-only mount is left alone and reported (the services' own loggers can
  then enforce retention with ``UsageLogger(retention_days=…)``);
* quarantined lines in PostgreSQL older than ``quarantine_days`` (default 90);
* staging folders of runs that died before their ``cleanup`` (older than ``staging_hours``, 48).

Aggregates are never purged: they hold no text and are the system of record.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from .._config import load_config
from .._exceptions import ConfigError

__all__ = ["Retention", "purge_from_airflow", "purge_quarantine", "purge_raw_logs", "purge_staging"]

log = logging.getLogger("llmtally.jobs")


@dataclass(frozen=True)
class Retention:
    """How long each kind of data is kept."""

    raw_log_days: int = 14
    quarantine_days: int = 90
    staging_hours: int = 48

    @classmethod
    def from_config(cls) -> Retention:
        """``[retention]`` of llmtally.toml, else the defaults."""
        table = dict(load_config().section("retention"))
        values: dict[str, int] = {}
        for key in ("raw_log_days", "quarantine_days", "staging_hours"):
            if key in table:
                v = table[key]
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise ConfigError(f"[retention] {key} must be a positive integer, not {v!r}")
                values[key] = v
        return cls(**values)


def purge_raw_logs(
    sources: Sequence[str], days: int, *, now: float | None = None, dry_run: bool = False
) -> dict[str, Any]:
    """Delete usage-log files under ``sources`` last modified more than ``days`` days ago."""
    from ..pipeline import collect

    cutoff = (now if now is not None else time.time()) - days * 86400
    deleted = kept_read_only = 0
    freed = 0
    for f in collect(list(sources)).files:
        if f.mtime >= cutoff:
            continue
        if not os.access(os.path.dirname(f.path) or ".", os.W_OK):
            kept_read_only += 1
            continue
        if not dry_run:
            try:
                os.remove(f.path)
            except OSError as exc:
                log.warning("retention: cannot delete %s: %s", f.path, exc)
                kept_read_only += 1
                continue
        deleted += 1
        freed += f.size
    if kept_read_only:
        log.warning(
            "retention: %d raw log file(s) older than %d days sit on read-only volumes; enforce retention "
            "where they are written (UsageLogger(retention_days=...)) or mount them writable here",
            kept_read_only,
            days,
        )
    log.info(
        "retention: %s %d raw log file(s), %.1f MB",
        "would delete" if dry_run else "deleted",
        deleted,
        freed / 1e6,
    )
    return {"deleted": deleted, "bytes": freed, "read_only": kept_read_only, "dry_run": dry_run}


def purge_quarantine(dsn: str, days: int, *, today: date | None = None) -> int:
    """Delete quarantined lines of days more than ``days`` days ago."""
    from ..store import open_store

    before = (today or date.today()) - timedelta(days=days)
    with open_store(dsn) as store:
        n = store.purge_quarantine(before)
    log.info("retention: %d quarantined line(s) before %s deleted", n, before)
    return n


def purge_staging(hours: int, root: str | None = None, *, now: float | None = None) -> int:
    """Remove staging folders of runs older than ``hours`` (left behind by failed or killed runs:
    ``cleanup`` removes a run's folder only when the run succeeded)."""
    from ._staging import staging_root

    base = staging_root(root)
    cutoff = (now if now is not None else time.time()) - hours * 3600
    removed = 0
    if base.is_dir():
        for day_dir in base.iterdir():
            for run_dir in day_dir.iterdir() if day_dir.is_dir() else []:
                if run_dir.stat().st_mtime < cutoff:
                    shutil.rmtree(run_dir, ignore_errors=True)
                    removed += 1
            if day_dir.is_dir() and not any(day_dir.iterdir()):
                day_dir.rmdir()
    log.info("retention: %d stale staging folder(s) removed", removed)
    return removed


def purge_from_airflow(what: str, params: dict[str, Any]) -> dict[str, Any]:
    """One maintenance task: ``raw_logs``, ``quarantine`` or ``staging``, per ``[retention]``."""
    from .daily import VAR_LOG_DIRS, sources_from, usage_dsn

    keep = Retention.from_config()
    dry_run = bool(params.get("dry_run"))
    if what == "raw_logs":
        from airflow.sdk import Variable

        return purge_raw_logs(
            sources_from(Variable.get(VAR_LOG_DIRS, default=None)), keep.raw_log_days, dry_run=dry_run
        )
    if what == "quarantine":
        if dry_run:
            return {"dry_run": True}
        return {"deleted": purge_quarantine(usage_dsn(), keep.quarantine_days)}
    if what == "staging":
        return {"removed": 0 if dry_run else purge_staging(keep.staging_hours)}
    raise ConfigError(f"unknown maintenance step {what!r}")
