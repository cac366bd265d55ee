"""The ``fast`` recount engine: kitoken for ``tokenizer.json``, bpe-openai for OpenAI encodings.

Both are Rust libraries that load the same vocabularies as ``tokenizers`` and tiktoken and count
several times faster per core (BENCHMARKS.md, issue 12).  They plug into the counters' existing
seams, so everything around the encoder stays llmtally's own:

* Hugging Face: kitoken counts the pieces *between* added tokens (the split and the added tokens
  stay ``_segments``'), loaded from the tokenizer as the counter holds it (``backend.to_str()``,
  i.e. after any transformers-style adjustment of ``tokenizer.json``); pieces are spread over
  threads (kitoken releases the GIL).  kitoken never silently drops text: its "skip unknown"
  fallback is switched off, and a batch it cannot encode is counted by ``tokenizers``.
* OpenAI: bpe-openai's ``count`` (no token list built) for ``cl100k_base`` and ``o200k_base``.

Neither is used for a tokenizer before a self-check at load gives exactly the library's counts on a
fixed probe set (every added token inside text, typed special-token look-alikes, whitespace runs,
contractions, digits, scripts, emoji, combining marks, control characters, lone surrogates, long
inputs and a few thousand seeded random strings); a tokenizer that fails it, or a missing package,
is counted by ``tokenizers``/tiktoken and the log says why.  Results are kept per fingerprint.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import logging
import os
import random
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .._exceptions import InputError
from ._base import TokenCounter
from ._hf import HFCounter
from ._openai import TiktokenCounter

__all__ = [
    "BpeOpenAITexts",
    "KitokenPieces",
    "bpe_openai_bindings",
    "fast_counter",
    "installed",
    "probe_texts",
]

logger = logging.getLogger("llmtally.tokens")

_THREAD_MIN_CHARS = 64_000  # below this a batch is counted on the calling thread
_checked: dict[str, tuple[Callable[[list[str]], list[int]] | None, str]] = {}
_lock = threading.Lock()


def _clean(text: str) -> str:
    """Lone surrogates as U+FFFD, as HFCounter hands them to ``tokenizers``."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _tiktoken_clean(text: str) -> str:
    """Lone surrogates as U+FFFD, as tiktoken's ``encode_ordinary`` replaces them."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class KitokenPieces:
    """Token counts of texts (pieces without added tokens) by kitoken, on all cores."""

    def __init__(self, kitoken: Any, fallback: Callable[[list[str]], list[int]], threads: int | None = None):
        self._kt = kitoken
        self._fallback = fallback
        self._threads = threads if threads is not None else _cpus()
        self._pool: ThreadPoolExecutor | None = None
        self._pid = os.getpid()
        self._pool_lock = threading.Lock()

    def _encode(self, texts: list[str]) -> list[int]:
        try:
            return [len(ids) for ids in self._kt.encode_all(texts, False)]
        except UnicodeEncodeError:
            cleaned = [_clean(t) for t in texts]
            if cleaned == texts:
                raise InputError("kitoken refused the input") from None
            return self._encode(cleaned)
        except Exception:  # a piece kitoken cannot encode: the library decides, as it always does
            return self._fallback(texts)

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="llmtally-kitoken")
            return self._pool

    def lengths(self, texts: list[str]) -> list[int]:
        """Counts of ``texts``, in order."""
        if not texts:
            return []
        total = sum(map(len, texts))
        parts = min(self._threads, len(texts), total // _THREAD_MIN_CHARS + 1)
        if parts < 2:
            return self._encode(texts)
        # contiguous chunks of about equal characters, so the threads finish together
        chunks: list[list[str]] = []
        start, acc, share = 0, 0, total / parts
        for i, t in enumerate(texts):
            acc += len(t)
            if acc >= share * (len(chunks) + 1) and len(chunks) < parts - 1:
                chunks.append(texts[start : i + 1])
                start = i + 1
        chunks.append(texts[start:])
        out: list[int] = []
        for counts in self._executor().map(self._encode, chunks):
            out.extend(counts)
        return out


class BpeOpenAITexts:
    """Token counts of texts by bpe-openai (``count``: no token list is built)."""

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer

    def lengths(self, texts: list[str]) -> list[int]:
        """Counts of ``texts``, in order."""
        count = self._tok.count
        out: list[int] = []
        for t in texts:
            try:
                out.append(count(t) if t else 0)
            except UnicodeEncodeError:
                out.append(count(_tiktoken_clean(t)))
        return out


def probe_texts(added_tokens: Sequence[str] = (), seed: int = 12) -> list[str]:
    """The fixed self-check probes (deterministic for a given list of added tokens)."""
    probes = [
        "",
        "hello world",
        "Hello, World! It's 12:30 and we're 100% sure they'd've won. I'M HERE'S YOU'LL",
        "你好，世界！请写一篇3000字的文章。混合 mixed テキスト 텍스트 текст النص עברית ภาษาไทย",
        "def f(x):\n    return x.get('k', 10**6)  # 注释\n\n\n\tif x: pass\r\n",
        "😀🎉👨‍👩‍👧‍👦 🇨🇳 🧑🏽‍💻 e\u0301 \u00e9 \ufb01 \u200b\u200d\ufeff \U0010ffff \U000e0001",
        "\x00\x01\x1c\x1f\x7f\x80\x85\xa0\u2028\u3000 ÿ Ġ Ċ ▁ ﹏",
        "Numbers 1234567890 3.14159 1e-10 ０１２３ 一二三 ½ ⅔ 数字12345 12,345.67",
        "<|im_start|> <|im_end |> < |im_start|> <|endoftext|x <think></think> <｜User｜> <s> </s> [INST]",
        "lone \ud800 surrogate \udfff end",
        "a" * 5000,
        "哈" * 3000,
        "ab" * 2000,
        "0123456789" * 300,
        "!!!???" * 300,
        "😀" * 400,
    ]
    for n in (1, 2, 3, 4, 7, 16, 33, 200):
        for ws in (" ", "\n", "\t", "\r\n", " \n", "\n ", "\u3000", "\xa0"):
            run = ws * n
            probes += [run, run + "x", "x" + run, "x" + run + "y", run + "你好" + run]
    for tok in added_tokens:
        probes += [tok, f"x{tok}y", f" {tok} ", f"{tok}{tok}", f"hi\n{tok}\n\n你好 {tok}end", f"<{tok}>"]
    rng = random.Random(seed)
    pools: list[Callable[[], str]] = [
        lambda: chr(rng.randint(0x20, 0x7E)),
        lambda: rng.choice(" \t\n\r\x0b\x0c\x85\xa0\u2000\u3000\x1c"),
        lambda: chr(rng.randint(0x4E00, 0x9FFF)),
        lambda: chr(rng.randint(0x300, 0x36F)),
        lambda: rng.choice(["'s", "'S", "'ll", "'RE", "'d", "😀", "🇨🇳", "\u200d", "Ġ", "▁", "12", "3.5"]),
        lambda: chr(rng.randint(0, 0x2FFFF)),
    ]
    for _ in range(3000):
        probes.append("".join(rng.choice(pools)() for _ in range(rng.choice((1, 2, 3, 5, 8, 20, 60)))))
    probes.append("\n\n".join(probes[1:10]) * 20)  # one long mixed text
    return probes


def _hf_added(base: HFCounter) -> list[str]:
    return sorted({t.content for t in base.backend.get_added_tokens_decoder().values() if t.content})


def _library_lengths(base: HFCounter) -> Callable[[list[str]], list[int]]:
    tok = base.backend

    def lengths(texts: list[str]) -> list[int]:
        try:
            encs = tok.encode_batch_fast(texts, add_special_tokens=False)
        except TypeError:
            encs = tok.encode_batch_fast([_clean(t) for t in texts], add_special_tokens=False)
        return [len(e.ids) for e in encs]

    return lengths


def _check_hf(base: HFCounter) -> tuple[Callable[[list[str]], list[int]] | None, str]:
    try:
        import kitoken
    except ImportError:
        return None, "kitoken is not installed (pip install 'llmtally[fastcount]')"
    try:
        kt = kitoken.Kitoken.from_tokenizers(base.backend.to_str().encode("utf-8"))
        config = kt.config()
        config["fallback"] = []  # an unknown piece is an error (counted by tokenizers), never skipped
        kt.set_config(config)
    except Exception as exc:  # kitoken raises plain exceptions for models it does not support
        return None, f"kitoken cannot load it: {exc}"
    library = _library_lengths(base)
    pieces = KitokenPieces(kt, library)
    twin = base.with_piece_counter(pieces.lengths)
    probes = probe_texts(_hf_added(base))
    return _compare(twin.count_batch(probes), library(probes), probes, pieces.lengths, "kitoken")


def bpe_openai_bindings() -> Any:
    """bpe-openai's Rust extension (``tokenizer_for_encoding(name).count(text)``).

    Importing the ``bpe_openai`` package decodes all its vocabularies in Python at import time
    (about 0.9 s and 70 MB, and a DeprecationWarning from ``importlib.resources``) for its
    tiktoken-compatible wrapper, which llmtally does not use; the extension itself needs none of it,
    so it is loaded from the installed package's folder without running the package's
    ``__init__``.  Raises :class:`ImportError` when bpe-openai is not installed.
    """
    name = "bpe_openai._bindings"
    if sys.modules.get(name) is not None:
        return sys.modules[name]
    spec = importlib.util.find_spec("bpe_openai")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("bpe-openai is not installed")
    for folder in spec.submodule_search_locations:
        for path in sorted(Path(folder).glob("_bindings*")):
            if path.suffix in (".so", ".pyd"):
                loader = importlib.machinery.ExtensionFileLoader(name, str(path))
                ext = importlib.util.spec_from_file_location(name, path, loader=loader)
                if ext is not None:
                    module = importlib.util.module_from_spec(ext)
                    loader.exec_module(module)
                    return module
    with warnings.catch_warnings():  # another layout: the ordinary import
        warnings.simplefilter("ignore", DeprecationWarning)
        from bpe_openai import _bindings
    return _bindings


def _check_tiktoken(base: TiktokenCounter) -> tuple[Callable[[list[str]], list[int]] | None, str]:
    name = base.encoding_name
    try:
        _bindings = bpe_openai_bindings()
    except ImportError:
        return None, "bpe-openai is not installed (pip install 'llmtally[fastcount]')"
    if name not in _bindings.supported_encodings():
        return None, f"bpe-openai has no {name}"
    texts = BpeOpenAITexts(_bindings.tokenizer_for_encoding(name))
    enc = base.encoding
    probes = probe_texts(sorted(enc.special_tokens_set))
    want = [len(enc.encode_ordinary(p)) for p in probes]
    return _compare(texts.lengths(probes), want, probes, texts.lengths, "bpe-openai")


def _compare(
    got: list[int], want: list[int], probes: list[str], counter: Callable[[list[str]], list[int]], lib: str
) -> tuple[Callable[[list[str]], list[int]] | None, str]:
    for probe, g, w in zip(probes, got, want, strict=True):
        if g != w:
            return None, f"{lib} self-check failed: {probe[:40]!r} counts {g}, the library {w}"
    return counter, lib


def installed(base: TokenCounter) -> bool:
    """Whether the library the fast engine needs for ``base`` is importable."""
    try:
        if isinstance(base, HFCounter):
            import kitoken  # noqa: F401
        elif isinstance(base, TiktokenCounter):
            bpe_openai_bindings()
        else:
            return False
    except ImportError:
        return False
    return True


def fast_counter(base: TokenCounter) -> tuple[TokenCounter, str | None]:
    """``(counter, None)`` counting with kitoken or bpe-openai after the self-check passed, else
    ``(base, why not)``; the check runs once per tokenizer fingerprint and process."""
    if not isinstance(base, (HFCounter, TiktokenCounter)):
        return base, f"the fast engine has no path for {type(base).__name__}"
    if isinstance(base, HFCounter) and not base.splits_on_added_tokens:
        return base, "its added tokens are context-dependent (pieces between them are not independent)"
    with _lock:
        entry = _checked.get(base.fingerprint)
        if entry is None:
            entry = _check_hf(base) if isinstance(base, HFCounter) else _check_tiktoken(base)
            _checked[base.fingerprint] = entry
    counter, note = entry
    if counter is None:
        return base, note
    if isinstance(base, HFCounter):
        return base.with_piece_counter(counter), None
    return base.with_text_counter(counter), None
