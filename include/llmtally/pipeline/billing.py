"""The billing rule: what one call bills, by how it ended.  Written once, here; the README quotes it.

Providers bill what their servers processed: OpenAI, DashScope and DeepSeek do not bill a request
they rejected (HTTP 429, 4xx) or failed (5xx), and a stream the client abandoned is billed for the
prompt and the tokens generated until then.  So each record's *outcome* (its ``status``) decides
what it bills, and each billed number says where it came from (:data:`~llmtally.store.SOURCES`):

==============  ===================================================  ===================================
outcome         prompt and completion billed                         stop token in the completion recount
==============  ===================================================  ===================================
``ok``          reported usage, else the exact recount, else the     when a stop was generated (any
                service's estimate, else 0 (``missing``)             ``finish_reason`` but ``length``,
                                                                     an abort, a filter, an error)
``abandoned``   as ``ok``: the prompt, and the completion tokens     never (the client stopped reading)
                actually delivered
``timeout``     reported usage, else the recount (or estimate) of    never
                what was sent and delivered, flagged *uncertain*
``error``       reported usage if the server sent any (it billed),   never
                else nothing (``not_billed``); still a request
``other``       any other status: billed as ``ok`` (never dropped)   as ``ok``
==============  ===================================================  ===================================

A record without ``status`` (older loggers, legacy lines) is ``ok``; ``http_status`` >= 400 with
no status or an unknown one is ``error``.  Failed calls always count as requests, per outcome and HTTP status.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .record import UsageRecord

if TYPE_CHECKING:
    from ..pricing import Cost, PriceBook
    from .recount import Recount

__all__ = ["Billed", "billed", "outcome", "stop_generated"]

_KNOWN = frozenset({"ok", "error", "timeout", "abandoned"})
_ALIASES = {"success": "ok", "failed": "error", "failure": "error", "rate_limited": "error",
            "cancelled": "abandoned", "canceled": "abandoned", "aborted": "abandoned",
            "timed_out": "timeout", "deadline_exceeded": "timeout"}  # fmt: skip
# finish reasons after which no stop token was generated (anything else: a stop was)
_NOT_STOPPED = frozenset({"length", "max_tokens", "abort", "aborted", "cancelled", "canceled",
                          "content_filter", "error", "timeout"})  # fmt: skip


def outcome(status: str | None, http_status: int | None = None) -> str:
    """The billing outcome of a record: ``ok`` | ``error`` | ``timeout`` | ``abandoned`` | ``other``.

    An unknown status with an HTTP status >= 400 is an ``error``; any other unknown one ``other``.
    """
    if status in _KNOWN:  # what the logger writes: the fast path
        return status
    failed = http_status is not None and http_status >= 400
    if not status:
        return "error" if failed else "ok"
    s = status.strip().lower()
    s = _ALIASES.get(s, s)
    if s in _KNOWN:
        return s
    return "error" if failed else "other"


_OWN = object()


def stop_generated(rec: UsageRecord, finish_reason: Any = _OWN) -> bool:
    """Whether the engine generated (and billed) a stop token: a call that ended normally, not by
    the length limit, an abort, a filter, an error or a timeout.  ``finish_reason`` is one choice's
    (default: the record's own; ``None``, not reported, counts as a normal end)."""
    if outcome(rec.status, rec.http_status) not in ("ok", "other"):
        return False
    reason = rec.finish_reason if finish_reason is _OWN else finish_reason
    return not isinstance(reason, str) or reason.strip().lower() not in _NOT_STOPPED


@dataclass(frozen=True, slots=True)
class Billed:
    """A record's billed numbers, where each came from, and its cost (``None``: no known price).

    ``uncertain`` marks numbers the provider may bill differently (a timeout billed from the recount).
    """

    prompt_tokens: int
    completion_tokens: int
    prompt_source: str
    completion_source: str
    cost: Cost | None = None
    outcome: str = "ok"
    uncertain: bool = False


def _pick(reported: int | None, recounted: int | None, estimated: int | None) -> tuple[int, str]:
    if reported is not None:
        return reported, "reported"
    if recounted is not None:
        return recounted, "recount"
    if estimated is not None:
        return estimated, "estimate"
    return 0, "missing"


def billed(rec: UsageRecord, rc: Recount | None = None, prices: PriceBook | None = None) -> Billed:
    """Billed numbers of one record given its recount (see the module docstring for the rule)."""
    rc_prompt = rc.prompt_tokens if rc is not None else None
    rc_completion = rc.completion_tokens if rc is not None else None
    out = outcome(rec.status, rec.http_status)
    reported = rec.reported_prompt_tokens is not None or rec.reported_completion_tokens is not None
    if out == "error" and not reported:
        p, ps, c, cs = 0, "not_billed", 0, "not_billed"
    else:
        p, ps = _pick(rec.reported_prompt_tokens, rc_prompt, rec.estimated_prompt_tokens)
        c, cs = _pick(rec.reported_completion_tokens, rc_completion, rec.estimated_completion_tokens)
    cost = None
    if prices is not None:  # a failed call costs 0 in the model's currency (None: no known price)
        cost = prices.cost(rec.model, rec.ts, p, c, rec.cached_tokens, rec.reasoning_tokens)
    uncertain = out == "timeout" and (ps != "reported" or cs != "reported")
    return Billed(p, c, ps, cs, cost, out, uncertain)
