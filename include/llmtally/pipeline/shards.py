"""Recount shards: the day's records cut into pieces of bounded size that workers recount apart.

``parse`` fixes the day's records (their ids, in file order) and, while it streams them, cuts them
into :class:`Shard` s of at most ``shard_records`` records each.  A shard is a contiguous run of
that id list (``first``, ``count``) plus the byte ranges of the files that hold it
(:class:`Span`), so a recount task re-reads only its own bytes (a gzip file is decompressed up to
its range, not parsed).  Every record belongs to exactly one shard: a record id found twice (a
copied file) belongs to the shard of its first occurrence, as ``parse`` took it, and a shard takes
only the ids of its own run.  A record's count depends on the record alone, so any shard size gives
the same counts.

The size: ``LLMTALLY_SHARD_RECORDS``, else ``[recount] shard_records`` in llmtally.toml, else
:data:`DEFAULT_SHARD_RECORDS`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from .._config import ENV_SHARD_RECORDS, load_config
from .._exceptions import ConfigError, InputError
from .parse import DayParser
from .record import UsageRecord

__all__ = [
    "DEFAULT_SHARD_RECORDS",
    "Shard",
    "ShardPlanner",
    "Span",
    "ids_digest",
    "merge_recount_summaries",
    "read_shard",
    "shard_records",
]

DEFAULT_SHARD_RECORDS = 100_000
"""Records per recount shard when nothing is configured (see BENCHMARKS.md "Scale out")."""


@dataclass(frozen=True, slots=True)
class Span:
    """Bytes ``[start, end)`` of ``file`` (decompressed), beginning at line number ``line``."""

    file: str
    start: int
    end: int
    line: int


@dataclass(frozen=True, slots=True)
class Shard:
    """Records ``first`` to ``first + count - 1`` of the day's id list, found in ``spans``;
    ``ids_sha256`` identifies those ids (what a shard staged is checked against it)."""

    index: int
    first: int
    count: int
    spans: Sequence[Span]
    ids_sha256: str = ""


def ids_digest(ids: Sequence[str]) -> str:
    """SHA-256 of a run of record ids (a shard's identity)."""
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()


class ShardPlanner:
    """Cuts a stream of records (told with :meth:`add` in parse order) into shards of ``size``."""

    def __init__(self, size: int) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"shard size must be a whole number >= 1, not {size!r}")
        self.size = size
        self._done: list[Shard] = []
        self._spans: list[list[Any]] = []  # [file, start, end, line] of the open shard
        self._first = 0
        self._count = 0

    def add(self, file: str, start: int, end: int, line: int) -> None:
        """One more record, whose line is bytes ``[start, end)`` of ``file``, line number ``line``."""
        if self._count == self.size:
            self._close()
        _extend(self._spans, file, start, end, line)
        self._count += 1

    def _close(self) -> None:
        spans = tuple(Span(f, s, e, n) for f, s, e, n in self._spans)
        self._done.append(Shard(len(self._done), self._first, self._count, spans))
        self._first += self._count
        self._count = 0
        self._spans = []

    def shards(self, ids: Sequence[str], *, at_most: int | None = None) -> list[Shard]:
        """Every shard so far (the open one closed), ``ids`` being the day's id list in the order
        :meth:`add` was told; at least one, empty for an empty day, so a mapped recount always has a
        task to run.  ``at_most`` (Airflow's ``[core] max_map_length``): neighbours merge, two by
        two, until the shards are no more than that."""
        if self._count or not self._done:
            self._close()
        shards = list(self._done)
        while at_most is not None and len(shards) > max(at_most, 1):
            shards = [_joined(shards[i : i + 2]) for i in range(0, len(shards), 2)]
        return [Shard(k, s.first, s.count, s.spans, ids_digest(ids[s.first : s.first + s.count]))
                for k, s in enumerate(shards)]  # fmt: skip


def _extend(spans: list[list[Any]], file: str, start: int, end: int, line: int) -> None:
    """Add bytes ``[start, end)`` of ``file`` (line number ``line``) to ``spans`` (``[file, start,
    end, line]`` each): the last span grows when they follow on in its file, else a new one starts."""
    last = spans[-1] if spans else None
    if last is not None and last[0] == file and start >= last[2]:
        last[2] = end
    else:
        spans.append([file, start, end, line])


def _joined(pair: Sequence[Shard]) -> Shard:
    """Two neighbouring shards as one (a run of the id list, the spans of both)."""
    spans: list[list[Any]] = []
    for span in (sp for sh in pair for sp in sh.spans):
        _extend(spans, span.file, span.start, span.end, span.line)
    return Shard(pair[0].index, pair[0].first, sum(s.count for s in pair),
                 tuple(Span(f, a, b, n) for f, a, b, n in spans))  # fmt: skip


def read_shard(
    shard: Shard, ids: Sequence[str], day: date, tz: str, *, until: datetime | None = None
) -> Iterator[UsageRecord]:
    """The records of ``shard`` (``ids``: its own run of the day's id list, as ``parse`` staged it),
    re-read from its byte ranges with the day rule and cut ``parse`` used."""
    wanted = set(ids)
    if len(wanted) != shard.count or (shard.ids_sha256 and ids_digest(ids) != shard.ids_sha256):
        raise InputError(
            f"shard {shard.index} has {shard.count} records but {len(ids)} ids were staged for it (or "
            "other ids): the staged parse does not fit it; clear the run from parse on"
        )
    parser = DayParser(day, tz, until=until)
    for span in shard.spans:
        for rec in parser.parse_file(span.file, start=span.start, end=span.end, first_line=span.line):
            if rec.id in wanted:
                yield rec


def shard_records() -> int:
    """Records per recount shard: ``LLMTALLY_SHARD_RECORDS``, else ``[recount] shard_records`` in
    llmtally.toml, else :data:`DEFAULT_SHARD_RECORDS`."""
    env = os.environ.get(ENV_SHARD_RECORDS, "").strip()
    value: Any
    if env:
        value, where = (int(env) if env.isdigit() else env), ENV_SHARD_RECORDS
    else:
        cfg = load_config()
        value, where = cfg.section("recount").get("shard_records"), f"{cfg.path}: [recount] shard_records"
    if value is None:
        return DEFAULT_SHARD_RECORDS
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where} must be a whole number >= 1, not {value!r}")
    return value


def merge_recount_summaries(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One recount summary for the day out of the shards' (records, statuses, engines summed; the
    slowest shard's seconds; each shard's own facts under ``shards``)."""
    records = reused = 0
    status: dict[str, int] = {}
    unknown: set[str] = set()
    engines: dict[str, dict[str, Any]] = {}
    kinds: dict[tuple[str, str], set[str]] = {}  # (model, "engine" | "device"): every shard's
    shards = []
    for part in sorted(parts, key=lambda s: int(s.get("shard", 0))):
        records += int(part.get("records", 0))
        reused += int(part.get("reused", 0))
        for key, n in dict(part.get("status") or {}).items():
            status[key] = status.get(key, 0) + int(n)
        unknown.update(part.get("unknown_models") or ())
        for model, facts in dict(part.get("engines") or {}).items():
            for key in ("engine", "device"):
                kinds.setdefault((model, key), set()).add(str(facts.get(key)))
            seen = engines.get(model)
            if seen is None:
                engines[model] = dict(facts)
            else:
                seen["records"] = int(seen.get("records", 0)) + int(facts.get("records", 0))
                seen["seconds"] = round(float(seen.get("seconds", 0)) + float(facts.get("seconds", 0)), 3)
                seen["fallback"] = seen.get("fallback") or facts.get("fallback")
        shards.append(
            {k: part.get(k) for k in ("shard", "records", "seconds", "host", "pid", "loaded") if k in part}
        )
    for (model, key), values in kinds.items():  # shards on workers of different kinds say so
        engines[model][key] = " | ".join(sorted(values))
    return {
        "records": records,
        "reused": reused,
        "status": status,
        "unknown_models": sorted(unknown),
        "engines": dict(sorted(engines.items())),
        "seconds": max((float(p.get("seconds", 0)) for p in parts), default=0.0),
        "shards": shards,
    }
