"""The run's staging folder: text-free hand-offs between tasks, as plain data.

Tasks of one run may land on different workers (the recount on the GPU worker), so hand-offs go
through files under ``LLMTALLY_STAGING_DIR`` -- a volume mounted on every worker -- not through XCom.
No file here holds prompt or completion text: record ids, counts, digests and aggregates only.

Each hand-off is one ``<name>.json.gz``: gzip-compressed JSON written by :func:`llmtally._plain.to_plain`
and read back by :func:`llmtally._plain.from_plain` against the type the reading task expects, so a
file that does not fit is refused with :class:`~llmtally.InputError`.  Never pickle: whoever can write
to the staging volume can hand a task bad data, but never code to run.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, overload

from .._config import ENV_STAGING_DIR
from .._exceptions import InputError
from .._plain import from_plain, to_plain
from ..pipeline.parse import ParseStats
from ..pipeline.reconcile import DayPartial
from ..pipeline.recount import RecountStatus
from ..pipeline.shards import Shard
from ..store._rows import LossEntry, QuarantineEntry

__all__ = ["ParseIndex", "RecountCache", "ShardPartial", "StagedRecounts", "Staging", "staging_root"]

T = TypeVar("T")
_log = logging.getLogger("llmtally.jobs")
_NAME = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class ParseIndex:
    """What ``parse`` stages as ``parse``: the run's files, the parse stats, the quarantine, the
    day's loss markers, the recount shards (runs of the day's ids with their bytes; shard *k*'s ids
    are staged apart, as ``ids-<k>``, so a shard reads its own ids only) and the fingerprint of the
    price book the day is billed with (every shard must bill with the same one)."""

    files: Sequence[str]
    stats: ParseStats
    quarantine: Sequence[QuarantineEntry] = ()
    losses: Sequence[LossEntry] = ()
    shards: Sequence[Shard] = ()
    prices: str = ""


StagedRecounts = dict[str, tuple[RecountStatus, int | None, int | None, str]]
"""``{record id: Recount.to_json()}`` (status, prompt, completion, fingerprint): the intraday
recount cache's files, and what ``parse`` stages of it for shard *k* as ``cached-<k>``."""


@dataclass(frozen=True)
class ShardPartial:
    """What recount shard ``shard`` stages as ``partial-<shard>``: its records' sums, with the
    identity of the ids it summed (``ids_sha256``) and the price book it billed them with; reconcile
    merges only partials that fit the staged parse."""

    shard: int
    ids_sha256: str
    prices: str
    part: DayPartial


class Staging:
    """``<root>/<day>/<run id>/``: one folder per DAG run."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @classmethod
    def for_run(cls, day: str, run_id: str, root: str | None = None) -> Staging:
        """The folder of one run (created)."""
        base = staging_root(root)
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)
        stage = cls(base / day / safe)
        stage.path.mkdir(parents=True, exist_ok=True)
        return stage

    def file(self, name: str) -> Path:
        """Where hand-off ``name`` lives: ``<folder>/<name>.json.gz``."""
        if not _NAME.fullmatch(name):
            raise ValueError(f"a staging name is letters, digits, '_' and '-', not {name!r}")
        return self.path / f"{name}.json.gz"

    def write(self, name: str, obj: Any) -> Path:
        """Write ``obj`` as plain JSON (gzip) under ``name``, atomically (a reader never sees half)."""
        target = self.file(name)
        body = json.dumps(to_plain(obj), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self.path.mkdir(parents=True, exist_ok=True)  # a task cleared after the folder was purged
        tmp = target.with_name(f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            with open(tmp, "xb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=3) as fh:
                fh.write(body)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return target

    @overload
    def read(self, name: str, tp: type[T]) -> T: ...
    @overload
    def read(self, name: str, tp: object) -> Any: ...
    def read(self, name: str, tp: Any) -> Any:
        """What :meth:`write` stored as ``name``, rebuilt as a ``tp`` (``dict`` or ``Any`` for plain
        JSON); :class:`InputError` when the file is missing, is not gzip JSON or does not fit ``tp``."""
        path = self.file(name)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise InputError(
                f"{path} is missing: this run's earlier tasks did not stage {name!r}, or the folder was "
                "removed (by cleanup after success, or by llm_usage_maintenance); clear the run's tasks "
                "from parse on, with downstream"
            ) from None
        try:
            data = json.loads(gzip.decompress(raw).decode("utf-8"))
        except (OSError, EOFError, zlib.error, UnicodeDecodeError, ValueError) as exc:
            raise InputError(
                f"{path} is not a gzip-compressed JSON staging file ({exc}); refusing it. Staging files "
                "are plain data written by llmtally's own tasks: clear the run from parse on to rewrite it"
            ) from None
        try:
            return from_plain(tp, data)
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None

    def remove(self) -> None:
        """Delete the run's folder (and the day folder when empty)."""
        shutil.rmtree(self.path, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.path.parent.rmdir()


def staging_root(root: str | None = None) -> Path:
    """Where staging lives: ``root``, else ``LLMTALLY_STAGING_DIR``, else a folder in the temp dir."""
    return Path(root or os.environ.get(ENV_STAGING_DIR) or Path(tempfile.gettempdir()) / "llmtally-staging")


class RecountCache:
    """``<root>/<day>/_intraday/``: the recounts the intraday runs of one day already made.

    Each run adds one file of the records it recounted (``recount-<run>.json.gz``, written atomically
    like every hand-off), so a file that grew between two runs is recounted only for its new records,
    and a run that failed before its load leaves counts that are still right (a record's count is
    fixed by its id: its line never changes).  The daily run of the day removes the folder once the
    final day is loaded; ``llm_usage_maintenance`` purges abandoned ones with the run folders.
    """

    FOLDER = "_intraday"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.stage = Staging(path)

    @classmethod
    def for_day(cls, day: str, root: str | None = None) -> Path:
        """The cache folder of ``day`` (not created)."""
        return staging_root(root) / day / cls.FOLDER

    def read(self, ids: set[str]) -> StagedRecounts:
        """The cached recounts of ``ids`` (those no run recounted are absent).  A file that cannot be
        read (gone with a cleanup, or broken) is skipped with a warning: its records are recounted."""
        out: StagedRecounts = {}
        for path in sorted(self.stage.path.glob("recount-*.json.gz")):
            try:
                part = self.stage.read(path.name.removesuffix(".json.gz"), StagedRecounts)
            except InputError as exc:
                _log.warning("recount cache: %s skipped, its records are recounted: %s", path.name, exc)
                continue
            out.update((rid, rc) for rid, rc in part.items() if rid in ids)
        return out

    def add(self, run_id: str, recounts: StagedRecounts) -> None:
        """Add what run ``run_id`` recounted (a re-run of the same run replaces its own file)."""
        if recounts:
            self.stage.write("recount-" + re.sub(r"[^A-Za-z0-9_-]+", "_", run_id), recounts)
