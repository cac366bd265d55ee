"""The "Usage of this run" view of one ``llm_usage_daily`` run.

What a run did is recorded in two places, both read here: the run's XComs (small summaries each
task returned: the plan's day, the files found, parse counts, the recount's engines and time, the
drift found, the load and the report sent) and the store (the ledger entry the load wrote with the
per-file record counts, and the day's quarantine and reconciliation).  When a later run reloaded the
day, the day tables hold that later load: the view says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol

from ..store import LedgerEntry, UsageStore
from ._tables import Column, Table

__all__ = ["DAILY_DAG", "RunFacts", "RunSource", "RunView", "read_run"]

DAILY_DAG = "llm_usage_daily"
"""The DAG whose runs load usage."""

QUARANTINE_SHOWN = 200
"""Quarantined lines the view lists (the CSV has all)."""


@dataclass(frozen=True)
class RunFacts:
    """What Airflow knows of a run: its state and the return value (XCom) of each task by id."""

    dag_id: str
    run_id: str
    state: str | None = None
    xcoms: Mapping[str, Any] = field(default_factory=dict)


class RunSource(Protocol):
    """Where the view reads runs from (in Airflow: the metadata database)."""

    def read(self, dag_id: str, run_id: str) -> RunFacts | None:
        """The run, or ``None`` when there is no such run."""
        ...


@dataclass(frozen=True)
class RunView:
    """The view's content: ``facts`` as ``(label key, value)`` and its tables by id."""

    run: RunFacts
    day: date | None
    message: str | None
    facts: tuple[tuple[str, Any], ...] = ()
    tables: Mapping[str, Table] = field(default_factory=dict)
    replaced_by: str | None = None
    archived: tuple[str, ...] = ()


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _engines(mine: LedgerEntry | None, recount: Mapping[str, Any], w: Mapping[str, str]) -> Table:
    details = _dict(_dict(mine.details).get("recount")) if mine is not None else {}
    engines = _dict(details.get("engines") or recount.get("engines"))
    cols = (
        Column("model", w["model"], "text"),
        Column("engine", w["engine"], "text"),
        Column("device", w["device"], "text"),
        Column("counted", w["counted"]),
        Column("seconds", w["seconds"], "float"),
        Column("per_second", w["throughput"]),
        Column("fallback", "fallback", "text"),
    )
    rows = []
    for model, e in sorted(engines.items()):
        e = _dict(e)
        n, s = int(e.get("records") or 0), float(e.get("seconds") or 0.0)
        rows.append(
            (
                model,
                str(e.get("engine", "")),
                str(e.get("device", "")),
                n,
                s,
                round(n / s) if s else None,
                str(e.get("fallback") or ""),
            )
        )
    return Table("recount", w["run_recount"], cols, tuple(rows))


def _tables(
    store: UsageStore,
    day: date,
    mine: LedgerEntry | None,
    latest: bool,
    x: Mapping[str, Any],
    w: Mapping[str, str],
) -> dict[str, Table]:
    sources = dict(mine.sources) if mine is not None else {}
    files = [str(f) for f in _dict(x.get("collect")).get("files", [])] or sorted(sources)
    tables = {
        "files": Table(
            "files",
            w["run_files"],
            (Column("file", w["run_files"], "text"), Column("records", w["records_from_file"])),
            tuple((f, sources.get(f)) for f in sorted(set(files) | set(sources))),
        ),
    }
    status = _dict(_dict(x.get("recount")).get("status"))
    tables["recount"] = _engines(mine, _dict(x.get("recount")), w)
    tables["status"] = Table(
        "status",
        w["status_counts"],
        (Column("status", w["status"], "text"), Column("records", w["records"])),
        tuple(sorted((str(k), int(v)) for k, v in status.items())),
    )
    quarantine = store.quarantine(day) if latest else []
    tables["quarantine"] = Table(
        "quarantine",
        w["quarantined"],
        (
            Column("source", w["run_files"], "text"),
            Column("line", "#"),
            Column("reason", w["reason"], "text"),
            Column("line_sha256", w["digest"], "text"),
        ),
        tuple((q.source, q.line, q.reason, q.line_sha256) for q in quarantine),
        shown=QUARANTINE_SHOWN,
    )
    drift = [r for r in store.reconciliation(day) if r.drift_records] if latest else []
    tables["drift"] = Table(
        "drift",
        w["run_drift"],
        (
            Column("model", w["model"], "text"),
            Column("service", w["service"], "text"),
            Column("fingerprint", w["fingerprint"], "text"),
            Column("records", w["records"]),
            Column("drift_records", w["drift_records"]),
            Column("prompt_drift_tokens", w["prompt_drift"]),
            Column("completion_drift_tokens", w["completion_drift"]),
        ),
        tuple(
            (
                r.model,
                r.service,
                r.fingerprint,
                r.records,
                r.drift_records,
                r.prompt_drift_tokens,
                r.completion_drift_tokens,
            )
            for r in drift
        ),
    )
    return tables


def read_run(store: UsageStore, run: RunFacts, w: Mapping[str, str]) -> RunView:
    """The view of ``run``: its XComs and what the store holds of its day."""
    if run.dag_id != DAILY_DAG:
        return RunView(run, None, w["run_not_daily"].format(dag_id=run.dag_id))
    x = run.xcoms
    plan = _dict(x.get("plan"))
    if not plan.get("day"):
        return RunView(run, None, w["run_no_plan"])
    day = date.fromisoformat(str(plan["day"]))
    with store.snapshot():
        ledger = store.ledger(day)
        mine = next((e for e in reversed(ledger) if e.run_id == run.run_id), None)
        latest = mine is not None and ledger[-1] is mine
        tables = _tables(store, day, mine, latest, x, w)
        archived = tuple(lang for d, lang in store.archived_days(day, day))
    parse, collect, load = _dict(x.get("parse")), _dict(x.get("collect")), _dict(x.get("load"))
    recount, reconcile, report = _dict(x.get("recount")), _dict(x.get("reconcile")), _dict(x.get("report"))
    facts: list[tuple[str, Any]] = [
        ("run_day", day.isoformat()),
        ("run_state", run.state or ""),
        ("run_files", mine.files if mine is not None else len(collect.get("files", []))),
        ("run_bytes", mine.bytes if mine is not None else collect.get("bytes")),
        ("run_records", mine.records if mine is not None else parse.get("records")),
        ("quarantined", mine.quarantined if mine is not None else parse.get("quarantined")),
        ("partial_lines", mine.partial_lines if mine is not None else parse.get("partial_lines")),
        ("duplicates", mine.duplicates if mine is not None else parse.get("duplicates")),
        ("lost_records", parse.get("lost_records")),
        ("recounted", mine.recounted if mine is not None else None),
        ("recount_seconds", recount.get("seconds")),
        ("run_drift", reconcile.get("drift_records")),
        ("dry_run", bool(plan.get("dry_run"))),
        ("forced", bool(mine.forced) if mine is not None else bool(plan.get("force"))),
        ("sent_to", ", ".join(map(str, report.get("sent_to") or ())) or None),
        ("report_file", report.get("html")),
    ]
    message = None if load.get("loaded") or mine is not None else w["not_loaded_run"]
    replaced = ledger[-1].run_id if mine is not None and not latest and ledger else None
    return RunView(run, day, message, tuple(facts), tables, replaced, archived)
