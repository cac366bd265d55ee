"""The day's cardinality guard and loss episodes: what :func:`llmtally.pipeline.reconcile.finish`
applies once a day's parts are merged (both need the whole day)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from ..store._rows import KEY_COLUMNS, SUM_COLUMNS, FoldEntry, LossEntry

__all__ = ["LOSS_GAP", "MAX_DISTINCT", "OTHER", "add_cost", "check_limits", "fold", "merge_losses"]

_KEY = KEY_COLUMNS[1:]  # a usage_hourly row's key after its day

LOSS_GAP = timedelta(minutes=5)
"""Loss markers of one service, host and reason this close in time are one episode (one row)."""


def merge_losses(entries: Iterable[LossEntry], gap: timedelta = LOSS_GAP) -> list[LossEntry]:
    """One :class:`LossEntry` per service, host, reason and episode: markers whose windows overlap or
    lie within ``gap`` of each other are summed (a logger dropping under a long overload writes a
    marker per batch; one row says it).  Sorted by service, host, start and reason."""
    out: list[LossEntry] = []
    for e in sorted(entries, key=lambda e: (e.service, e.host, e.reason, e.first_ts, e.last_ts)):
        prev = out[-1] if out else None
        if (
            prev is not None
            and (prev.service, prev.host, prev.reason, prev.day) == (e.service, e.host, e.reason, e.day)
            and e.first_ts <= prev.last_ts + gap
        ):
            out[-1] = LossEntry(
                prev.day, prev.service, prev.host, prev.records + e.records, prev.first_ts,
                max(prev.last_ts, e.last_ts), prev.reason,
            )  # fmt: skip
        else:
            out.append(e)
    return sorted(out, key=lambda e: (e.service, e.host, e.first_ts, e.reason))


OTHER = "(other)"
"""The value users or tenants over the cardinality limit are folded into."""
MAX_DISTINCT: Mapping[str, int] = {"user_id": 100_000, "tenant": 100_000}
"""Default cardinality limits: distinct values per service and day kept in ``usage_hourly``."""
_DIM_AT = {"user_id": _KEY.index("user_id"), "tenant": _KEY.index("tenant")}
_SERVICE_AT = _KEY.index("service")
_P_AT, _C_AT = SUM_COLUMNS.index("prompt_tokens"), SUM_COLUMNS.index("completion_tokens")


def check_limits(limits: Mapping[str, int]) -> Mapping[str, int]:
    """``limits`` if every dimension it names can be folded, else :class:`ValueError`."""
    if set(limits) - set(_DIM_AT):
        raise ValueError(
            f"cardinality limits apply to {sorted(_DIM_AT)}, not {sorted(set(limits) - set(_DIM_AT))}"
        )
    return limits


def fold(
    day: date,
    hourly: dict[tuple[Any, ...], list[int]],
    costs: dict[tuple[Any, ...], tuple[Decimal, str]],
    limits: Mapping[str, int],
) -> list[FoldEntry]:
    """Fold, per service, the values of each limited dimension beyond its limit into ``OTHER``.

    The values that billed the most tokens stay (ties: by name), so chargeback keeps its big
    spenders; ``''`` (not given) is never folded nor counted; sums and costs of folded rows merge
    exactly.  Changes ``hourly`` and ``costs``.
    """
    entries: list[FoldEntry] = []
    for dim, limit in sorted(limits.items()):
        at = _DIM_AT[dim]
        spent: dict[str, dict[str, list[int]]] = {}
        for key, acc in hourly.items():
            per = spent.setdefault(key[_SERVICE_AT], {}).setdefault(key[at], [0, 0])
            per[0] += acc[_P_AT] + acc[_C_AT]
            per[1] += acc[0]
        folded: dict[str, set[str]] = {}
        for service, values in sorted(spent.items()):
            values.pop("", None)  # "not given" is never folded
            if len(values) <= limit:
                continue
            ranked = sorted(values, key=lambda v: (-values[v][0], v))
            tail = ranked[limit:]
            folded[service] = set(tail)
            entries.append(
                FoldEntry(
                    day, service, dim, limit, len(values), len(tail),
                    requests=sum(values[v][1] for v in tail), tokens=sum(values[v][0] for v in tail),
                )
            )  # fmt: skip
        if not folded:
            continue
        for key in [k for k in hourly if k[at] in folded.get(k[_SERVICE_AT], ())]:
            acc = hourly.pop(key)
            new = (*key[:at], OTHER, *key[at + 1 :])
            into = hourly.setdefault(new, [0] * len(acc))
            for i, n in enumerate(acc):
                into[i] += n
            cost = costs.pop(key, None)
            if cost is not None:
                add_cost(costs, new, *cost)
    return entries


def add_cost(costs: dict[tuple[Any, ...], tuple[Decimal, str]], key: tuple[Any, ...], amount: Decimal,
             currency: str) -> None:  # fmt: skip
    """Add ``amount`` to the cost of ``key`` (one currency per key: a model's)."""
    prev = costs.get(key)
    costs[key] = (amount + (prev[0] if prev else 0), currency)
