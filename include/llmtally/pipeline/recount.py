"""The recount seam: exact prompt and completion tokens of every record that kept its text.

:func:`recount` groups records by model, asks ``counter_for_model`` (normally
:func:`llmtally.load_tokenizer`) once per model, and counts in large :meth:`TokenCounter.count_batch`
calls (the counter uses all cores).  Each result carries the fingerprint of the tokenizer that made
it.  What is counted:

* prompt: a chat (``messages`` with ``tools``, ``tool_choice``, ``template_kwargs``) as the server
  renders and bills it; a plain ``prompt`` with the special tokens a completions endpoint adds;
* completion: the generated (or, for an abandoned or timed-out stream, delivered) text, plus the
  stop token an open-model engine (vLLM, SGLang, TGI, transformers) generates and bills when a
  stop was generated (:func:`llmtally.pipeline.billing.stop_generated`: status ok and
  ``finish_reason`` ``stop`` or none; never after ``length``, an abort, an error or a timeout), as
  the counter's ``counts_stop_token`` says (OpenAI-accounted counters bill none).
  Every choice of an ``n > 1`` call (``choices``) is counted, each with its own stop token.
  A reply split into ``reasoning`` and/or ``tool_calls`` is counted as the model generated it: the
  chat template rebuilds the text (thinking markers, tool-call syntax; see
  :mod:`llmtally.tokens._completion`).  Where it cannot (an OpenAI-accounted counter, a template
  that does not show tool calls), the completion is not recounted; the prompt still is.
* several prompts or embedding inputs (``inputs``): each as a raw prompt, summed (token-id lists
  count their length); an embeddings call generates no completion (its usage says 0).

Records without full text (``text`` = ``hash`` / ``prefix:N``, legacy lines) are ``not_recountable``;
records whose model has no tokenizer are ``unknown_model`` (never guessed); a record whose chat
template or input fails is ``error``.  A tokenizer that is configured but cannot be loaded
(:class:`TokenizerLoadError`) fails the run: that is a deployment problem to fix, not data.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .._exceptions import InputError, TemplateError, UnknownModelError
from ..tokens._base import BatchItem, ReplyRenderer, TokenCounter
from ..tokens._engine import RecountEngine
from .billing import stop_generated
from .record import UsageRecord

__all__ = ["Recount", "RecountStatus", "recount"]

RecountStatus = Literal["ok", "unknown_model", "not_recountable", "error"]


@dataclass(frozen=True, slots=True)
class Recount:
    """The exact counts of one record (``None`` where that part could not be recounted)."""

    status: RecountStatus
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    fingerprint: str = ""

    def to_json(self) -> list[Any]:
        """Compact JSON form (for handing results between tasks)."""
        return [self.status, self.prompt_tokens, self.completion_tokens, self.fingerprint]

    @classmethod
    def from_json(cls, value: Sequence[Any]) -> Recount:
        """Inverse of :meth:`to_json`."""
        status, prompt, completion, fingerprint = value
        return cls(status, prompt, completion, fingerprint)


_ITEM_ERRORS = (TemplateError, InputError, ValueError, TypeError, KeyError)


def _prompt_item(rec: UsageRecord) -> BatchItem | None:
    if rec.messages is None:
        return None
    item: dict[str, Any] = {"messages": rec.messages, "add_generation_prompt": True}
    if rec.tools:
        item["tools"] = rec.tools
    if rec.tool_choice is not None:
        item["tool_choice"] = rec.tool_choice
    if rec.template_kwargs:
        item["template_kwargs"] = rec.template_kwargs
    return item


def _renderer(counter: TokenCounter) -> ReplyRenderer | None:
    """The counter that can rebuild a split reply with its chat template (Hugging Face ones)."""
    inner = counter.counter if isinstance(counter, RecountEngine) else counter
    return inner if isinstance(inner, ReplyRenderer) else None


def _reply_text(rec: UsageRecord, reply: Mapping[str, Any], renderer: ReplyRenderer | None) -> str | None:
    """A reply's generated text: its completion, or -- with ``reasoning`` or ``tool_calls`` -- the
    text the chat template shows the model wrote (``None`` when that cannot be rebuilt)."""
    text = reply.get("completion")
    reasoning, calls = reply.get("reasoning"), reply.get("tool_calls")
    if not reasoning and not calls:
        return text if isinstance(text, str) else None
    if renderer is None or rec.messages is None:
        return None
    try:
        return renderer.generated_text(
            rec.messages,
            content=text if isinstance(text, str) else None,
            reasoning=reasoning if isinstance(reasoning, str) else None,
            tool_calls=calls,
            tools=rec.tools,
            **(rec.template_kwargs or {}),
        )
    except _ITEM_ERRORS:
        return None


def _completions(rec: UsageRecord, renderer: ReplyRenderer | None) -> list[tuple[str, bool]] | None:
    """The completion texts to count (every choice of an ``n > 1`` call), each with whether its
    stop token was generated; ``None`` when a completion cannot be rebuilt exactly."""
    if rec.choices:
        out = []
        for c in rec.choices:
            text = _reply_text(rec, c, renderer)
            if text is None:
                return None
            out.append((text, stop_generated(rec, c.get("finish_reason"))))
        return out
    own = {"completion": rec.completion, "reasoning": rec.reasoning, "tool_calls": rec.tool_calls}
    text = _reply_text(rec, own, renderer)
    return None if text is None else [(text, stop_generated(rec))]


def _safe_batch(counter: TokenCounter, items: list[BatchItem]) -> list[int | None]:
    """``count_batch``; when one item spoils a batch, count one by one and mark the bad ones."""
    if not items:
        return []
    try:
        return list(counter.count_batch(items))
    except _ITEM_ERRORS:
        out: list[int | None] = []
        for item in items:
            try:
                out.append(counter.count_batch([item])[0])
            except _ITEM_ERRORS:
                out.append(None)
        return out


def _count_inputs(counter: TokenCounter, inputs: Sequence[Any]) -> int:
    """Several prompts: each as a raw prompt (special tokens added), token-id lists by length."""
    return sum(len(x) if isinstance(x, list) else counter.count(x, add_special_tokens=True) for x in inputs)


def _count_model(counter: TokenCounter, records: list[UsageRecord], batch_size: int) -> dict[str, Recount]:
    fp = counter.fingerprint
    stop = 1 if counter.counts_stop_token else 0
    renderer = _renderer(counter)
    out: dict[str, Recount] = {}
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        chats: list[tuple[int, BatchItem]] = []
        texts: list[tuple[int, str]] = []
        stops: dict[int, int] = {}
        for i, rec in enumerate(chunk):
            item = _prompt_item(rec)
            if item is not None:
                chats.append((i, item))
            parts = _completions(rec, renderer)
            if parts is not None:
                texts.extend((i, text) for text, _ in parts)
                stops[i] = stop * sum(generated for _, generated in parts)
        counted = _safe_batch(counter, [it for _, it in chats] + [t for _, t in texts])
        prompt: dict[int, int | None] = {i: counted[k] for k, (i, _) in enumerate(chats)}
        completion: dict[int, int | None] = {}
        for k, (i, _) in enumerate(texts):
            n = counted[len(chats) + k]
            prev = completion.get(i, 0)
            completion[i] = None if n is None or prev is None else prev + n
        for i, rec in enumerate(chunk):
            failed = (i in prompt and prompt[i] is None) or (i in completion and completion[i] is None)
            p = prompt.get(i)
            if rec.messages is None and (rec.prompt is not None or rec.inputs is not None):
                try:
                    p = 0 if rec.prompt is None else counter.count(rec.prompt, add_special_tokens=True)
                    if rec.inputs is not None:
                        p += _count_inputs(counter, rec.inputs)
                except _ITEM_ERRORS:
                    failed = True
            c = completion.get(i)
            if c is not None:
                c += stops.get(i, 0)
            if failed:
                out[rec.id] = Recount("error", None, None, fp)
            else:
                out[rec.id] = Recount("ok", p, c, fp)
    return out


def recount(
    records: Iterable[UsageRecord],
    counter_for_model: Callable[[str], TokenCounter],
    *,
    batch_size: int = 32768,
) -> dict[str, Recount]:
    """Exact counts per record id (see the module docstring for the rules).

    ``counter_for_model`` raises :class:`UnknownModelError` for a model without a tokenizer.
    """
    by_model: dict[str, list[UsageRecord]] = defaultdict(list)
    results: dict[str, Recount] = {}
    for rec in records:
        by_model[rec.model or ""].append(rec)
    for model in sorted(by_model):
        recs = by_model[model]
        counter: TokenCounter | None = None
        if model:
            try:
                counter = counter_for_model(model)
            except UnknownModelError:
                counter = None
        fp = counter.fingerprint if counter is not None else ""
        with_text = []
        for rec in recs:
            if not rec.has_prompt_text:
                results[rec.id] = Recount("not_recountable", None, None, fp)
            elif counter is None:
                results[rec.id] = Recount("unknown_model", None, None, "")
            else:
                with_text.append(rec)
        if counter is not None and with_text:
            results.update(_count_model(counter, with_text, batch_size))
    return results
