"""Turn what :meth:`UsageLogger.log` queued into raw records and JSON Lines (off the request path).

Everything here runs on the logger's writer thread (or on a caller's, the queue being full):
normalising usage, applying the text policy (``LLMTALLY_LOG_TEXT``), hashing and counting characters
where the record needs it, and serialising.  The record format is documented in
:mod:`llmtally._record`.  The common ``full`` records take a lean path (:func:`_lean_line`: two orjson
calls, no digest, which the reader derives); everything else the general one (:func:`_general_line`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from .._exceptions import ConfigError
from .._record import (
    _SORTED,
    RECORD_VERSION,
    _float_differs,
    _orjson,
    normalize_usage,
    prompt_chars,
    prompt_digest,
)

__all__ = [
    "Pending",
    "TextPolicy",
    "build_record",
    "iso_epoch",
    "loss_line",
    "new_ids",
    "record_line",
]

# Keys the logger owns: extra fields passed to log() may not overwrite them (``kind`` marks a loss
# marker, so a caller can never make a usage record look like one).
_RESERVED = frozenset(
    {"v", "kind", "id", "ts", "service", "host", "pid", "text", "prompt_sha256", "prompt_chars",
     "completion_chars"}
)  # fmt: skip
_TEXT_KEYS = ("messages", "prompt", "completion", "reasoning")


class Pending(NamedTuple):
    """One call to :meth:`UsageLogger.log`, as queued (no work done yet)."""

    logged_at: float
    ts: Any
    model: Any
    messages: Any
    prompt: Any
    completion: Any
    tools: Any
    usage: Any
    estimate: Any
    tags: Any
    context_tags: Mapping[str, str]
    latency_ms: Any
    status: Any
    request_id: Any
    fields: Mapping[str, Any] | None


@dataclass(frozen=True)
class TextPolicy:
    """How much raw text a record keeps: ``full``, ``hash`` (none) or ``prefix:N`` (first N chars)."""

    mode: str = "full"
    prefix: int = 0

    @classmethod
    def parse(cls, value: str | None) -> TextPolicy:
        """Parse ``full`` | ``hash`` | ``prefix:N``; raise :class:`ConfigError` otherwise."""
        text = (value or "full").strip().lower()
        if text in ("full", "hash"):
            return cls(text)
        if text.startswith("prefix:"):
            n = text.removeprefix("prefix:")
            if n.isdigit():
                return cls("prefix", int(n))
        raise ConfigError(
            f"text policy {value!r} is not one of 'full', 'hash', 'prefix:N' "
            "(set LLMTALLY_LOG_TEXT or UsageLogger(text=...))"
        )

    @property
    def label(self) -> str:
        """The value recorded in each record's ``text`` key."""
        return f"prefix:{self.prefix}" if self.mode == "prefix" else self.mode


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _plain(obj: Any) -> Any:
    """Pydantic models (e.g. messages returned by the OpenAI SDK) to plain data."""
    dump = getattr(obj, "model_dump", None)
    if callable(dump) and not isinstance(obj, Mapping | str):
        return dump(exclude_none=True)
    return obj


def _messages(messages: Any) -> list[Any]:
    if type(messages) is list or isinstance(messages, Sequence):
        return [m if type(m) is dict else _plain(m) for m in messages]
    return messages  # type: ignore[no-any-return]


_FAST_USAGE = frozenset({"prompt_tokens", "completion_tokens", "total_tokens"})


def _usage(usage: Any) -> dict[str, int | None] | None:
    """:func:`normalize_usage`, with a fast path for the plain ``{prompt, completion[, total]}`` dict."""
    if type(usage) is dict and usage.keys() <= _FAST_USAGE:
        p, c = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if type(p) is int and type(c) is int and type(t := usage.get("total_tokens", p + c)) is int:
            return {
                "prompt_tokens": p,
                "completion_tokens": c,
                "total_tokens": t,
                "cached_tokens": None,
                "reasoning_tokens": None,
            }
    return normalize_usage(usage)


def _cut_messages(messages: Any, n: int) -> Any:
    if not isinstance(messages, list):
        return None
    out = []
    for m in messages:
        if not isinstance(m, Mapping):
            continue
        content = m.get("content")
        if isinstance(content, str):
            cut: Any = content[:n]
        elif isinstance(content, list):
            cut = "".join(p.get("text", "") for p in content if isinstance(p, Mapping))[:n]
        else:
            cut = None
        out.append({"role": m.get("role"), "content": cut})
    return out


def _tool_call_names(tool_calls: Any) -> Any:
    if not isinstance(tool_calls, list):
        return None
    names = []
    for tc in tool_calls:
        fn = _get(_plain(tc), "function")
        names.append({"type": "function", "function": {"name": _get(fn, "name")}})
    return names


_iso_cache: tuple[int, str] = (-1, "")


def iso_epoch(t: float) -> str:
    """``datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds")``, cached per second."""
    global _iso_cache
    sec = int(t // 1)
    us = round((t - sec) * 1e6)
    if us >= 1_000_000:
        sec, us = sec + 1, us - 1_000_000
    cached_sec, prefix = _iso_cache
    if sec != cached_sec:
        prefix = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _iso_cache = (sec, prefix)
    return f"{prefix}.{us:06d}+00:00"


def _iso(t: Any, fallback: float) -> str:
    if t is None:
        return iso_epoch(fallback)
    if isinstance(t, datetime):
        dt = t if t.tzinfo is not None else t.astimezone()
        return dt.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(t, int | float) and not isinstance(t, bool):
        return iso_epoch(float(t))
    if isinstance(t, str) and t:
        return t
    return iso_epoch(fallback)


# prompt_digest()'s canonical JSON, used to hash and to write messages and tools with one encoding.
_canonical_encode = json.JSONEncoder(
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str
).encode
_basestring: Any = getattr(json.encoder, "c_encode_basestring", None) or json.encoder.py_encode_basestring

# orjson (``llmtally[fast]``, imported by :mod:`llmtally._record` where installed, else None): ~7x
# faster encoding, same canonical text; the base install and tests that switch it off use stdlib json.
# orjson writes a few floats differently from json (1e-05 as 0.00001, 1e-07 as 1e-7): such output
# is re-encoded by json so the canonical text, and so the digest, does not depend on the install.
# Two exceptions, neither of them JSON: NaN / infinities (orjson: null) and Enum members (orjson:
# their value; json's default=str: their name).

use_orjson: bool = _orjson is not None
"""Whether the writer encodes with orjson (installed); tests and benchmarks switch it off."""


def _orjson_bytes(obj: Any, sort: bool, default: Any) -> bytes | None:
    """``obj`` as UTF-8 JSON by orjson, or ``None`` where json must do it (non-str keys, ints beyond 64
    bits, lone surrogates, objects json renders by ``default=str``, floats written differently)."""
    try:
        out: bytes = _orjson.dumps(obj, default=default, option=_SORTED if sort else 0)
    except (TypeError, ValueError):  # orjson.JSONEncodeError is a TypeError
        return None
    if _float_differs(out):
        return None
    return out


def _canonical(obj: Any) -> str:
    """``obj`` as prompt_digest()'s canonical JSON text."""
    if obj is None:
        return "null"
    if type(obj) is str:
        return _basestring(obj)  # type: ignore[no-any-return]
    if use_orjson:
        out = _orjson_bytes(obj, True, None)
        if out is not None:
            return out.decode("utf-8")
    return _canonical_encode(obj)


def _canonical_bytes(obj: Any) -> tuple[bytes, bool]:
    """``obj``'s canonical JSON as the UTF-8 bytes the digest hashes, and whether they are valid
    UTF-8 (no lone surrogates, encoded here as ``surrogatepass`` does) and so fit in a line."""
    if obj is None:
        return b"null", True
    if type(obj) is str:
        text = _basestring(obj)
    else:
        if use_orjson:
            out = _orjson_bytes(obj, True, None)
            if out is not None:
                return out, True
        text = _canonical_encode(obj)
    try:
        return text.encode("utf-8"), True
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass"), False


_SPLICED = ("messages", "tools")


def build_record(
    p: Pending, *, rid: str, service: str, host: str, pid: int, policy: TextPolicy
) -> dict[str, Any]:
    """Build the raw record (see :mod:`llmtally._record`) for one queued call."""
    return _build(p, rid, service, host, pid, policy, None)


def record_line(
    p: Pending,
    *,
    rid: str,
    service: str,
    host: str,
    pid: int,
    policy: TextPolicy,
    defaults: Mapping[str, str] | None = None,
) -> bytes:
    """The record as one UTF-8 JSON line, without the newline.

    ``defaults`` are the logger's own tags (request tags override them).  The common shapes (plain
    message dicts, text, a usage dict; ``full`` text mode, orjson installed) take a lean path that
    writes the same bytes as the general one; text that cannot be UTF-8 encoded (lone surrogates)
    is written with JSON ``\\u`` escapes.
    """
    if use_orjson and policy.mode == "full":
        line = _lean_line(p, rid, service, host, pid, defaults)
        if line is not None:
            return line
    if defaults:
        p = p._replace(context_tags={**defaults, **p.context_tags})
    return _general_line(p, rid, service, host, pid, policy)


def _general_line(p: Pending, rid: str, service: str, host: str, pid: int, policy: TextPolicy) -> bytes:
    """Any record.  In ``full`` text mode the canonical JSON of messages and tools computed for
    ``prompt_sha256`` is spliced into the line instead of being encoded a second time."""
    canon: dict[str, tuple[bytes, bool]] = {}
    rec = _build(p, rid, service, host, pid, policy, canon)
    spliced = {k: rec.pop(k) for k in _SPLICED if k in canon}
    head = _dumps(rec)
    rec.update(spliced)
    try:
        if not all(canon[k][1] for k in spliced):
            raise UnicodeEncodeError("utf-8", "", 0, 1, "lone surrogate")
        line = head.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: this record with \u escapes
        return _dumps_ascii(rec).encode("ascii")
    if not spliced:
        return line
    return b"".join([line[:-1], *[_SPLICE_KEYS[k] + canon[k][0] for k in spliced], b"}"])


_SPLICE_KEYS = {"messages": b',"messages":', "tools": b',"tools":'}


def _digest(messages: Any, prompt: Any, tools: Any, canon: dict[str, tuple[bytes, bool]] | None) -> str:
    if canon is None:
        return prompt_digest(messages, prompt, tools)
    m, t = _canonical_bytes(messages), _canonical_bytes(tools)
    blob = b"".join(
        [b'{"messages":', m[0], b',"prompt":', _canonical_bytes(prompt)[0], b',"tools":', t[0], b"}"]
    )
    if messages is not None:
        canon["messages"] = m
    if tools is not None:
        canon["tools"] = t
    return hashlib.sha256(blob).hexdigest()


_LEAN_DECLINED = frozenset({"tool_calls", "choices", "inputs", "messages", "prompt", "tools"})
"""Extra fields the lean path leaves to the general one (rewritten, or clashing with text keys)."""
_TEXT_OPTIONS = (
    _orjson.OPT_PASSTHROUGH_DATETIME | _orjson.OPT_PASSTHROUGH_DATACLASS if _orjson is not None else 0
)
"""Messages and tools as plain JSON: anything orjson would render otherwise than its parsed-back
value's canonical JSON (datetimes, dataclasses, other objects) raises instead."""


def _lean_line(
    p: Pending, rid: str, service: str, host: str, pid: int, defaults: Mapping[str, str] | None
) -> bytes | None:
    """The common ``full`` records (a list of messages or a str prompt, str completion, tools as a
    list; orjson installed) in two orjson calls, or ``None`` for :func:`_general_line`.

    Messages, prompt and tools are written as plain JSON that parses back to values whose canonical
    JSON is the one the logger would have hashed (str keys, no objects, ints within 64 bits, no lone
    surrogates: orjson raises otherwise), so ``prompt_sha256`` and ``prompt_chars`` are left out:
    the reader derives them (:mod:`llmtally._record`).  Every other key is the general path's.
    """
    messages, prompt, completion, tools = p.messages, p.prompt, p.completion, p.tools
    if (prompt is not None and type(prompt) is not str) or (
        completion is not None and type(completion) is not str
    ):
        return None
    if messages is not None and type(messages) is not list:
        return None
    if tools is not None and (type(tools) is not list or (messages is None and prompt is None)):
        return None  # (tools without a prompt: the general path's business)
    fields = p.fields
    if fields and not _LEAN_DECLINED.isdisjoint(fields):
        return None
    latency = p.latency_ms
    if latency is not None and (type(latency) is not float and type(latency) is not int):
        return None  # bool, numeric subclasses, non-numbers: the general path's rules
    try:
        m = _orjson.dumps(messages, option=_TEXT_OPTIONS) if messages is not None else None
        t = _orjson.dumps(tools, option=_TEXT_OPTIONS) if tools is not None else None
    except (TypeError, ValueError):
        return None
    start = p.logged_at
    if p.ts is None and latency is not None and latency > 0:
        start -= latency / 1000.0
    head: dict[str, Any] = {
        "v": RECORD_VERSION, "id": rid, "ts": iso_epoch(start) if p.ts is None else _iso(p.ts, start),
        "service": service, "host": host, "pid": pid,
    }  # fmt: skip
    if p.request_id is not None:
        head["request_id"] = p.request_id
    if p.model is not None:
        head["model"] = p.model
    if prompt is not None:
        head["prompt"] = prompt
    if completion is not None:
        head["completion"] = completion
    head["text"] = "full"
    if completion is not None:
        head["completion_chars"] = len(completion)
    if p.usage is not None:
        usage = _usage(p.usage)
        if usage is not None:
            head["usage"] = usage
    estimate = p.estimate
    if estimate is not None:
        head["estimate"] = dict(estimate) if isinstance(estimate, Mapping) else normalize_usage(estimate)
    context = p.context_tags
    tags = {**defaults, **context} if defaults else dict(context) if context else {}
    if p.tags:
        tags.update({str(k): str(v) for k, v in p.tags.items() if v is not None})
    if tags:
        head["tags"] = tags
    if latency is not None:
        head["latency_ms"] = round(float(latency), 3)
    head["status"] = p.status or "ok"
    if fields:
        for key, value in fields.items():
            if value is not None and key not in _RESERVED and key not in head:
                head[key] = value
    try:
        out: bytes = _orjson.dumps(head, default=_default)
    except (TypeError, ValueError):
        return None
    if m is None and t is None:
        return out
    parts = [out[:-1]]
    if m is not None:
        parts += (b',"messages":', m)
    if t is not None:
        parts += (b',"tools":', t)
    parts.append(b"}")
    return b"".join(parts)


def _build(
    p: Pending,
    rid: str,
    service: str,
    host: str,
    pid: int,
    policy: TextPolicy,
    canon: dict[str, tuple[bytes, bool]] | None,
) -> dict[str, Any]:
    full = policy.mode == "full"
    if not full:
        canon = None
    messages = _messages(p.messages) if p.messages is not None else None
    tools = p.tools
    if tools is not None and isinstance(tools, Sequence):
        tools = [t if type(t) is dict else _plain(t) for t in tools]
    latency = p.latency_ms
    numeric_latency = isinstance(latency, int | float) and not isinstance(latency, bool)
    start = p.logged_at
    if p.ts is None and numeric_latency and latency > 0:
        start -= latency / 1000.0  # ts is the request start
    prompt = p.prompt
    if prompt is not None and type(prompt) is not str:
        prompt = str(prompt)  # e.g. token ids decoded lazily, here on the writer thread
    completion = p.completion
    if completion is not None and type(completion) is not str:
        completion = str(completion)
    rec: dict[str, Any] = {
        "v": RECORD_VERSION,
        "id": rid,
        "ts": _iso(p.ts, start),
        "service": service,
        "host": host,
        "pid": pid,
    }
    if p.request_id is not None:
        rec["request_id"] = p.request_id
    if p.model is not None:
        rec["model"] = p.model
    if messages is not None:
        rec["messages"] = messages
    if prompt is not None:
        rec["prompt"] = prompt
    if tools is not None:
        rec["tools"] = tools
    if completion is not None:
        rec["completion"] = completion
    rec["text"] = policy.label
    if messages is not None or prompt is not None:
        rec["prompt_sha256"] = _digest(messages, prompt, tools, canon)
        chars = prompt_chars(messages if type(messages) is list else None, prompt)
        if chars is not None:
            rec["prompt_chars"] = chars
    if completion is not None:
        rec["completion_chars"] = len(completion)
    usage = _usage(p.usage) if p.usage is not None else None
    if usage is not None:
        rec["usage"] = usage
    estimate = p.estimate
    if estimate is not None:
        rec["estimate"] = dict(estimate) if isinstance(estimate, Mapping) else normalize_usage(estimate)
    tags = dict(p.context_tags) if p.context_tags else {}
    if p.tags:
        tags.update({str(k): str(v) for k, v in p.tags.items() if v is not None})
    if tags:
        rec["tags"] = tags
    if numeric_latency:
        rec["latency_ms"] = round(float(latency), 3)
    rec["status"] = p.status or "ok"
    if p.fields:
        for key, value in p.fields.items():
            if value is not None and key not in _RESERVED and key not in rec:
                rec[key] = value
        if "tool_calls" in rec:
            rec["tool_calls"] = _messages(rec["tool_calls"])
        if "choices" in rec:
            _choices(rec)
        if "inputs" in rec:
            _inputs(rec)
    if not full:
        _apply_policy(rec, policy)
    return rec


def _choices(rec: dict[str, Any]) -> None:
    """Every choice of an ``n > 1`` call as plain data; ``completion_chars`` covers them all."""
    choices = rec["choices"]
    if isinstance(choices, str) or not isinstance(choices, Sequence):
        return  # not the documented shape: kept only in full text mode (see _apply_policy)
    plain = []
    chars = 0
    for c in choices:
        c = dict(_plain(c)) if not isinstance(c, dict) else dict(c)
        if "tool_calls" in c:
            c["tool_calls"] = _messages(c["tool_calls"])
        text = c.get("completion")
        if type(text) is str:
            chars += len(text)
        plain.append(c)
    rec["choices"] = plain
    rec["completion_chars"] = chars


def _inputs(rec: dict[str, Any]) -> None:
    """Several prompts or embedding inputs (strings or token-id lists) in one call."""
    inputs = rec["inputs"]
    if isinstance(inputs, str) or not isinstance(inputs, Sequence):
        return  # not the documented shape: kept only in full text mode (see _apply_policy)
    inputs = rec["inputs"] = [
        list(x) if isinstance(x, Sequence) and not isinstance(x, str) else x for x in inputs
    ]
    rec["prompt_chars"] = sum(len(x) for x in inputs if type(x) is str)
    # digest of the inputs as one canonical prompt string: equal inputs, equal digest
    rec["prompt_sha256"] = prompt_digest(None, _canonical(inputs), None)


_CHOICE_KEPT = ("index", "finish_reason")


def _apply_policy(rec: dict[str, Any], policy: TextPolicy) -> None:
    n = policy.prefix
    choices = rec.pop("choices", None)
    if isinstance(choices, list):  # an allow-list per choice: nothing else of it survives
        kept = []
        for c in choices:
            out = {k: c[k] for k in _CHOICE_KEPT if k in c}
            if policy.mode == "prefix":
                for key in ("completion", "reasoning"):
                    if isinstance(c.get(key), str):
                        out[key] = c[key][:n]
            if c.get("tool_calls") is not None:
                out["tool_calls"] = _tool_call_names(c["tool_calls"])
            kept.append(out)
        rec["choices"] = kept
    inputs = rec.pop("inputs", None)
    if isinstance(inputs, list) and policy.mode == "prefix":
        rec["inputs"] = [x[:n] if type(x) is str else [] for x in inputs]
    for key in _TEXT_KEYS:
        value = rec.get(key)
        if value is None:
            continue
        if policy.mode == "hash":
            del rec[key]
        elif key == "messages":
            rec[key] = _cut_messages(value, n)
        elif isinstance(value, str):
            rec[key] = value[:n]
    rec.pop("tools", None)
    if rec.get("tool_calls") is not None:
        rec["tool_calls"] = _tool_call_names(rec["tool_calls"])


def _default(obj: Any) -> Any:
    plain = _plain(obj)
    if plain is not obj:
        return plain
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    return str(obj)


_json_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_default).encode


def _dumps(obj: Any) -> str:
    if use_orjson:
        out = _orjson_bytes(obj, False, _default)
        if out is not None:
            return out.decode("utf-8")
    return _json_dumps(obj)


_dumps_ascii = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), default=_default).encode


def loss_line(
    *,
    rid: str,
    at: float,
    service: str,
    host: str,
    pid: int,
    records: int,
    first: float,
    last: float,
    reason: str,
) -> str:
    """A loss marker (see :mod:`llmtally._record`) as one JSON line, without the newline.

    ``at`` is when the first of the ``records`` was lost, ``first`` and ``last`` when the earliest and
    latest of them were logged (epoch seconds).
    """
    return _dumps(
        {"v": RECORD_VERSION, "kind": "loss", "id": rid, "ts": iso_epoch(at), "service": service,
         "host": host, "pid": pid, "records": records, "from": iso_epoch(first), "to": iso_epoch(last),
         "reason": reason}
    )  # fmt: skip


def new_ids(n: int) -> list[str]:
    """``n`` random 32-hex-character record ids."""
    raw = os.urandom(16 * n).hex()
    return [raw[i : i + 32] for i in range(0, 32 * n, 32)]
