"""The daily pipeline as plain functions: collect → parse → recount → reconcile (→ store.load_day).

::

    from llmtally import load_tokenizer
    from llmtally.pipeline import collect, parse_day, recount, reconcile
    from llmtally.pricing import load_prices

    files = collect(day=day, tz=tz)                          # LLMTALLY_LOG_DIRS
    parsed = parse_day(files.paths, day, tz)                 # records, stats, quarantine, losses
    counts = recount(parsed.records, load_tokenizer)         # exact counts, per record id
    load = reconcile(parsed.records, counts, day=day, tz=tz, prices=load_prices(config),
                     stats=parsed.stats, quarantine=parsed.quarantine, losses=parsed.losses)
    store.load_day(load)                                     # replaces day D atomically
"""

from .collect import Collected, LogFile, collect, is_log_file, resolve_sources
from .parse import DayParser, ParsedDay, ParseStats, parse_day
from .reconcile import Billed, billed, reconcile
from .record import UsageRecord
from .recount import Recount, RecountStatus, recount

__all__ = [
    "Billed",
    "Collected",
    "DayParser",
    "LogFile",
    "ParseStats",
    "ParsedDay",
    "Recount",
    "RecountStatus",
    "UsageRecord",
    "billed",
    "collect",
    "is_log_file",
    "parse_day",
    "reconcile",
    "recount",
    "resolve_sources",
]
