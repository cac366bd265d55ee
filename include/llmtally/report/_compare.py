"""Did the model upgrade help?  Compare a feature's usage on two models (or before/after a switch).

From the aggregates: tokens per request, completion/prompt ratio and cost per request.  Tokenizer
efficiency (tokens per 1,000 characters) needs the same texts counted by both models' tokenizers:
:func:`tokenizer_efficiency` does that for texts the caller provides (``llmtally compare --texts``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from ._data import DailyUsage

__all__ = ["ModelStats", "detect_model_changes", "model_stats", "tokenizer_efficiency"]


@dataclass(frozen=True)
class ModelStats:
    """A feature's usage of one model over some days."""

    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    tokens_per_request: float | None
    completion_prompt_ratio: float | None
    cost_per_request: Mapping[str, float] = field(default_factory=dict)
    days: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form."""
        return asdict(self)


def model_stats(rows: Iterable[DailyUsage], model: str) -> ModelStats:
    """Summed usage of ``model`` in ``rows`` (filter rows by feature and days first)."""
    reqs = prompt = completion = 0
    cost: dict[str, Decimal] = defaultdict(Decimal)
    priced: dict[str, int] = defaultdict(int)
    days: set[date] = set()
    for r in rows:
        if r.model != model:
            continue
        days.add(r.day)
        reqs += r.requests
        prompt += r.prompt_tokens
        completion += r.completion_tokens
        if r.currency and r.cost is not None:
            cost[r.currency] += r.cost
            priced[r.currency] += r.requests - r.unpriced_requests
    return ModelStats(
        model=model,
        requests=reqs,
        prompt_tokens=prompt,
        completion_tokens=completion,
        tokens_per_request=round((prompt + completion) / reqs, 2) if reqs else None,
        completion_prompt_ratio=round(completion / prompt, 4) if prompt else None,
        cost_per_request={c: float(round(cost[c] / priced[c], 8)) for c in sorted(cost) if priced[c]},
        days=len(days),
    )


def _dominant(rows: Sequence[DailyUsage]) -> tuple[str, float] | None:
    reqs: dict[str, int] = defaultdict(int)
    for r in rows:
        reqs[r.model] += r.requests
    total = sum(reqs.values())
    if not total:
        return None
    model = max(sorted(reqs), key=lambda m: reqs[m])
    return model, reqs[model] / total


def detect_model_changes(
    daily: Iterable[DailyUsage], day: date, *, before_days: int = 7, min_share: float = 0.5
) -> list[dict[str, Any]]:
    """Features whose main model on ``day`` differs from their main model in the week before.

    Each entry: ``{feature, before: ModelStats, after: ModelStats}`` (``before`` over the
    ``before_days`` days before ``day``, ``after`` on ``day``); a model is "main" with at least
    ``min_share`` of the feature's requests.
    """
    lo = day - timedelta(days=before_days)
    before: dict[str, list[DailyUsage]] = defaultdict(list)
    after: dict[str, list[DailyUsage]] = defaultdict(list)
    for r in daily:
        if r.day == day:
            after[r.feature].append(r)
        elif lo <= r.day < day:
            before[r.feature].append(r)
    out = []
    for feature in sorted(after):
        now, then = _dominant(after[feature]), _dominant(before.get(feature, []))
        if now is None or then is None or now[0] == then[0] or min(now[1], then[1]) < min_share:
            continue
        out.append(
            {
                "feature": feature,
                "before": model_stats(before[feature], then[0]).as_dict(),
                "after": model_stats(after[feature], now[0]).as_dict(),
            }
        )
    return out


def tokenizer_efficiency(texts: Sequence[Any], models: Sequence[str]) -> dict[str, dict[str, float | int]]:
    """Tokens per 1,000 characters of the same ``texts`` under each model's tokenizer.

    A text is a string, or an OpenAI-style message list (counted with the chat template; its
    characters are those of the message contents).
    """
    from ..tokens import load_tokenizer

    chars = 0
    for t in texts:
        chars += len(t) if isinstance(t, str) else sum(len(str(m.get("content") or "")) for m in t)
    out: dict[str, dict[str, float | int]] = {}
    for model in models:
        counter = load_tokenizer(model)
        tokens = sum(counter.count(t) if isinstance(t, str) else counter.count_messages(t) for t in texts)
        out[model] = {
            "texts": len(texts),
            "chars": chars,
            "tokens": tokens,
            "tokens_per_1k_chars": round(1000.0 * tokens / chars, 2) if chars else 0.0,
        }
    return out
