"""Pre-token cache: each distinct pre-token's BPE length is computed once per tokenizer.

A tokenizer normalises a piece of text (between added tokens), splits it into pre-tokens with its
own regex, and merges each pre-token on its own -- so a piece's count is the sum of its pre-tokens'
BPE lengths, and pre-tokens repeat (Zipf).  Splitting always uses the tokenizer's own code:

* Hugging Face: ``normalizer.normalize_str`` and ``pre_tokenizer.pre_tokenize_str`` for misses; for
  the bulk, an auxiliary ``tokenizers.Tokenizer`` with the *same* normaliser and pre-tokeniser and a
  WordLevel model whose vocabulary maps each cached pre-token to ``length - 1`` (unknown ones to a
  sentinel), so that ``encode_batch_fast`` on all cores yields ``len(ids) + sum(ids)`` = the count.
* tiktoken: the encoding's own pattern (``_pat_str``) with the ``regex`` module, as tiktoken's
  Python reference does; misses are merged by ``_encode_single_piece``.

The cache is bounded, keyed by the tokenizer's fingerprint and persisted as JSON under a cache dir.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, models

from .._exceptions import InputError

__all__ = ["HFPretokens", "PretokenCache", "TiktokenPretokens", "default_cache_dir"]

MAX_ENTRIES = 2_000_000
MAX_PRETOKEN_CHARS = 4096  # longer pre-tokens are counted, not cached
_UNK = "\x00llmtally-unknown-pretoken"
_UNK_ID = 2**31  # above any sum of (length - 1) over one piece with < 2**31 tokens
_FORMAT = 1


def default_cache_dir() -> Path:
    """``$LLMTALLY_CACHE_DIR``, else ``$XDG_CACHE_HOME/llmtally``, else ``~/.cache/llmtally``."""
    env = os.environ.get("LLMTALLY_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "llmtally"


class PretokenCache:
    """A bounded map pre-token -> BPE length for one tokenizer fingerprint, optionally on disk."""

    def __init__(
        self, fingerprint: str, directory: Path | None = None, max_entries: int = MAX_ENTRIES
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self.fingerprint = fingerprint
        self.path = directory / f"pretokens-{fingerprint}.json" if directory is not None else None
        self.max_entries = max_entries
        self.counts: dict[str, int] = {}
        self.version = 0  # bumped whenever entries change
        self.hits = 0
        self.misses = 0
        self._saved_version = 0
        self._lock = threading.Lock()
        if self.path is not None:
            self._load(self.path)

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError):
            return  # a damaged cache is only a slower start
        if (
            isinstance(data, dict)
            and data.get("format") == _FORMAT
            and data.get("fingerprint") == self.fingerprint
        ):
            counts = data.get("counts")
            if isinstance(counts, dict):
                self.counts = {k: v for k, v in counts.items() if isinstance(v, int) and v >= 0}
                self.version = self._saved_version = 1

    def add(self, fresh: dict[str, int]) -> None:
        """Remember fresh counts (long pre-tokens are skipped; a full cache keeps its first half)."""
        with self._lock:
            for k, v in fresh.items():
                if len(k) <= MAX_PRETOKEN_CHARS:
                    self.counts[k] = v
            if len(self.counts) > self.max_entries:
                # pre-tokens met first are the frequent ones (Zipf): keep them
                keep = list(self.counts.items())[: self.max_entries // 2]
                self.counts = dict(keep)
            self.version += 1

    def save(self) -> Path | None:
        """Write the cache atomically if it changed since loading or the last save."""
        if self.path is None or self.version == self._saved_version:
            return None
        with self._lock:
            blob = json.dumps(
                {"format": _FORMAT, "fingerprint": self.fingerprint, "counts": self.counts},
                ensure_ascii=False,
                separators=(",", ":"),
            )
            version = self.version
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(blob, encoding="utf-8")
        os.replace(tmp, self.path)
        self._saved_version = version
        return self.path


def _clean(text: str) -> str:
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


class HFPretokens:
    """Counts pieces without added tokens as the sum of their pre-tokens' cached BPE lengths.

    ``bpe_lengths`` merges the missing pre-tokens (byte-level strings as the pre-tokeniser emits
    them); the default asks the tokenizer's own model (``model.tokenize``).
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        cache: PretokenCache,
        bpe_lengths: Callable[[list[str]], list[int]] | None = None,
    ) -> None:
        self._tok = tokenizer
        self._cache = cache
        self._bpe = bpe_lengths or self._model_lengths
        self._lookup: Tokenizer | None = None
        self._lookup_version = -1
        self._build_lock = threading.Lock()

    def _model_lengths(self, words: list[str]) -> list[int]:
        model = self._tok.model
        return [len(model.tokenize(w)) for w in words]

    def pretokens(self, piece: str) -> list[str]:
        """The pre-tokens of ``piece`` exactly as the tokenizer forms them."""
        norm = self._tok.normalizer
        text = norm.normalize_str(piece) if norm is not None else piece
        pre = self._tok.pre_tokenizer
        if pre is None:
            return [text] if text else []
        return [p for p, _ in pre.pre_tokenize_str(text)]

    def _lookup_tokenizer(self) -> Tokenizer:
        with self._build_lock:
            if self._lookup is None or self._lookup_version != self._cache.version:
                version = self._cache.version
                vocab = {k: v - 1 for k, v in list(self._cache.counts.items()) if 0 < v < 2**20}
                vocab[_UNK] = _UNK_ID
                aux = Tokenizer(models.WordLevel(vocab, unk_token=_UNK))
                aux.normalizer = self._tok.normalizer
                aux.pre_tokenizer = self._tok.pre_tokenizer
                self._lookup, self._lookup_version = aux, version
            return self._lookup

    def lengths(self, pieces: list[str]) -> list[int]:
        """Token counts of ``pieces`` (texts with no added tokens in them), in order."""
        if not pieces:
            return []
        try:
            encs = self._lookup_tokenizer().encode_batch_fast(pieces, add_special_tokens=False)
        except TypeError as exc:  # lone surrogates: counted as U+FFFD, as the plain path does
            cleaned = [_clean(p) for p in pieces]
            if cleaned == pieces:
                raise InputError(f"tokenizer failed on input: {exc}") from exc
            return self.lengths(cleaned)
        out: list[int] = []
        unresolved: list[int] = []
        for i, enc in enumerate(encs):
            ids = enc.ids
            s = sum(ids)
            if s >= _UNK_ID:
                unresolved.append(i)
                out.append(0)
            else:
                out.append(len(ids) + s)
        self._cache.hits += len(pieces) - len(unresolved)
        if unresolved:
            split = {i: self.pretokens(pieces[i]) for i in unresolved}
            for i, n in self._resolve(split).items():
                out[i] = n
        return out

    def _resolve(self, split: dict[int, list[str]]) -> dict[int, int]:
        counts = self._cache.counts
        missing = list(dict.fromkeys(p for words in split.values() for p in words if p not in counts))
        fresh = dict(zip(missing, self._bpe(missing), strict=True)) if missing else {}
        self._cache.misses += len(missing)
        if fresh:
            self._cache.add(fresh)
        return {i: sum(fresh[p] if p in fresh else counts[p] for p in words) for i, words in split.items()}


class TiktokenPretokens:
    """Counts texts for a tiktoken encoding as the sum of cached pre-token lengths.

    ``bpe_lengths`` merges missing pre-tokens given as UTF-8 bytes; the default is tiktoken's own
    ``_encode_single_piece`` (which answers 1 for a piece that is itself a token).
    """

    def __init__(
        self,
        encoding: Any,
        cache: PretokenCache,
        bpe_lengths: Callable[[list[bytes]], list[int]] | None = None,
    ) -> None:
        import regex  # type: ignore[import-untyped]  # a tiktoken dependency

        self._enc = encoding
        self._pattern = regex.compile(encoding._pat_str)
        self._cache = cache
        self._bpe = bpe_lengths or self._tiktoken_lengths

    def _tiktoken_lengths(self, words: list[bytes]) -> list[int]:
        single = self._enc._encode_single_piece
        return [len(single(w)) for w in words]

    def pretokens(self, text: str) -> list[str]:
        """The pieces tiktoken's pattern splits ``text`` into."""
        return list(self._pattern.findall(text))

    def lengths(self, texts: list[str]) -> list[int]:
        """Token counts of ``texts`` (``encode_ordinary``: special-token look-alikes are text)."""
        counts = self._cache.counts
        split = [self._pattern.findall(_clean(t) if _has_surrogates(t) else t) for t in texts]
        missing = list(dict.fromkeys(p for words in split for p in words if p not in counts))
        fresh: dict[str, int] = {}
        if missing:
            fresh = dict(zip(missing, self._bpe([p.encode("utf-8") for p in missing]), strict=True))
            self._cache.add(fresh)
        self._cache.misses += len(missing)
        self._cache.hits += sum(map(len, split)) - len(missing)
        get = counts.get
        return [sum(get(p) or fresh[p] for p in words) for words in split]


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
