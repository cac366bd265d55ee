"""The steps of ``llm_usage_daily``, one function per task.

Each takes the run's plan (a small dict from :func:`plan`) and what its upstream task returned, does
its work, logs what it processed, and returns a small JSON-able summary for XCom.  Records and their
text never travel through XCom: a recount shard re-reads its own bytes of the day's files (fast),
restricted to the record ids the ``parse`` task fixed, and tasks hand text-free results on through
:class:`Staging` as plain JSON files (never pickle): ``parse`` stages a :class:`ParseIndex` (ids and
shards), each ``recount`` shard its counted records' sums (``partial-<k>``: a
:class:`~llmtally.pipeline.reconcile.DayPartial`), ``reconcile`` merges them into the
:class:`DayLoad` that ``load`` writes.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, replace
from datetime import date, datetime
from typing import Any

from .._config import ENV_DB_URL, ENV_LOG_DIRS, load_config
from .._exceptions import ConfigError, FinalDayError, InputError, LessEvidenceError
from .._time import report_day, report_timezone
from ._staging import ParseIndex, RecountCache, ShardPartial, StagedRecounts, Staging

__all__ = [
    "cleanup",
    "collect",
    "load",
    "parse",
    "plan",
    "plan_from_context",
    "reconcile",
    "recount",
    "report",
    "resend",
    "sources_from",
    "usage_dsn",
]

log = logging.getLogger("llmtally.jobs")

Plan = dict[str, Any]
VAR_LOG_DIRS = "llm_usage_log_dirs"
VAR_RECIPIENTS = "llm_usage_report_recipients"
RECOUNT_CHUNK = 65_536
"""Records the recount task holds at once."""


def _split_sources(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = value.strip()
        if value.startswith("["):
            parsed = json.loads(value)
            return [str(v) for v in parsed]
        return [v for v in value.split(os.pathsep) if v]
    return [str(v) for v in value if v]


def sources_from(variable_value: str | None) -> list[str]:
    """Log sources: the Variable ``llm_usage_log_dirs`` (a JSON list or ``os.pathsep``-separated),
    else ``LLMTALLY_LOG_DIRS``; an error naming both when neither is set."""
    sources = _split_sources(variable_value) or _split_sources(os.environ.get(ENV_LOG_DIRS))
    if not sources:
        raise ConfigError(
            f"no log sources: set the Variable {VAR_LOG_DIRS} or {ENV_LOG_DIRS} (folders or globs, "
            f"separated by {os.pathsep!r}), or pass the sources param"
        )
    return sources


def plan(
    params: Mapping[str, Any],
    *,
    run_id: str,
    data_interval_start: datetime | None = None,
    run_after: datetime | None = None,
    variable: Callable[[str], str | None] = lambda _key: None,
) -> Plan:
    """Fix what this run does: the day, sources, recipients, language, dry run, staging folder.

    ``variable(key)`` reads an Airflow Variable (``llm_usage_log_dirs`` overrides
    ``LLMTALLY_LOG_DIRS``; ``llm_usage_report_recipients``); params override both.
    """
    tz = report_timezone()
    day = report_day(
        tz,
        day_param=params.get("day"),
        data_interval_start=data_interval_start,
        run_after=run_after,
    )
    sources = _split_sources(params.get("sources")) or sources_from(variable(VAR_LOG_DIRS))
    from ..report import parse_recipients

    recipients = parse_recipients(params.get("recipients")) or parse_recipients(variable(VAR_RECIPIENTS))
    stage = Staging.for_run(day.isoformat(), run_id)
    p: Plan = {
        "day": day.isoformat(),
        "tz": tz,
        "sources": sources,
        "recipients": recipients,
        "lang": params.get("lang"),
        "dry_run": bool(params.get("dry_run")),
        "force": bool(params.get("force")),
        "run_id": run_id,
        "staging": str(stage.path),
    }
    log.info(
        "run %s reports %s (%s); sources %s; dry_run=%s", run_id, p["day"], p["tz"], sources, p["dry_run"]
    )
    return p


def airflow_variable(key: str) -> str | None:
    """An Airflow Variable as text (``None`` when it is not set); for tasks only."""
    from airflow.sdk import Variable

    value = Variable.get(key, default=None)
    return None if value is None else str(value)


def plan_from_context(context: Mapping[str, Any]) -> Plan:
    """:func:`plan` from an Airflow task context (Variables read through ``airflow.sdk.Variable``)."""
    dag_run = context["dag_run"]
    return plan(
        context["params"],
        run_id=str(context["run_id"]),
        data_interval_start=context.get("data_interval_start"),
        run_after=getattr(dag_run, "run_after", None),
        variable=airflow_variable,
    )


def _day(p: Plan) -> date:
    return date.fromisoformat(p["day"])


def _until(p: Plan) -> datetime | None:
    """An intraday run's cut (records before it are taken), ``None`` for the whole day."""
    return datetime.fromisoformat(p["until"]) if p.get("until") else None


def collect(p: Plan) -> dict[str, Any]:
    """Find the files that may hold the day's records."""
    from ..pipeline import collect as collect_files

    found = collect_files(p["sources"], day=_day(p), tz=p["tz"])
    if found.missing_sources and len(found.missing_sources) == len(p["sources"]):
        raise ConfigError(f"none of the log sources exists: {found.missing_sources} (volumes not mounted?)")
    for src in found.missing_sources:
        log.warning("log source %s does not exist (volume not mounted?)", src)
    log.info(
        "collect: %d files, %.1f MB; %d skipped as older than the day; %d missing sources",
        len(found.files),
        found.bytes / 1e6,
        len(found.skipped),
        len(found.missing_sources),
    )
    return {
        "files": found.paths,
        "bytes": found.bytes,
        "skipped": len(found.skipped),
        "missing_sources": found.missing_sources,
    }


def _chunks(items: Iterable[Any], n: int) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, n)):
        yield chunk


def parse(p: Plan, files: Mapping[str, Any]) -> dict[str, Any]:
    """Parse and validate the day's records (streamed); fix the set of record ids this run processes
    and cut them into recount shards (``shards``: their numbers, for the mapped recount task)."""
    from ..pipeline import DayParser
    from ..pipeline.shards import ShardPlanner, shard_records
    from ..pricing import load_prices

    t0 = time.perf_counter()
    parser = DayParser(_day(p), p["tz"], until=_until(p), derive=False)  # digests: the shards' work
    planner = ShardPlanner(shard_records())
    ids = []
    for r in parser.parse(list(files["files"])):
        ids.append(r.id)
        planner.add(r.source, parser.offset, parser.next_offset, r.line)
    shards = planner.shards(ids, at_most=_max_map_length())
    stage = Staging(p["staging"])
    cached = RecountCache(p["cache"]).read(set(ids)) if p.get("cache") else None  # read once, for all
    for shard in shards:  # each shard reads its own ids (and cached counts), never the day's
        run = ids[shard.first : shard.first + shard.count]
        stage.write(f"ids-{shard.index}", run)
        if cached is not None:
            stage.write(f"cached-{shard.index}", {rid: cached[rid] for rid in run if rid in cached})
    index = ParseIndex(
        files=list(files["files"]),
        stats=parser.stats,
        quarantine=list(parser.quarantine),
        losses=list(parser.losses),
        shards=shards,
        prices=load_prices(load_config()).fingerprint,
    )
    stage.write("parse", index)
    stats = asdict(parser.stats)
    log.info(
        "parse: %(files)d files, %(lines)d lines -> %(records)d records (%(legacy_records)d legacy), "
        "%(quarantined)d quarantined, %(partial_lines)d partial lines skipped, %(duplicates)d duplicates, "
        "%(out_of_day)d from other days; %(loss_markers)d loss markers (%(lost_records)d records lost "
        "by the services' loggers)",
        stats,
    )
    log.info("parse: %d recount shards of at most %d records", len(shards), planner.size)
    if parser.stats.lost_records:
        lost: dict[str, int] = {}
        for e in parser.losses:
            key = f"{e.service} ({e.reason})"
            lost[key] = lost.get(key, 0) + e.records
        log.warning("parse: the services' loggers lost %d records: %s", parser.stats.lost_records, lost)
    return {**stats, "seconds": round(time.perf_counter() - t0, 3), "shards": list(range(len(shards)))}


def _max_map_length() -> int:
    """Airflow's ``[core] max_map_length`` (mapped task instances per task; 1,024 by default)."""
    try:
        from airflow.configuration import conf
    except ImportError:  # outside Airflow
        return 1024
    return int(conf.getint("core", "max_map_length", fallback=1024))


def recount(p: Plan, shard: int | None = None) -> dict[str, Any]:
    """Exact prompt/completion counts of every record of one recount shard, and the shard's sums
    (runs on the recount queue, one mapped task per shard); ``shard=None`` does every shard here,
    one after another.

    The shard streams through in slices of :data:`RECOUNT_CHUNK` records, so memory stays bounded;
    each slice is counted, then billed and summed (:class:`~llmtally.pipeline.reconcile.DayAggregator`),
    and the sums are staged as ``partial-<shard>`` for ``reconcile`` to merge.  Engines come from this
    process (:func:`llmtally.jobs._engines.engine_for`: preloaded by the worker, or loaded once and
    reused by later shards of the process).  An intraday run (``p["cache"]``: the day's recount
    cache) recounts only the records no earlier run of the day recounted, and adds them to the cache.
    """
    from ..pipeline.shards import merge_recount_summaries

    stage = Staging(p["staging"])
    index = _shard_index(stage)
    if shard is None:
        return merge_recount_summaries([_recount_shard(p, stage, index, k) for k in range(len(index.shards))])
    return _recount_shard(p, stage, index, shard)


def _shard_index(stage: Staging) -> ParseIndex:
    """The staged parse, which must name its recount shards (every parse since shards does)."""
    index = stage.read("parse", ParseIndex)
    if not index.shards:
        raise InputError(
            f"{stage.file('parse')} names no recount shards (staged by an older llmtally): clear the "
            "run's tasks from parse on, with downstream"
        )
    return index


def _recount_shard(p: Plan, stage: Staging, index: ParseIndex, k: int) -> dict[str, Any]:
    from ..pipeline import Recount
    from ..pipeline import recount as recount_records
    from ..pipeline.reconcile import DayAggregator
    from ..pipeline.shards import read_shard
    from ..pricing import load_prices
    from ._engines import engine_for

    if not 0 <= k < len(index.shards):
        raise InputError(f"recount shard {k} does not exist: parse cut the day into {len(index.shards)}")
    shard = index.shards[k]
    t0 = time.perf_counter()
    engines: dict[str, Any] = {}
    before: dict[str, tuple[int, float]] = {}
    loaded: dict[str, str] = {}

    def counter_for_model(model: str) -> Any:
        if model not in engines:
            engines[model], loaded[model] = engine_for(model)
            before[model] = (int(engines[model].records), float(engines[model].seconds))
        return engines[model]

    prices = load_prices(load_config())
    if prices.fingerprint != index.prices:  # one day, one price book: never bill shards differently
        raise InputError(
            f"recount shard {k}: the price book here ({prices.fingerprint[:12]}) is not the one parse "
            f"fixed for the run ({index.prices[:12]}): llmtally.toml or the shipped prices differ between "
            "workers, or changed since parse; make them agree, then clear the run from parse on"
        )
    counts: dict[str, Any] = {}
    unknown: set[str] = set()
    seen = 0
    ids = stage.read(f"ids-{k}", list[str])
    earlier = (
        {rid: Recount.from_json(v) for rid, v in stage.read(f"cached-{k}", StagedRecounts).items()}
        if p.get("cache")
        else {}
    )
    day = DayAggregator(_day(p), p["tz"], prices=prices)
    for chunk in _chunks(read_shard(shard, ids, _day(p), p["tz"], until=_until(p)), RECOUNT_CHUNK):
        seen += len(chunk)
        fresh = recount_records((r for r in chunk if r.id not in earlier), counter_for_model)
        counts.update(fresh)
        unknown.update(
            r.model or "" for r in chunk if r.id in fresh and fresh[r.id].status == "unknown_model"
        )
        day.add(chunk, {**{r.id: earlier[r.id] for r in chunk if r.id in earlier}, **fresh})
    if seen != shard.count:  # a file changed or went since parse: never bill from less than parse saw
        raise InputError(
            f"recount shard {k} found {seen} of the {shard.count} records parse took from "
            f"{sorted({s.file for s in shard.spans})}: a log file was moved, cut or rewritten since parse; "
            "restore it and clear this task, or clear the run from parse on"
        )
    if p.get("cache"):
        fresh_json = {rid: rc.to_json() for rid, rc in counts.items()}
        RecountCache(p["cache"]).add(f"{p['run_id']}_shard{k}", fresh_json)
        log.info("recount: %d records recounted by earlier runs of the day reused", len(earlier))
    # the shard's sums, for reconcile to merge
    stage.write(f"partial-{k}", ShardPartial(k, shard.ids_sha256, prices.fingerprint, day.partial()))
    by_status: dict[str, int] = {}
    for rc in counts.values():
        by_status[rc.status] = by_status.get(rc.status, 0) + 1
    facts = {}
    for model, engine in engines.items():
        engine.save()  # a pre-token cache (engine cached): tasks end in os._exit, atexit never runs
        facts[model] = _engine_facts(engine, *before[model])
        log.info("recount %s (%s): %s", model, loaded[model], engine.summary())
    if unknown:
        log.warning("recount: no tokenizer for models %s (counted as unknown, not guessed)", sorted(unknown))
    log.info("recount shard %d (of 0..%d): %d records, %d recounted: %s", k, len(index.shards) - 1, seen,
             len(counts), by_status)  # fmt: skip
    return {
        "shard": k,
        "records": len(counts),
        "reused": len(earlier),
        "status": by_status,
        "unknown_models": sorted(unknown),
        "engines": dict(sorted(facts.items())),
        "loaded": dict(sorted(loaded.items())),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _engine_facts(engine: Any, records_before: int = 0, seconds_before: float = 0.0) -> dict[str, Any]:
    """Which path counted a model's records, how many and how fast -- in this shard: an engine a
    process reuses keeps counting (the run view and the ledger show it: the reconcile task passes
    the merged summary on into the ledger entry's details)."""
    return {
        "engine": str(engine.engine),
        "device": str(engine.device),
        "records": int(engine.records) - records_before,
        "seconds": round(float(engine.seconds) - seconds_before, 3),
        "fallback": getattr(engine, "fallback", None),
    }


_CARDINALITY_KEYS = {"users_per_day": "user_id", "tenants_per_day": "tenant"}


def cardinality_limits() -> dict[str, int]:
    """Distinct users and tenants per service and day kept in ``usage_hourly`` (the rest fold into
    ``(other)``): ``[cardinality] users_per_day``, ``tenants_per_day`` in ``llmtally.toml``, else
    :data:`llmtally.pipeline.reconcile.MAX_DISTINCT`."""
    from ..pipeline.reconcile import MAX_DISTINCT

    cfg = load_config()
    table = cfg.section("cardinality")
    limits = dict(MAX_DISTINCT)
    for key, value in table.items():
        if key not in _CARDINALITY_KEYS:
            raise ConfigError(f"{cfg.path}: [cardinality] {key} is not one of {sorted(_CARDINALITY_KEYS)}")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{cfg.path}: [cardinality] {key} must be a whole number >= 1, not {value!r}")
        limits[_CARDINALITY_KEYS[key]] = value
    return limits


def reconcile(p: Plan, counted: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The day's aggregates: every recount shard's sums merged (billed numbers, drift, estimate error),
    the cardinality guard applied to the whole day, staged for loading.  Reads no log file: each
    shard summed its own records while it counted them."""
    from ..pipeline.reconcile import finish
    from ..pipeline.shards import merge_recount_summaries

    stage = Staging(p["staging"])
    index = _shard_index(stage)
    t0 = time.perf_counter()
    if not isinstance(counted, Mapping):  # the mapped recount: one summary per shard
        counted = merge_recount_summaries(list(counted))
    load_ = finish(
        (_shard_partial(stage, index, shard) for shard in index.shards),
        day=_day(p),
        tz=p["tz"],
        stats=index.stats,
        quarantine=index.quarantine,
        losses=index.losses,
        run_id=p["run_id"],
        details={"recount": dict(counted)},
        max_distinct=cardinality_limits(),
    )
    if (until := _until(p)) is not None:  # an intraday run: the day so far, replaced by the daily run
        load_ = replace(load_, quality=replace(load_.quality, provisional=True, through=until))
    stage.write("dayload", load_)
    drift = sum(r.drift_records for r in load_.reconciliation)
    q = load_.quality
    log.info(
        "reconcile: %d hourly rows, %d records; drift in %d records; %d not recountable; %d unknown model",
        len(load_.hourly),
        q.records,
        drift,
        q.not_recountable,
        q.unknown_model,
    )
    return {
        "hourly_rows": len(load_.hourly),
        "records": q.records,
        "drift_records": drift,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _shard_partial(stage: Staging, index: ParseIndex, shard: Any) -> Any:
    """Shard *k*'s staged sums, checked against the staged parse: the same ids, as many records, the
    run's price book (a partial left by an earlier parse of the run is refused, never merged)."""
    staged = stage.read(f"partial-{shard.index}", ShardPartial)
    if (staged.shard, staged.ids_sha256, staged.part.records, staged.prices) != (
        shard.index, shard.ids_sha256, shard.count, index.prices,
    ):  # fmt: skip
        raise InputError(
            f"{stage.file(f'partial-{shard.index}')} does not fit the staged parse (another parse of this "
            "run, or another price book): clear the run from parse on, with downstream"
        )
    return staged.part


def usage_dsn() -> str:
    """The aggregate database: ``AIRFLOW_CONN_LLM_USAGE_DB`` as given (any libpq form, sockets too),
    else the Airflow connection ``llm_usage_db``."""
    from ..store import dsn_from_env

    if os.environ.get(ENV_DB_URL):
        return dsn_from_env()
    from ..store.airflow import dsn_from_airflow

    return dsn_from_airflow()


def _render_and_send(day: date, *, lang: str | None, recipients: list[str], tz: str) -> dict[str, Any]:
    """Render ``day``'s report from the aggregates, write and archive it, mail it via ``smtp_default``."""
    import psycopg

    from ..report import AirflowSmtpNotifier, run_daily_report

    with psycopg.connect(usage_dsn()) as conn:
        result = run_daily_report(
            conn,
            day,
            lang=lang,
            recipients=recipients,
            notifier=AirflowSmtpNotifier() if recipients else None,
            timezone=tz,
        )
    log.info("report: %s written to %s; sent to %d recipient(s)", day, result.html_path, len(result.sent_to))
    return {
        "day": day.isoformat(),
        "html": str(result.html_path) if result.html_path else None,
        "sent_to": list(result.sent_to),
    }


def load(p: Plan, reconciled: Mapping[str, Any]) -> dict[str, Any]:
    """Replace the day in PostgreSQL in one transaction; quality checks fail the task loudly."""
    from ..store import DayLoad, open_store

    day_load = Staging(p["staging"]).read("dayload", DayLoad)
    if p["dry_run"]:
        log.info("dry run: not loading %s (%d hourly rows)", p["day"], len(day_load.hourly))
        return {"loaded": False, "dry_run": True}
    t0 = time.perf_counter()
    provisional = day_load.quality.provisional
    with open_store(usage_dsn()) as store:
        try:
            store.load_day(day_load, force=bool(p.get("force")))
        except FinalDayError as exc:  # the daily run, or a later cut, got there first
            log.info("load: provisional load skipped: %s", exc)
            return {"loaded": False, "kept": True}
        except LessEvidenceError as exc:
            # Retrying cannot bring purged files back: fail now, saying why and how to force.
            log.error("load: %s", exc)
            _fail_without_retry(str(exc))
    if p.get("force"):
        log.warning("load: %s replaced with force=true (the evidence check was skipped)", p["day"])
    log.info(
        "load: %s replaced with %d hourly rows in %.2f s%s",
        p["day"],
        len(day_load.hourly),
        time.perf_counter() - t0,
        f" (provisional, records before {day_load.quality.through})" if provisional else "",
    )
    for f in day_load.folds:  # names of services and dimensions only, never ids
        log.warning(
            "load: %s had %d distinct %s (limit %d): %d folded into (other), %d requests",
            f.service, f.distinct, f.dimension, f.limit, f.folded, f.requests,
        )  # fmt: skip
    return {"loaded": True, "hourly_rows": len(day_load.hourly), "provisional": provisional}


def _fail_without_retry(message: str) -> None:
    try:
        from airflow.sdk.exceptions import AirflowFailException
    except ImportError:  # outside Airflow: the library error itself
        raise LessEvidenceError(message) from None
    raise AirflowFailException(message)


def report(p: Plan, loaded: Mapping[str, Any]) -> dict[str, Any]:
    """Render the day's report from PostgreSQL, write and archive it, and email it."""
    if p["dry_run"] or not loaded.get("loaded"):
        log.info("dry run: no report sent for %s", p["day"])
        return {"sent": False}
    return _render_and_send(_day(p), lang=p["lang"], recipients=list(p["recipients"]), tz=p["tz"])


def resend(context: Mapping[str, Any]) -> dict[str, Any]:
    """``llm_usage_report``: render the day's report from the aggregates again and send it."""
    from airflow.sdk import Variable

    from ..report import parse_recipients

    params = context["params"]
    tz = report_timezone()
    day = report_day(
        tz, day_param=params.get("day"), run_after=getattr(context["dag_run"], "run_after", None)
    )
    recipients = parse_recipients(params.get("recipients")) or parse_recipients(
        Variable.get(VAR_RECIPIENTS, default=None)
    )
    return _render_and_send(day, lang=params.get("lang"), recipients=recipients, tz=tz)


def cleanup(p: Plan) -> None:
    """Remove the run's staging folder once the whole run succeeded.

    The DAG runs this task only when every upstream task succeeded: a failed run keeps its folder,
    so clearing the failed task (in the UI or the REST API) re-runs it on the same hand-offs.  The
    folders of runs that failed for good (or were killed) are removed by ``llm_usage_maintenance``
    (:func:`llmtally.jobs.maintenance.purge_staging`) once older than ``[retention] staging_hours``.
    """
    Staging(p["staging"]).remove()
    if not p.get("until"):  # the day is final: the intraday runs' recount cache has served
        Staging(RecountCache.for_day(p["day"])).remove()
