"""Stream a day's usage records out of raw log files (JSON Lines and the common recipe's lines).

Every line is accounted for in :class:`ParseStats`: a record of day D (its ``ts`` in the configured
time zone), a loss marker of day D (``"kind": "loss"``, dated by its ``from``: what a service's
logger lost and wrote down; counted, kept in :attr:`DayParser.losses`, never a record), a record or
marker of another day, a duplicate of one already taken (same ``id``), a blank line, a trailing
partial line (a file that does not end in a newline: still being written or cut by a crash; skipped
and counted, re-read by a later run), or a malformed line, which goes to the quarantine with its
source, line number, a reason and a truncated SHA-256 of its bytes — never its text.

A ``full`` record without ``prompt_sha256`` or ``prompt_chars`` (the logger leaves them out) gets
them derived from its messages, prompt and tools, as :mod:`llmtally._record` describes: the values
the logger would have written.

Legacy lines (``2026-11-20 10:00:00,123 - {'prompt': ..., 'prompt_tokens': ..., ...}``) are read with
:func:`ast.literal_eval` (literals only, nothing is executed).  Their ``timestamp`` (epoch seconds or
ISO text; naive means the configured time zone) dates them, else the ``asctime``.  Their id is a
digest of the line, so the same line found twice (a copied or re-rotated file) counts once.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import re
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from os import PathLike
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from .._config import DEFAULT_TIMEZONE
from .._record import derived_prompt_fields, normalize_usage, prompt_digest
from .._time import day_bounds
from ..store._rows import LossEntry, QuarantineEntry
from .record import UsageRecord

__all__ = ["DayParser", "ParseStats", "ParsedDay", "parse_day"]

_LEGACY = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:[,.]\d{1,6})?) - (\{.*\})")
_EPOCH = re.compile(r"\d{9,11}(?:\.\d+)?")
_ID = re.compile(r"[0-9A-Za-z_.:-]{1,128}")
_STR_FIELDS = (
    "service",
    "host",
    "request_id",
    "endpoint",
    "model",
    "prompt",
    "completion",
    "reasoning",
    "text",
    "prompt_sha256",
    "status",
    "finish_reason",
    "error",
)


class _Bad(Exception):
    """A line is malformed; the message is a fixed reason (never the line's text)."""


@dataclass
class ParseStats:
    """Line accounting for one parse: every line read lands in exactly one of ``records``,
    ``loss_markers``, ``out_of_day``, ``later``, ``duplicates``, ``partial_lines``, ``blank_lines`` and
    ``quarantined`` (which also counts unreadable or truncated files).  ``later`` counts records of
    the day at or after the parser's ``until`` (an intraday run's cut: the next run takes them).
    ``bytes`` counts the bytes of the lines read (decompressed for gzip files).  ``lost_records``
    sums the ``records`` the day's loss markers say were lost."""

    files: int = 0
    bytes: int = 0
    lines: int = 0
    records: int = 0
    legacy_records: int = 0
    out_of_day: int = 0
    later: int = 0
    duplicates: int = 0
    partial_lines: int = 0
    blank_lines: int = 0
    quarantined: int = 0
    loss_markers: int = 0
    lost_records: int = 0


@dataclass
class ParsedDay:
    """A day's records (materialised), with the stats, quarantine and loss markers of the parse."""

    day: date
    timezone: str
    records: list[UsageRecord]
    stats: ParseStats
    quarantine: list[QuarantineEntry] = field(default_factory=list)
    losses: list[LossEntry] = field(default_factory=list)


def _sha(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:16]


def _int_or_none(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(f"{name} is not an integer")
    return value


def _http_status(value: Any) -> int | None:
    """An HTTP status (100-599) from an int, an integral float or digits; anything else ``None``.

    Never a reason to quarantine: the record's usage is billed whatever this field holds.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    return value if isinstance(value, int) and 100 <= value <= 599 else None


def _counts(value: Any, name: str) -> dict[str, int | None] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _Bad(f"{name} is not an object")
    counts = normalize_usage(value)
    if counts is not None and any(v is not None and v < 0 for v in counts.values()):
        raise _Bad(f"negative token count in {name}")
    return counts


def _object(line: str, decode: Any = json.loads) -> dict[str, Any]:
    try:
        obj = decode(line)
    except (ValueError, RecursionError):
        raise _Bad("invalid JSON") from None
    if not isinstance(obj, dict):
        raise _Bad("not a JSON object")
    return obj


class DayParser:
    """Parses files for the records of one day; collects :attr:`stats`, :attr:`quarantine` and
    :attr:`losses` (one :class:`LossEntry` per loss marker, in file order).

    ``max_quarantine`` bounds the quarantine entries and the loss entries kept in memory (all are
    counted).  ``until`` (aware) cuts the day short: records at or after it are counted as
    ``later`` and not taken (an intraday run reads the day so far up to its own start).
    ``derive=False`` leaves ``prompt_sha256`` and ``prompt_chars`` ``None`` where a record left them
    out (the ``parse`` task, which only fixes the day's ids, spares itself the digests; the recount
    shards that sum the records derive them).
    """

    def __init__(
        self,
        day: date,
        tz: str = DEFAULT_TIMEZONE,
        *,
        max_quarantine: int = 100_000,
        until: datetime | None = None,
        derive: bool = True,
    ) -> None:
        self.day = day
        self.timezone = tz
        self._zone = ZoneInfo(tz)
        start, end = day_bounds(day, tz)
        self._start, self._end = start.astimezone(UTC), end.astimezone(UTC)
        if until is not None and until.tzinfo is None:
            raise ValueError("until must be an aware datetime")
        self._until = self._end if until is None else min(self._end, until.astimezone(UTC))
        self._seen: set[str] = set()
        self._derive = derive
        self._nonfinite = False  # the line being read holds NaN or Infinity (json reads them; not JSON)
        self._decode = json.JSONDecoder(parse_constant=self._constant).decode
        self._max_quarantine = max_quarantine
        self.stats = ParseStats()
        self.quarantine: list[QuarantineEntry] = []
        self.losses: list[LossEntry] = []
        self.offset = 0
        """Where the line of the record last handed out begins (bytes, decompressed)."""
        self.next_offset = 0
        """Where that line ends (the next line begins)."""

    def parse(self, files: Iterable[str | PathLike[str]]) -> Iterator[UsageRecord]:
        """Records of the day from ``files``, in file order, each id once."""
        for path in files:
            yield from self.parse_file(path)

    def parse_file(
        self, path: str | PathLike[str], *, start: int = 0, end: int | None = None, first_line: int = 1
    ) -> Iterator[UsageRecord]:
        """Records of the day from one file (plain or gzip, detected by content).

        ``start`` and ``end`` read a byte range of the (decompressed) file only: ``start`` must be
        where a line begins and ``first_line`` its line number; lines beginning at or after ``end``
        are not read.  While a record is being handed out, :attr:`offset` and :attr:`next_offset`
        are where its line begins and ends (a recount shard re-reads exactly those bytes).
        """
        p = Path(path)
        source = str(p)
        self.stats.files += 1
        lineno = first_line - 1
        pos = start
        try:
            with open(p, "rb") as probe:
                gz = probe.read(2) == b"\x1f\x8b"
            with gzip.open(p, "rb") if gz else open(p, "rb") as fh:
                if start:
                    fh.seek(start)  # gzip: decompresses up to it
                for raw in fh:
                    if end is not None and pos >= end:
                        break
                    lineno += 1
                    self.stats.lines += 1
                    self.stats.bytes += len(raw)
                    if not raw.endswith(b"\n"):
                        self.stats.partial_lines += 1
                        break
                    rec = self._line(raw, source, lineno, p)
                    self.offset, pos = pos, pos + len(raw)
                    self.next_offset = pos
                    if rec is not None:
                        yield rec
        except (EOFError, gzip.BadGzipFile, zlib.error):
            self._quarantine(source, lineno + 1, "corrupt or truncated gzip stream", b"")
        except OSError:
            self._quarantine(source, lineno + 1, "file could not be read", b"")

    def _constant(self, name: str) -> float:
        self._nonfinite = True
        return float(name)

    def _quarantine(self, source: str, lineno: int, reason: str, raw: bytes) -> None:
        self.stats.quarantined += 1
        if len(self.quarantine) < self._max_quarantine:
            self.quarantine.append(QuarantineEntry(self.day, source, lineno, reason, _sha(raw)))

    def _line(self, raw: bytes, source: str, lineno: int, path: Path) -> UsageRecord | None:
        text = raw.strip()
        if not text:
            self.stats.blank_lines += 1
            return None
        try:
            line = text.decode("utf-8")
            if line.startswith("{"):
                self._nonfinite = False
                obj = _object(line, self._decode)
                if obj.get("kind") == "loss":
                    self._loss(obj)
                    return None
                rec = self._json(obj, source, lineno)
            else:
                rec = self._legacy(line, source, lineno, path)
        except _Bad as exc:
            self._quarantine(source, lineno, str(exc), raw)
            return None
        except UnicodeDecodeError:
            self._quarantine(source, lineno, "not UTF-8", raw)
            return None
        if not self._start <= rec.ts < self._end:
            self.stats.out_of_day += 1
            return None
        if rec.ts >= self._until:
            self.stats.later += 1
            return None
        if rec.id in self._seen:
            self.stats.duplicates += 1
            return None
        self._seen.add(rec.id)
        self.stats.records += 1
        self.stats.legacy_records += rec.legacy
        return rec

    def _ts(self, value: Any) -> datetime:
        if isinstance(value, bool):
            raise _Bad("ts is not a timestamp")
        try:
            if isinstance(value, int | float):
                return datetime.fromtimestamp(value, UTC)
            if isinstance(value, str) and _EPOCH.fullmatch(value.strip()):
                return datetime.fromtimestamp(float(value), UTC)
            if isinstance(value, str):
                ts = datetime.fromisoformat(value.strip())
                if ts.tzinfo is None:
                    ts = ts.replace(tzinfo=self._zone)
                return ts.astimezone(UTC)
        except (ValueError, OverflowError, OSError):
            raise _Bad("ts is not an ISO 8601 timestamp") from None
        raise _Bad("ts is missing")

    def _loss(self, obj: dict[str, Any]) -> None:
        """A loss marker: counted and kept when it belongs to the day (by ``from``)."""
        rid = obj.get("id")
        if not isinstance(rid, str) or not _ID.fullmatch(rid):
            raise _Bad("loss marker: missing or invalid id")
        records = obj.get("records")
        if isinstance(records, bool) or not isinstance(records, int) or records < 0:
            raise _Bad("loss marker: records is not a count")
        for key in ("service", "host", "reason"):
            if obj.get(key) is not None and not isinstance(obj[key], str):
                raise _Bad(f"loss marker: {key} is not a string")
        try:
            first = self._ts(obj.get("from", obj.get("ts")))
            last = self._ts(obj["to"]) if obj.get("to") is not None else first
        except _Bad:
            raise _Bad("loss marker: from or to is not an ISO 8601 timestamp") from None
        if not self._start <= first < self._end:
            self.stats.out_of_day += 1
            return
        if rid in self._seen:
            self.stats.duplicates += 1
            return
        self._seen.add(rid)
        self.stats.loss_markers += 1
        self.stats.lost_records += records
        if len(self.losses) < self._max_quarantine:
            entry = LossEntry(
                self.day, obj.get("service") or "", obj.get("host") or "", records, first, max(first, last),
                obj.get("reason") or "unknown",
            )  # fmt: skip
            self.losses.append(entry)

    def _json(self, obj: dict[str, Any], source: str, lineno: int) -> UsageRecord:
        rid = obj.get("id")
        if not isinstance(rid, str) or not _ID.fullmatch(rid):
            raise _Bad("missing or invalid id")
        for key in _STR_FIELDS:
            if obj.get(key) is not None and not isinstance(obj[key], str):
                raise _Bad(f"{key} is not a string")
        messages, tools = obj.get("messages"), obj.get("tools")
        if messages is not None and not isinstance(messages, list):
            raise _Bad("messages is not a list")
        if tools is not None and not isinstance(tools, list):
            raise _Bad("tools is not a list")
        choices, inputs = obj.get("choices"), obj.get("inputs")
        if choices is not None and not (
            isinstance(choices, list) and all(isinstance(c, dict) for c in choices)
        ):
            raise _Bad("choices is not a list of objects")
        if inputs is not None and not (
            isinstance(inputs, list)
            and all(
                isinstance(x, str) or (isinstance(x, list) and all(type(t) is int for t in x)) for x in inputs
            )
        ):
            raise _Bad("inputs is not a list of strings or token-id lists")
        kwargs = obj.get("template_kwargs")
        if kwargs is not None and not isinstance(kwargs, dict):
            raise _Bad("template_kwargs is not an object")
        tags = obj.get("tags") or {}
        if not isinstance(tags, dict):
            raise _Bad("tags is not an object")
        latency = obj.get("latency_ms")
        if isinstance(latency, bool) or not isinstance(latency, int | float | None):
            raise _Bad("latency_ms is not a number")
        ts = self._ts(obj.get("ts"))
        digest = obj.get("prompt_sha256")
        chars = _int_or_none(obj.get("prompt_chars"), "prompt_chars")
        prompt = obj.get("prompt")
        if (
            self._derive
            and (digest is None or chars is None)
            and (messages is not None or prompt is not None)
            and obj.get("text") == "full"
            and self._start <= ts < self._until  # (only for records taken)
        ):  # left out by the logger: derived from the text, the values it would have written
            try:
                derived, derived_chars = derived_prompt_fields(
                    messages, prompt, tools, nonfinite=self._nonfinite
                )
            except RecursionError:  # nested too deep to encode: no digest, but the record is taken
                derived, derived_chars = None, None  # (whether a record is taken never depends on derive)
            digest = derived if digest is None else digest
            chars = derived_chars if chars is None else chars
        return UsageRecord(
            id=rid,
            ts=ts,
            source=source,
            line=lineno,
            v=_int_or_none(obj.get("v"), "v") or 1,
            service=obj.get("service"),
            host=obj.get("host"),
            pid=_int_or_none(obj.get("pid"), "pid"),
            request_id=obj.get("request_id"),
            endpoint=obj.get("endpoint"),
            model=obj.get("model"),
            messages=messages,
            prompt=prompt,
            tools=tools,
            tool_choice=obj.get("tool_choice"),
            template_kwargs=kwargs,
            completion=obj.get("completion"),
            reasoning=obj.get("reasoning"),
            tool_calls=obj.get("tool_calls"),
            choices=choices,
            inputs=inputs,
            text=obj.get("text"),
            prompt_sha256=digest,
            prompt_chars=chars,
            completion_chars=_int_or_none(obj.get("completion_chars"), "completion_chars"),
            usage=_counts(obj.get("usage"), "usage"),
            estimate=_counts(obj.get("estimate"), "estimate"),
            tags={str(k): str(v) for k, v in tags.items() if v is not None},
            latency_ms=float(latency) if latency is not None else None,
            status=obj.get("status"),
            finish_reason=obj.get("finish_reason"),
            error=obj.get("error"),
            http_status=_http_status(obj.get("http_status")),
        )

    def _legacy(self, line: str, source: str, lineno: int, path: Path) -> UsageRecord:
        m = _LEGACY.fullmatch(line)
        if m is None:
            raise _Bad("neither a JSON record nor a '<asctime> - {...}' usage line")
        try:
            obj = ast.literal_eval(m.group(2))
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise _Bad("legacy line: not a Python dict literal") from None
        if not isinstance(obj, dict):
            raise _Bad("legacy line: not a dict")
        counts = {
            k: _int_or_none(obj.get(k), k) for k in ("prompt_tokens", "completion_tokens", "total_tokens")
        }
        if counts["prompt_tokens"] is None or counts["completion_tokens"] is None:
            raise _Bad("legacy line: prompt_tokens and completion_tokens are required")
        if any(v is not None and v < 0 for v in counts.values()):
            raise _Bad("negative token count in legacy line")
        stamp = obj.get("timestamp")
        ts = self._ts(stamp if stamp is not None else m.group(1).replace(",", "."))
        prompt = obj.get("prompt")
        model, service = obj.get("model"), obj.get("service")
        return UsageRecord(
            id=hashlib.sha256(b"legacy\0" + line.encode("utf-8")).hexdigest()[:32],
            ts=ts,
            source=source,
            line=lineno,
            service=service if isinstance(service, str) else path.parent.name,
            model=model if isinstance(model, str) else None,
            text="legacy",
            prompt_sha256=prompt_digest(prompt=prompt) if isinstance(prompt, str) else None,
            prompt_chars=len(prompt) if isinstance(prompt, str) else None,
            estimate={
                "prompt_tokens": counts["prompt_tokens"],
                "completion_tokens": counts["completion_tokens"],
            },
            tags={
                str(k): str(v) for k, v in obj.items() if k in ("feature", "user", "tenant") and v is not None
            },
            legacy=True,
        )


def parse_day(files: Iterable[str | PathLike[str]], day: date, tz: str = DEFAULT_TIMEZONE) -> ParsedDay:
    """Parse ``files`` for ``day`` and keep every record in memory (see :class:`DayParser`)."""
    parser = DayParser(day, tz)
    records = list(parser.parse(files))
    return ParsedDay(day, tz, records, parser.stats, parser.quarantine, parser.losses)
