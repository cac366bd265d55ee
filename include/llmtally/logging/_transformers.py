"""Log the exact token counts of ``transformers`` generation: the engine's own numbers.

``model.generate`` knows exactly how many prompt and completion token ids it processed, so these
helpers record them as ``usage`` (not an estimate).  :func:`generate_and_log` wraps a ``generate``
call; :class:`UsageStreamer` is a ``BaseStreamer`` for streaming generation (it can pass tokens on
to another streamer, e.g. ``TextIteratorStreamer``).  Text is decoded on the logger's writer thread,
not on the request path.  Importing this module imports ``transformers``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from transformers.generation.streamers import BaseStreamer

from ._default import get_default_logger
from ._logger import UsageLogger

__all__ = ["UsageStreamer", "completion_lengths", "generate_and_log"]


class _Decoded:
    """Token ids that become text when the record is written (``str()`` on the writer thread)."""

    __slots__ = ("ids", "skip_special", "tokenizer")

    def __init__(self, tokenizer: Any, ids: list[int], skip_special: bool) -> None:
        self.tokenizer, self.ids, self.skip_special = tokenizer, ids, skip_special

    def __str__(self) -> str:
        return str(self.tokenizer.decode(self.ids, skip_special_tokens=self.skip_special))


def _eos_ids(model: Any, eos_token_id: Any) -> set[int]:
    if eos_token_id is None:
        config = getattr(model, "generation_config", None)
        eos_token_id = getattr(config, "eos_token_id", None)
    if eos_token_id is None:
        return set()
    if isinstance(eos_token_id, int):
        return {eos_token_id}
    if hasattr(eos_token_id, "tolist"):
        eos_token_id = eos_token_id.tolist()
    return {int(i) for i in eos_token_id}


def completion_lengths(generated: Any, eos_ids: Iterable[int]) -> list[int]:
    """Completion tokens per row of ``generated`` (new token ids only), up to and including EOS.

    Rows that finished early are padded by ``generate``; the padding is not generated output.
    """
    eos = set(eos_ids)
    rows = generated.tolist() if hasattr(generated, "tolist") else [list(r) for r in generated]
    lengths = []
    for row in rows:
        n = len(row)
        if eos:
            for i, tok in enumerate(row):
                if tok in eos:
                    n = i + 1
                    break
        lengths.append(n)
    return lengths


def generate_and_log(
    model: Any,
    input_ids: Any = None,
    *,
    logger: UsageLogger | None = None,
    model_name: str | None = None,
    messages: Any = None,
    prompt: str | None = None,
    tokenizer: Any = None,
    tags: Mapping[str, Any] | None = None,
    estimate: Any = None,
    eos_token_id: Any = None,
    **generate_kwargs: Any,
) -> Any:
    """Call ``model.generate(input_ids, **generate_kwargs)`` and log each row's exact usage.

    Prompt tokens are the row's non-padding input ids (from ``attention_mask`` when given);
    completion tokens the new ids up to and including the first EOS.  ``messages`` / ``prompt`` are
    the request as the service received it (what the nightly recount needs); with a ``tokenizer``
    the completion text (and, when neither is given, the prompt text) is decoded on the writer
    thread.  ``model_name`` defaults to ``model.name_or_path``.  Errors are logged and re-raised.
    """
    log = logger or get_default_logger()
    name = model_name or getattr(model, "name_or_path", None) or type(model).__name__
    started, t0 = time.time(), time.perf_counter()
    if input_ids is None:
        input_ids = generate_kwargs.pop("input_ids")
    try:
        output = model.generate(input_ids, **generate_kwargs)
    except BaseException as exc:
        log.log(
            model=name, messages=messages, prompt=prompt, tags=tags, estimate=estimate, ts=started,
            latency_ms=(time.perf_counter() - t0) * 1000.0, status="error", error=type(exc).__name__,
            endpoint="generate",
        )  # fmt: skip
        raise
    latency = (time.perf_counter() - t0) * 1000.0
    sequences = getattr(output, "sequences", output)
    width = input_ids.shape[-1]
    mask = generate_kwargs.get("attention_mask")
    prompt_lengths = mask.sum(dim=-1).tolist() if mask is not None else [width] * input_ids.shape[0]
    new = sequences[:, width:]
    per_prompt = max(1, sequences.shape[0] // max(1, input_ids.shape[0]))  # num_return_sequences
    for row, n_completion in enumerate(completion_lengths(new, _eos_ids(model, eos_token_id))):
        src = row // per_prompt
        n_prompt = int(prompt_lengths[src])
        completion = None
        row_prompt = prompt
        if tokenizer is not None:
            completion = _Decoded(tokenizer, new[row, :n_completion].tolist(), True)
            if messages is None and prompt is None:
                row_prompt = _Decoded(tokenizer, input_ids[src, width - n_prompt :].tolist(), False)  # type: ignore[assignment]
        log.log(
            model=name, messages=messages, prompt=row_prompt, completion=completion,  # type: ignore[arg-type]
            usage={"prompt_tokens": n_prompt, "completion_tokens": n_completion}, estimate=estimate,
            tags=tags, ts=started, latency_ms=latency, endpoint="generate",
        )  # fmt: skip
    return output


class UsageStreamer(BaseStreamer):
    """A ``BaseStreamer`` that counts the token ids ``generate`` streams and logs them at the end.

    Pass it as ``generate(..., streamer=UsageStreamer(...))``; ``inner`` is another streamer to pass
    every call on to (so ``TextIteratorStreamer`` keeps working).  The first ``put`` is the prompt
    (batch size 1, as for every ``transformers`` streamer); later ones are generated ids.  If
    generation ends without ``end()`` (an exception), call :meth:`abandon` to log what was streamed.
    """

    def __init__(
        self,
        logger: UsageLogger | None = None,
        *,
        model_name: str | None = None,
        messages: Any = None,
        prompt: str | None = None,
        tokenizer: Any = None,
        inner: Any = None,
        tags: Mapping[str, Any] | None = None,
        estimate: Any = None,
    ) -> None:
        self.logger = logger
        self.model_name = model_name
        self.messages = messages
        self.prompt = prompt
        self.tokenizer = tokenizer
        self.inner = inner
        self.tags = tags
        self.estimate = estimate
        self.prompt_ids: list[int] | None = None
        self.completion_ids: list[int] = []
        self.started = time.time()
        self._t0 = time.perf_counter()
        self.first_token_ms: float | None = None
        self._done = False

    def put(self, value: Any) -> None:
        """Receive prompt ids (first call) or newly generated ids."""
        ids = value.tolist() if hasattr(value, "tolist") else list(value)
        while ids and isinstance(ids[0], list):  # [[...]] -> [...] (batch size 1)
            if len(ids) != 1:
                raise ValueError("UsageStreamer supports batch size 1, as transformers' streamers do")
            ids = ids[0]
        if self.prompt_ids is None:
            self.prompt_ids = [int(i) for i in ids]
        else:
            if self.first_token_ms is None:
                self.first_token_ms = (time.perf_counter() - self._t0) * 1000.0
            self.completion_ids.extend(int(i) for i in ids)
        if self.inner is not None:
            self.inner.put(value)

    def end(self) -> None:
        """Generation finished: log the usage, then end the inner streamer."""
        self._log("ok")
        if self.inner is not None:
            self.inner.end()

    def abandon(self, status: str = "abandoned") -> None:
        """Log what was streamed so far (e.g. after ``generate`` raised)."""
        self._log(status)

    def _log(self, status: str) -> None:
        if self._done:
            return
        self._done = True
        prompt: Any = self.prompt
        completion: Any = None
        if self.tokenizer is not None:
            completion = _Decoded(self.tokenizer, self.completion_ids, True)
            if self.messages is None and prompt is None and self.prompt_ids is not None:
                prompt = _Decoded(self.tokenizer, self.prompt_ids, False)
        usage = None
        if self.prompt_ids is not None:
            usage = {"prompt_tokens": len(self.prompt_ids), "completion_tokens": len(self.completion_ids)}
        (self.logger or get_default_logger()).log(
            model=self.model_name, messages=self.messages, prompt=prompt, completion=completion,
            usage=usage, estimate=self.estimate, tags=self.tags, ts=self.started,
            latency_ms=(time.perf_counter() - self._t0) * 1000.0, status=status, endpoint="generate",
            ttft_ms=round(self.first_token_ms, 3) if self.first_token_ms is not None else None,
        )  # fmt: skip
