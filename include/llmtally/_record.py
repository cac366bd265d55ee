"""The raw usage record: the contract between services' loggers and the pipeline.

A raw log file is UTF-8 JSON Lines, one record per line, named
``usage-<service>-<host>-<pid>-<YYYYmmddTHHMMSS>-<seq>.jsonl`` (optionally ``.gz`` once closed).
A record is a JSON object with these keys (absent keys mean null):

==================  ==========================================================================
``v``               format version, ``1``
``id``              unique record id (32 hex chars); the pipeline de-duplicates on it
``ts``              request start, ISO 8601 with offset (the logger writes UTC)
``service``         service name; ``host``, ``pid`` where the record was written
``request_id``      the caller's or server's request id
``endpoint``        ``chat.completions`` | ``responses`` | ``completions`` | ``embeddings`` |
                    ``generate`` | ...
``model``           model name as the service called it (mapped to a tokenizer by the registry)
``messages``        chat messages (OpenAI shape) when the text is kept in full
``prompt``          a plain prompt string (completions / ``generate``), when kept in full
``tools``           tool definitions sent with the request; ``tool_choice`` likewise
``template_kwargs`` extra chat-template variables (e.g. ``{"enable_thinking": false}``)
``completion``      the generated text; ``reasoning`` the reasoning text where separate;
                    ``tool_calls`` the generated tool calls
``choices``         every choice of an ``n > 1`` call, in index order: ``{index, completion,
                    reasoning, tool_calls, finish_reason}`` (choice 0 is also in the keys above)
``inputs``          several prompts (legacy completions) or embedding inputs: strings or
                    token-id lists, each billed as a prompt of its own
``text``            ``full`` (recountable) | ``hash`` | ``prefix:N`` (text dropped or cut)
``prompt_sha256``   digest of the canonical prompt (messages or prompt, plus tools; ``inputs``
                    as one canonical JSON prompt): :func:`prompt_digest`
``prompt_chars``    length of the prompt text in characters (:func:`prompt_chars`);
                    ``completion_chars`` likewise
``usage``           what the server reported, normalised by :func:`normalize_usage`
``estimate``        what the service itself believed: ``{prompt_tokens, completion_tokens}``
``tags``            ``{str: str}``, e.g. ``feature``, ``user``, ``tenant``, ``route``
``latency_ms``      request latency; ``status`` ``ok`` | ``error`` | ``timeout`` | ``abandoned``
``finish_reason``   as reported; ``error`` the error class name (never text of the request)
``ttft_ms``         time to first token of a stream; ``http_status`` of a failed API call
==================  ==========================================================================

In a ``full`` record ``prompt_sha256`` and ``prompt_chars`` may be absent (the logger leaves them out
of records whose messages, prompt and tools are written as plain JSON, to keep that work off the
service): they are then derived from the record's own text by :func:`prompt_digest` and
:func:`prompt_chars` over the parsed ``messages``, ``prompt`` and ``tools``, which gives the very
value the logger would have written (the pipeline's parser does this).  Records written with the
keys keep them; ``hash`` and ``prefix:N`` records always carry them, their text being gone or cut.

A usage record has no ``kind`` key (the logger never lets a caller set one).  A line with
``"kind": "loss"`` is a **loss marker**: what a service's logger could not keep, written into the
same log as soon as the sink accepts writes again.  It is not a usage record and bills nothing; the
pipeline counts it per service and day (``quality.loss_markers``, ``quality.lost_records``, the
``losses`` table) and the report says it.  Its keys, all present::

    {"v": 1, "kind": "loss", "id": "<32 hex>", "ts": "<first loss, ISO UTC>", "service": "chat-api",
     "host": "web-1", "pid": 4242, "records": 1200, "from": "<ISO UTC>", "to": "<ISO UTC>",
     "reason": "disk full"}

==================  ==========================================================================
``id``              unique marker id (32 hex chars), de-duplicated like record ids
``ts``              when the first of these records was lost
``records``         how many records were lost (an integer >= 0)
``from``, ``to``    when the earliest and the latest of them were logged; the marker belongs to
                    the (report time zone) day of ``from``
``reason``          ``queue full`` (``on_full="drop"``), ``disk full`` (ENOSPC, EDQUOT),
                    ``read-only`` (EROFS), ``write error: <errno name>`` (e.g. ``EACCES``,
                    ``ENOTDIR``; the exception class when there is no errno), ``unwritten at exit``
                    (still queued when the logger closed), ``unserialisable record``
==================  ==========================================================================

One marker covers one reason over a window; a long outage may give several, which readers sum.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "RECORD_VERSION",
    "USAGE_KEYS",
    "content_chars",
    "derived_prompt_fields",
    "normalize_usage",
    "prompt_chars",
    "prompt_digest",
]

RECORD_VERSION = 1

USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens")
"""The canonical usage keys, in order."""


def _get(obj: Any, key: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _first(*values: Any) -> int | None:
    for v in values:
        iv = _int(v)
        if iv is not None:
            return iv
    return None


def normalize_usage(usage: Any) -> dict[str, int | None] | None:
    """Normalise any provider's usage object or dict to :data:`USAGE_KEYS`.

    Understands OpenAI Chat Completions (``prompt_tokens``, ``prompt_tokens_details.cached_tokens``,
    ``completion_tokens_details.reasoning_tokens``), the Responses API (``input_tokens``,
    ``output_tokens`` and their ``*_details``), DeepSeek (``prompt_cache_hit_tokens``), DashScope
    (``input_tokens``/``output_tokens``, ``prompt_tokens_details.cached_tokens``) and Anthropic-style
    ``cache_read_input_tokens``.  Returns ``None`` when no count is present at all.
    """
    if usage is None:
        return None
    if type(usage) is dict and usage.keys() <= _CANONICAL_KEYS:  # already canonical (what the logger writes)
        values = usage.values()
        if all(v is None or type(v) is int for v in values):
            return _completed(
                usage.get("prompt_tokens"), usage.get("completion_tokens"), usage.get("total_tokens"),
                usage.get("cached_tokens"), usage.get("reasoning_tokens"),
            )  # fmt: skip
    if not isinstance(usage, Mapping) and hasattr(usage, "model_dump"):
        usage = usage.model_dump()
    prompt = _first(_get(usage, "prompt_tokens"), _get(usage, "input_tokens"))
    completion = _first(_get(usage, "completion_tokens"), _get(usage, "output_tokens"))
    total = _first(_get(usage, "total_tokens"))
    pdet = _get(usage, "prompt_tokens_details") or _get(usage, "input_tokens_details")
    cdet = _get(usage, "completion_tokens_details") or _get(usage, "output_tokens_details")
    cached = _first(
        _get(pdet, "cached_tokens"),
        _get(usage, "prompt_cache_hit_tokens"),
        _get(usage, "cached_tokens"),
        _get(usage, "cache_read_input_tokens"),
    )
    reasoning = _first(_get(cdet, "reasoning_tokens"), _get(usage, "reasoning_tokens"))
    return _completed(prompt, completion, total, cached, reasoning)


_CANONICAL_KEYS = frozenset(USAGE_KEYS)


def _completed(
    prompt: int | None, completion: int | None, total: int | None, cached: int | None, reasoning: int | None
) -> dict[str, int | None] | None:
    """The canonical dict, the total or the completion derived where missing (``None``: no count)."""
    if prompt is None and completion is None and total is None:
        return None
    if total is None and prompt is not None and completion is not None:
        total = prompt + completion
    if completion is None and prompt is not None and total is not None and total >= prompt:
        completion = total - prompt  # e.g. embeddings: {prompt_tokens, total_tokens}
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total,
        "cached_tokens": cached,
        "reasoning_tokens": reasoning,
    }


def prompt_digest(messages: Any = None, prompt: str | None = None, tools: Any = None) -> str:
    """SHA-256 of the canonical JSON of a prompt (messages or plain prompt, plus tools).

    Identical prompts give identical digests across services and hosts; the digest reveals no text.
    """
    payload = {"messages": messages, "prompt": prompt, "tools": tools}
    blob = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()


_orjson: Any
try:  # optional accelerator (``llmtally[fast]``); the canonical text stays json's
    import orjson as _orjson
except ImportError:
    _orjson = None
# canonical: sorted keys; datetimes and dataclasses go to json's default=str like everything else
_SORTED = (
    _orjson.OPT_SORT_KEYS | _orjson.OPT_PASSTHROUGH_DATETIME | _orjson.OPT_PASSTHROUGH_DATACLASS
    if _orjson is not None
    else 0
)


def _float_differs(out: bytes) -> bool:
    """Whether orjson's ``out`` may hold a float json writes differently (``0.0000…``, ``<d>e-<d>``);
    ``bytes.find`` scans, as a regular expression costs more than the encoding itself."""
    if b"0.0000" in out:
        return True
    i = out.find(b"e-")
    while i > 0:
        if 48 <= out[i - 1] <= 57 and i + 2 < len(out) and 48 <= out[i + 2] <= 57:
            return True
        i = out.find(b"e-", i + 2)
    return False


def derived_prompt_fields(
    messages: Any = None, prompt: str | None = None, tools: Any = None, *, nonfinite: bool = False
) -> tuple[str, int | None]:
    """``prompt_sha256`` and ``prompt_chars`` of a ``full`` record that left them out, from its text
    as parsed from JSON: the values its writer would have written (:func:`prompt_digest`,
    :func:`prompt_chars`).  ``nonfinite``: the text held ``NaN`` or ``Infinity``, which orjson
    would write as ``null``.  orjson (where installed) writes the canonical text when it equals
    json's: always for messages of strings (no float in them), else unless a float could be written
    differently; integers beyond 64 bits and lone surrogates go to json."""
    chars = 0
    plain = True  # messages whose values are all strings (or null) hold no float
    if isinstance(messages, list):
        for m in messages:
            if type(m) is not dict:
                chars += content_chars(_get(m, "content"))
                plain = plain and (m is None or type(m) is str)
                continue
            content = m.get("content")
            if type(content) is str:
                chars += len(content)
                if len(m) == 2 and type(m.get("role")) is str:
                    continue
            elif content is not None:
                chars += content_chars(content)
                plain = False
                continue
            if plain:
                plain = all(v is None or type(v) is str for v in m.values())
    elif isinstance(prompt, str):
        chars = len(prompt)
    else:
        return prompt_digest(messages, prompt, tools), None
    if _orjson is not None and not nonfinite:
        try:
            m_json = b"null" if messages is None else _orjson.dumps(messages, option=_SORTED)
            t_json = b"null" if tools is None else _orjson.dumps(tools, option=_SORTED)
            p_json = _orjson.dumps(prompt)
        except (TypeError, ValueError):  # orjson.JSONEncodeError is a TypeError
            pass
        else:
            if (plain or not _float_differs(m_json)) and (tools is None or not _float_differs(t_json)):
                blob = b"".join([b'{"messages":', m_json, b',"prompt":', p_json, b',"tools":', t_json, b"}"])
                return hashlib.sha256(blob).hexdigest(), chars
    return prompt_digest(messages, prompt, tools), chars


def content_chars(content: Any) -> int:
    """Characters of one message's ``content``: a string, or the text of its parts (``{"text": ...}``
    or strings); anything else counts 0."""
    if isinstance(content, str):
        return len(content)
    if isinstance(content, Sequence):
        n = 0
        for part in content:
            if isinstance(part, Mapping):
                text = part.get("text")
                if isinstance(text, str):
                    n += len(text)
            elif isinstance(part, str):
                n += len(part)
        return n
    return 0


def prompt_chars(messages: Any = None, prompt: Any = None) -> int | None:
    """``prompt_chars`` of a record: the characters of its messages' contents (a list of messages),
    else of its ``prompt`` string; ``None`` without either."""
    if isinstance(messages, list):
        n = 0
        for m in messages:
            content = m.get("content") if type(m) is dict else _get(m, "content")
            n += len(content) if type(content) is str else content_chars(content)
        return n
    if isinstance(prompt, str):
        return len(prompt)
    return None
