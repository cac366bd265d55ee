"""Counting by segments between added tokens, with a bounded cache of segment counts.

``tokenizers`` first splits a text on its added tokens (``<|im_start|>``, ``<｜User｜>``, …), then
normalises, pre-tokenises and merges each piece on its own.  So a rendered prompt's count is the sum
of its pieces' counts plus one per added token -- and pieces repeat enormously in chat logs (role
headers, system prompts, the history every follow-up request re-sends).  Each distinct piece is
encoded once and its count reused.

This holds only when the split is context-free: no added token strips whitespace around itself or
matches single words only, tokens matched after normalisation see an identity normaliser, and no
Metaspace pre-tokeniser prepends only to the *first* piece.  :func:`segment_splitter` checks those
conditions on the ``tokenizer.json`` and returns ``None`` when they fail (the caller then encodes
whole strings).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["SegmentCounter", "alternation", "segment_splitter"]

MAX_CACHED_CHARS = 32_000_000
MAX_SEGMENT_CHARS = 65_536


def _identity_normalizer(normalizer: Any) -> bool:
    if normalizer is None:
        return True
    return (
        isinstance(normalizer, Mapping)
        and normalizer.get("type") == "Sequence"
        and not normalizer.get("normalizers")
    )


def _mentions_first_only_prepend(node: Any) -> bool:
    if isinstance(node, Mapping):
        if node.get("type") == "Metaspace" and node.get("prepend_scheme", "always") == "first":
            return True
        return any(_mentions_first_only_prepend(v) for v in node.values())
    if isinstance(node, list):
        return any(_mentions_first_only_prepend(v) for v in node)
    return False


def segment_splitter(spec: Mapping[str, Any]) -> re.Pattern[str] | None:
    """A regex matching the added tokens of a parsed ``tokenizer.json``, or ``None`` when pieces
    between them cannot be counted independently."""
    added = spec.get("added_tokens") or []
    identity = _identity_normalizer(spec.get("normalizer"))
    contents: list[str] = []
    for tok in added:
        if tok.get("lstrip") or tok.get("rstrip") or tok.get("single_word"):
            return None
        if tok.get("normalized") and not identity:
            return None
        if tok.get("content"):
            contents.append(str(tok["content"]))
    if _mentions_first_only_prepend(spec.get("pre_tokenizer")) or _mentions_first_only_prepend(
        spec.get("normalizer")
    ):
        return None
    if not contents:
        return None
    return alternation(contents)


def alternation(words: list[str]) -> re.Pattern[str]:
    """A regex matching any of ``words``, the longest one where several match at a position (as
    the added-vocabulary trie does), like ``"|".join`` of them longest first -- but factored into a
    prefix tree.  ``re`` tries a flat alternation's branches one by one at every candidate
    position: with DeepSeek-V3's 818 added tokens, all starting ``<``, splitting was a quarter to a
    third of a one-core recount; the tree follows one path per position (a character selects one
    child), and its greedy ``?`` on a token that other tokens extend keeps the longest match."""
    words = [w for w in words if w]
    if not words:
        raise ValueError("no words to match")  # an empty pattern would split between every character
    flat = "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))
    try:
        return re.compile(_tree_pattern(words))
    except (RecursionError, re.error):  # a pathologically deep tree: the flat alternation
        return re.compile(flat)


def _tree_pattern(words: list[str]) -> str:
    root: dict[str, Any] = {}
    for w in words:
        node = root
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = None  # a word ends here

    def emit(node: dict[str, Any]) -> str:
        branches = [re.escape(ch) + emit(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if "" in node:  # a word ends here and longer ones go on: try the longer ones first
            body = (body if len(branches) > 1 else "(?:" + body + ")") + "?"
        return body

    return emit(root)


class SegmentCounter:
    """Counts texts as the sum of cached piece counts plus one per added token."""

    def __init__(self, splitter: re.Pattern[str], encode_lengths: Callable[[list[str]], list[int]]) -> None:
        self._split = splitter
        self._encode = encode_lengths
        self._cache: dict[str, int] = {}
        self._chars = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def count(self, texts: list[str]) -> list[int]:
        """Counts of ``texts``, in order."""
        pieces_per_text: list[tuple[list[str], int]] = []
        missing: dict[str, None] = {}
        cache = self._cache
        for text in texts:
            pieces = self._split.split(text)
            specials = len(pieces) - 1
            pieces = [p for p in pieces if p]
            for p in pieces:
                if p not in cache:
                    missing[p] = None
            pieces_per_text.append((pieces, specials))
        fresh: dict[str, int] = {}
        if missing:
            keys = list(missing)
            fresh = dict(zip(keys, self._encode(keys), strict=True))
        out: list[int] = []
        hits = 0
        for pieces, specials in pieces_per_text:
            n = specials
            for p in pieces:
                c = cache.get(p)
                if c is None:
                    c = fresh[p]
                else:
                    hits += 1
                n += c
            out.append(n)
        with self._lock:
            self.hits += hits
            self.misses += len(fresh)
            for p, c in fresh.items():
                if len(p) <= MAX_SEGMENT_CHARS:
                    if self._chars + len(p) > MAX_CACHED_CHARS:
                        self._cache.clear()
                        self._chars = 0
                    self._cache[p] = c
                    self._chars += len(p)
        return out
