"""Recount engines: the same exact counts by different paths, picked per worker and tokenizer.

* ``tokenizers`` -- the counter as loaded: the ``tokenizers``/tiktoken library on all cores, behind
  the segment cache (pieces between added tokens counted once).
* ``cached`` -- segment cache, then the pre-token cache (``_pretoken``); misses merged by the
  library's own BPE model on the CPU.  The cache persists under the cache dir.
* ``gpu`` -- as ``cached``, but misses are merged by torch (``_gpu_bpe``) on ``cpu`` or ``cuda``.
* ``fast`` -- kitoken (``tokenizer.json``) or bpe-openai (OpenAI encodings) on all cores, behind the
  segment cache; per tokenizer only after its self-check at load (``_kitoken``), else ``tokenizers``.
* ``auto`` -- measure the available paths once per worker and tokenizer (on a built-in sample),
  remember the fastest in ``engine-choice.json`` under the cache dir, and use it.

An engine never fails a model: where ``cached`` or ``gpu`` cannot count a tokenizer exactly (pieces
between added tokens that depend on their context, e.g. Llama's first-only prefix space; ``gpu``
needs byte-level BPE, so not SentencePiece-style Llama 2 / Mistral / Gemma), or where its counts on
a built-in sample differ from the library's at load (the self-check), that model is counted by
``tokenizers``.  The engine says so: :attr:`RecountEngine.fallback` (the reason), a warning in the
log, and ``summary()`` (the task log line).

``[recount]`` in llmtally.toml sets ``engine``, ``device`` and ``cache_dir``; arguments win.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .._config import load_config
from .._exceptions import ConfigError, TokenizerLoadError
from ._base import BatchItem, TokenCounter
from ._hf import HFCounter
from ._openai import TiktokenCounter
from ._pretoken import HFPretokens, PretokenCache, TiktokenPretokens, default_cache_dir
from ._registry import load_tokenizer

__all__ = ["DEFAULT_ENGINE", "DEVICES", "ENGINES", "RecountEngine", "load_engine", "resolve_device"]

ENGINES = ("tokenizers", "cached", "gpu", "fast", "auto")
DEVICES = ("cpu", "cuda", "auto")
DEFAULT_ENGINE = "fast"  # fastest exact path measured on CPU workers (BENCHMARKS.md, issue 12)
DEFAULT_DEVICE = "auto"

logger = logging.getLogger("llmtally.tokens")
_choices: dict[str, str] = {}
_choice_lock = threading.Lock()


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu`` (torch imported only here)."""
    if device not in DEVICES:
        raise ConfigError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
    if device != "auto":
        return device
    if not any(Path(p).exists() for p in ("/dev/nvidiactl", "/dev/dxg")):
        return "cpu"  # no NVIDIA driver: no CUDA, and no need to import torch to know it
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


class RecountEngine:
    """A :class:`TokenCounter` that says which path counted and at what throughput."""

    def __init__(
        self,
        counter: TokenCounter,
        *,
        engine: str,
        device: str,
        cache: PretokenCache | None = None,
        requested_engine: str | None = None,
        fallback: str | None = None,
    ) -> None:
        self._counter = counter
        self.engine = engine
        self.device = device
        self.cache = cache
        self.requested_engine = requested_engine or engine
        """The engine asked for (``auto`` resolved); differs from :attr:`engine` after a fallback."""
        self.fallback = fallback
        """Why the requested engine could not count this tokenizer exactly, or ``None``."""
        self.records = 0
        self.bytes = 0
        self.seconds = 0.0
        if cache is not None and cache.path is not None:
            atexit.register(self.save)

    def __repr__(self) -> str:
        return f"RecountEngine({self._counter!r}, engine={self.engine!r}, device={self.device!r})"

    @property
    def name(self) -> str:
        """The tokenizer source."""
        return self._counter.name

    @property
    def fingerprint(self) -> str:
        """The tokenizer's fingerprint (every path counts the same tokens)."""
        return self._counter.fingerprint

    @property
    def counts_stop_token(self) -> bool:
        """Whether the serving engine bills a generated stop token (the wrapped counter's rule)."""
        return bool(getattr(self._counter, "counts_stop_token", True))

    @property
    def counter(self) -> TokenCounter:
        """The counter that does the work."""
        return self._counter

    def _timed(self, fn: Callable[[], Any], records: int) -> Any:
        t0 = time.perf_counter()
        result = fn()
        self.seconds += time.perf_counter() - t0
        self.records += records
        return result

    def count(self, text: str, *, add_special_tokens: bool = False) -> int:
        """Tokens of ``text`` (``add_special_tokens``: also what the tokenizer adds, e.g. BOS)."""
        self.bytes += len(text.encode("utf-8", "surrogatepass")) if isinstance(text, str) else 0
        return int(self._timed(lambda: self._counter.count(text, add_special_tokens=add_special_tokens), 1))

    def count_messages(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: Any = None,
        add_generation_prompt: bool = True,
        **template_kwargs: Any,
    ) -> int:
        """Prompt tokens the server bills."""
        return int(
            self._timed(
                lambda: self._counter.count_messages(
                    messages, tools, tool_choice, add_generation_prompt, **template_kwargs
                ),
                1,
            )
        )

    def count_batch(self, items: Sequence[BatchItem]) -> list[int]:
        """Counts of texts and chats, in order."""
        self.bytes += sum(_item_bytes(it) for it in items)
        counts: list[int] = self._timed(lambda: self._counter.count_batch(items), len(items))
        logger.debug("%s", self.summary())
        return counts

    def describe(self) -> dict[str, str]:
        """``engine`` and ``device`` that count, and after a fallback ``requested_engine`` and
        ``fallback`` (the reason), e.g. for a JSON summary."""
        out = {"engine": self.engine, "device": self.device}
        if self.fallback is not None:
            out["requested_engine"] = self.requested_engine
            out["fallback"] = self.fallback
        return out

    def summary(self) -> str:
        """``engine=cached device=cpu: N records, X MB in S s = R MB/s, Q records/s (cache …)``,
        ending ``; requested engine=gpu, fell back: <reason>`` after a fallback."""
        s = max(self.seconds, 1e-9)
        line = (
            f"engine={self.engine} device={self.device}: {self.records} records, "
            f"{self.bytes / 1e6:.2f} MB in {self.seconds:.2f} s = {self.bytes / 1e6 / s:.2f} MB/s, "
            f"{self.records / s:,.0f} records/s"
        )
        if self.cache is not None:
            seen = self.cache.hits + self.cache.misses
            line += (
                f" (pre-token cache {len(self.cache.counts):,} entries, "
                f"{self.cache.misses:,} misses of {seen:,})"
            )
        if self.fallback is not None:
            line += f"; requested engine={self.requested_engine}, fell back: {self.fallback}"
        return line

    def save(self) -> None:
        """Persist the pre-token cache (when it changed)."""
        if self.cache is not None:
            try:
                self.cache.save()
            except OSError as exc:
                logger.warning("cannot save the pre-token cache %s: %s", self.cache.path, exc)

    def close(self) -> None:
        """Save the cache and log the throughput line."""
        self.save()
        if self.records:
            logger.info("recount %s %s", self.name, self.summary())


def _item_bytes(item: BatchItem) -> int:
    """Raw text bytes of an item (message contents; the template's own text is not counted)."""
    if isinstance(item, str):
        return len(item.encode("utf-8", "surrogatepass"))
    total = 0
    for msg in item.get("messages") or []:
        content = msg.get("content") if isinstance(msg, Mapping) else None
        if isinstance(content, str):
            total += len(content.encode("utf-8", "surrogatepass"))
    return total


def _build(
    base: TokenCounter, engine: str, device: str, cache_dir: Path | None, *, fall_back: bool = True
) -> RecountEngine:
    """``engine`` over ``base``; where it cannot count ``base`` exactly, ``tokenizers`` with the
    reason in ``fallback`` (``fall_back=False``: raise :class:`TokenizerLoadError` instead)."""
    if engine == "tokenizers":
        return RecountEngine(base, engine=engine, device="cpu")
    if engine == "fast":
        from ._kitoken import fast_counter

        counter, why = fast_counter(base)
        if why is None:
            return RecountEngine(counter, engine=engine, device="cpu")
        if not fall_back:
            raise TokenizerLoadError(why)
        logger.warning("recount %s: engine fast falls back to engine tokenizers: %s", base.name, why)
        return RecountEngine(base, engine="tokenizers", device="cpu", requested_engine=engine, fallback=why)
    if engine == "gpu" and device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("device cuda: torch sees no CUDA GPU on this worker (use --device auto)")
    try:
        eng = _build_cached(base, engine, device, cache_dir)
        _self_check(base, eng)
    except TokenizerLoadError as exc:
        if not fall_back:
            raise
        reason = str(exc)
        logger.warning(
            "recount %s: engine %s cannot count it exactly (%s); counting it with engine tokenizers",
            base.name,
            engine,
            reason,
        )
        return RecountEngine(
            base, engine="tokenizers", device="cpu", requested_engine=engine, fallback=reason
        )
    return eng


def _self_check_sample(base: TokenCounter) -> list[str]:
    """A few texts of every kind (the calibration sample, whitespace, bytes, added tokens typed)."""
    texts = _calibration_sample()[::50]
    texts += [" leading", "trailing  ", "   runs   of\n\n\nspace\t\t", "\n", "😀 龘 \x00 ÿ", "你好，世界"]
    if isinstance(base, HFCounter):
        added = [t.content for t in base.backend.get_added_tokens_decoder().values()][:8]
        texts += [f"{a}x {a} y{a}" for a in added] + ["".join(added) + " tail"]
    return texts


def _self_check(base: TokenCounter, eng: RecountEngine) -> None:
    """Raise :class:`TokenizerLoadError` when ``eng`` and ``base`` count the sample differently."""
    sample = _self_check_sample(base)
    want = base.count_batch(sample)
    got = eng.counter.count_batch(sample)
    wrong = sum(a != b for a, b in zip(want, got, strict=True))
    if wrong:
        raise TokenizerLoadError(
            f"self-check: engine {eng.engine} counted {wrong} of {len(sample)} sample texts "
            "differently from tokenizers"
        )


def _build_cached(base: TokenCounter, engine: str, device: str, cache_dir: Path | None) -> RecountEngine:
    cache = PretokenCache(base.fingerprint, cache_dir)
    if isinstance(base, HFCounter):
        if not base.splits_on_added_tokens:
            raise TokenizerLoadError(
                "pieces between added tokens are not counted independently by this tokenizer "
                "(context-dependent added tokens or prefix space)"
            )
        bpe_hf: Callable[[list[str]], list[int]] | None = None
        if engine == "gpu":
            from ._gpu_bpe import TorchBPE

            bpe_hf = TorchBPE.from_hf_spec(json.loads(base.backend.to_str()), device).lengths_byte_level
        pre = HFPretokens(base.backend, cache, bpe_hf)
        return RecountEngine(base.with_piece_counter(pre.lengths), engine=engine, device=device, cache=cache)
    if isinstance(base, TiktokenCounter):
        bpe_tt: Callable[[list[bytes]], list[int]] | None = None
        if engine == "gpu":
            from ._gpu_bpe import TorchBPE

            bpe_tt = TorchBPE.from_tiktoken(base.encoding, device).lengths
        pre_tt = TiktokenPretokens(base.encoding, cache, bpe_tt)
        return RecountEngine(
            base.with_text_counter(pre_tt.lengths), engine=engine, device=device, cache=cache
        )
    raise TokenizerLoadError(f"engine {engine} supports Hugging Face and tiktoken counters only")


def _calibration_sample() -> list[str]:
    """~400 KB of mixed Chinese/English/code text; half the words repeat (a Zipf-ish day)."""
    import random

    rng = random.Random(7)
    zh = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能"
    en = ["token", "count", "order", "revenue", "report", "model", "price", "ship", "value", "error"]
    out = []
    for i in range(1500):
        if i % 3 == 0:
            words = ["".join(rng.choice(zh) for _ in range(rng.randint(2, 12))) for _ in range(30)]
            out.append("，".join(words) + "。")
        elif i % 3 == 1:
            out.append(" ".join(rng.choice(en) + str(rng.randint(0, 99)) for _ in range(60)))
        else:
            out.append(f"def f_{i}(x):\n    return x.get('{rng.choice(en)}', {rng.randint(0, 10**6)})\n" * 3)
    return out


def _measure(base: TokenCounter, engine: str, device: str) -> float:
    """MB/s of a fresh engine over the sample, counted twice (cold, then warm)."""
    sample = _calibration_sample()
    mb = 2 * sum(len(s.encode()) for s in sample) / 1e6
    eng = _build(base, engine, device, None, fall_back=False)
    t0 = time.perf_counter()
    eng.count_batch(sample)
    eng.count_batch(sample)
    return mb / (time.perf_counter() - t0)


def _choose(base: TokenCounter, device: str, cache_dir: Path) -> str:
    """The fastest engine for this worker and tokenizer, measured once and remembered on disk."""
    key = f"{base.fingerprint}|{socket.gethostname()}|{device}"
    with _choice_lock:
        if key in _choices:
            return _choices[key]
        path = cache_dir / "engine-choice.json"
        try:
            known = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            known = {}
        entry = known.get(key) if isinstance(known, dict) else None
        if isinstance(entry, dict) and entry.get("engine") in ENGINES:
            _choices[key] = str(entry["engine"])
            return _choices[key]
        speeds: dict[str, float] = {}
        # on the CPU, "gpu" is "cached" with slower misses (same cache, torch merges): never faster
        candidates = ("tokenizers", "cached", "fast") + (("gpu",) if device == "cuda" else ())
        for engine in candidates:
            try:
                speeds[engine] = _measure(base, engine, device)
            except (ImportError, TokenizerLoadError) as exc:
                logger.info("recount engine %s unavailable for %s: %s", engine, base.name, exc)
        best = max(speeds, key=lambda k: speeds[k])
        logger.info(
            "recount engine for %s on %s: %s (measured %s)",
            base.name,
            device,
            best,
            ", ".join(f"{k} {v:.2f} MB/s" for k, v in speeds.items()),
        )
        known = known if isinstance(known, dict) else {}
        known[key] = {"engine": best, "mb_per_s": speeds, "measured_at": time.time()}
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(known, indent=1), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            logger.warning("cannot remember the engine choice in %s: %s", path, exc)
        _choices[key] = best
        return best


def load_engine(
    model: str | TokenCounter,
    engine: str | None = None,
    device: str | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
) -> RecountEngine:
    """A counter for ``model`` on the requested path (``None``: ``[recount]`` config, then default).

    Every path gives the same counts; ``auto`` picks the fastest on this worker.  A path that cannot
    count this tokenizer exactly hands it to ``tokenizers`` (see :attr:`RecountEngine.fallback`).
    Torch is imported only for ``engine="gpu"``, ``"auto"`` or ``device="auto"`` with ``gpu``.
    """
    section = load_config().section("recount")
    chosen = bool(engine or section.get("engine"))
    engine = engine or str(section.get("engine", DEFAULT_ENGINE))
    device = device or str(section.get("device", DEFAULT_DEVICE))
    if engine not in ENGINES:
        raise ConfigError(f"recount engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if device not in DEVICES:
        raise ConfigError(f"recount device must be one of {', '.join(DEVICES)}, not {device!r}")
    directory = Path(cache_dir or section.get("cache_dir") or default_cache_dir()).expanduser()
    base = load_tokenizer(model) if isinstance(model, str) else model
    if isinstance(base, RecountEngine):
        base = base.counter
    if engine == "fast" and not chosen:
        from ._kitoken import installed

        if not installed(base):  # the default without the fastcount extra: not a fallback
            logger.info("recount %s: engine tokenizers ('llmtally[fastcount]' brings fast)", base.name)
            engine = "tokenizers"
    if engine == "tokenizers":
        if device == "cuda":
            raise ConfigError("engine tokenizers runs on the CPU; use --engine gpu for --device cuda")
        return _build(base, engine, "cpu", None)
    if engine in ("cached", "fast"):
        if device == "cuda":
            raise ConfigError(f"engine {engine} runs on the CPU; use --engine gpu for --device cuda")
        return _build(base, engine, "cpu", directory)
    resolved = resolve_device(device)
    if engine == "auto":
        engine = _choose(base, resolved, directory)
    eng = _build(base, engine, resolved if engine == "gpu" else "cpu", directory)
    logger.info("recount %s with engine=%s device=%s", base.name, eng.engine, eng.device)
    return eng
