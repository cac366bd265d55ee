"""Find the raw log files of day D in the configured sources.

Sources are directories (walked recursively) or glob patterns, from the argument, else
``LLMTALLY_LOG_DIRS`` (separated by ``os.pathsep``).  In a walked directory the files taken are the
logger's ``*.jsonl`` / ``*.jsonl.gz`` and the common recipe's ``*.log`` with its rotations ``*.log.N``
(``.gz`` too); hidden files are ignored.  A file named explicitly or matched by a glob is always taken.

Late data and skipping.  A record of day D may sit in any file: rotation, batching, back-dated ``ts``
(imports of history) and requests that run across midnight all put D's records into files named after
other days, so file *names* are never used to skip.  The only safe bound is the modification time: a
record is written after its request starts, so a file last modified before D began (less ``slack``
for clock skew between hosts) cannot hold D's records.  :func:`collect` skips such files when given a
``day``.  Files that arrive after D's run are picked up by running D again: a run replaces its day
atomically, so re-running D (or D and D-1 every night) is always safe.  The ledger records the
files, sizes and mtimes each run saw, so a later check can tell whether D's inputs changed.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from .._config import DEFAULT_TIMEZONE, ENV_LOG_DIRS
from .._exceptions import ConfigError
from .._time import day_bounds

__all__ = ["Collected", "LogFile", "collect", "is_log_file", "resolve_sources"]

_LOG_NAME = re.compile(r".+\.(?:jsonl|log(?:\.\d+)?)(?:\.gz)?")
_GLOB = re.compile(r"[*?[]")


@dataclass(frozen=True, order=True)
class LogFile:
    """A raw log file as seen when collected."""

    path: str
    size: int
    mtime: float


@dataclass
class Collected:
    """The files to read for a day, and what was left out and why."""

    files: list[LogFile] = field(default_factory=list)
    skipped: list[LogFile] = field(default_factory=list)
    missing_sources: list[str] = field(default_factory=list)

    @property
    def paths(self) -> list[str]:
        """Paths of the files to read, in order."""
        return [f.path for f in self.files]

    @property
    def bytes(self) -> int:
        """Total size of the files to read."""
        return sum(f.size for f in self.files)


def resolve_sources(sources: str | Sequence[str] | None = None) -> list[str]:
    """Source list from the argument (a list, or one ``os.pathsep``-separated string), else the env.

    Raises :class:`ConfigError` when no source is configured at all.
    """
    if sources is None:
        sources = os.environ.get(ENV_LOG_DIRS, "")
    parts = sources.split(os.pathsep) if isinstance(sources, str) else list(sources)
    result = [os.path.expanduser(s.strip()) for s in parts if s and s.strip()]
    if not result:
        raise ConfigError(
            f"no log sources: set {ENV_LOG_DIRS} to directories or globs separated by {os.pathsep!r} "
            "(or the Airflow Variable llm_usage_log_dirs, or the DAG's sources param)"
        )
    return result


def is_log_file(name: str) -> bool:
    """Whether a file name found in a walked directory is a usage log (``*.jsonl``, ``*.log.3.gz``…)."""
    return not name.startswith(".") and _LOG_NAME.fullmatch(name) is not None


def _walk(root: str) -> Iterable[str]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if is_log_file(name):
                yield os.path.join(dirpath, name)


def _candidates(source: str) -> tuple[list[str], bool]:
    if _GLOB.search(source):
        matches = sorted(glob.glob(source, recursive=True))
        found: list[str] = []
        for m in matches:
            found.extend(_walk(m) if os.path.isdir(m) else [m])
        return found, bool(matches)
    if os.path.isdir(source):
        return list(_walk(source)), True
    if os.path.isfile(source):
        return [source], True
    return [], False


def collect(
    sources: str | Sequence[str] | None = None,
    *,
    day: date | None = None,
    tz: str = DEFAULT_TIMEZONE,
    slack: timedelta = timedelta(days=1),
) -> Collected:
    """Files under ``sources`` (see :func:`resolve_sources`), each once, sorted by path.

    With ``day``, files last modified before the day began in ``tz`` minus ``slack`` are skipped (see
    the module docstring for why that is safe and why names are not used).  Sources that do not
    exist or match nothing are listed in :attr:`Collected.missing_sources` (not an error: a host may
    be down; the ledger shows it).
    """
    out = Collected()
    cutoff = day_bounds(day, tz)[0].timestamp() - slack.total_seconds() if day is not None else None
    seen: set[str] = set()
    for source in resolve_sources(sources):
        paths, exists = _candidates(source)
        if not exists:
            out.missing_sources.append(source)
        for path in paths:
            real = os.path.realpath(path)
            if real in seen:
                continue
            seen.add(real)
            try:
                st = os.stat(real)
            except OSError:
                continue
            lf = LogFile(str(Path(path)), st.st_size, st.st_mtime)
            (out.skipped if cutoff is not None and st.st_mtime < cutoff else out.files).append(lf)
    out.files.sort()
    out.skipped.sort()
    return out
