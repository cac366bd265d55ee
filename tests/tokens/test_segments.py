"""The segment cache gives exactly the whole-string counts (property-based)."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmtally.tokens import HFCounter, load_hf_folder
from llmtally.tokens._segments import alternation, segment_splitter
from tests.support import tokenizer_source

FAMILIES = ["qwen3", "llama3_1", "deepseek_v3"]
_counters: dict[str, tuple[HFCounter, HFCounter, list[str]]] = {}


def _pair(family: str) -> tuple[HFCounter, HFCounter, list[str]]:
    if family not in _counters:
        src = tokenizer_source(family)
        spec = json.loads(Path(src, "tokenizer.json").read_text(encoding="utf-8"))
        specials = [t["content"] for t in spec["added_tokens"]]
        _counters[family] = (load_hf_folder(src), load_hf_folder(src, segment_cache=False), specials)
    return _counters[family]


pieces = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["\n", "\n\n", "  ", " ", "你好", "<think>", "</think>", "user", "<|im_end |>", "12345"]),
)


@pytest.mark.parametrize("family", FAMILIES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_segment_counts_equal_whole_string_counts(family: str, data: st.DataObject) -> None:
    cached, whole, specials = _pair(family)
    parts = data.draw(st.lists(st.one_of(pieces, st.sampled_from(specials)), max_size=12))
    text = "".join(parts)
    assert cached.count(text) == whole.count(text)
    # twice, so the second count comes from the cache
    assert cached.count_batch([text, text]) == [whole.count(text)] * 2


def test_splitter_refuses_context_dependent_tokenizers() -> None:
    base = {"added_tokens": [{"content": "<s>", "lstrip": False, "rstrip": False, "single_word": False}]}
    assert segment_splitter(base) is not None
    assert segment_splitter({"added_tokens": [{**base["added_tokens"][0], "lstrip": True}]}) is None
    first_only = {**base, "pre_tokenizer": {"type": "Metaspace", "prepend_scheme": "first"}}
    assert segment_splitter(first_only) is None
    normalized = {
        "added_tokens": [{**base["added_tokens"][0], "normalized": True}],
        "normalizer": {"type": "NFKC"},
    }
    assert segment_splitter(normalized) is None


def _flat(words: list[str]) -> re.Pattern[str]:
    """The splitter as it was: a flat alternation, longest first."""
    return re.compile("|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True)))


@functools.cache
def _added(family: str) -> list[str]:
    spec = json.loads(Path(tokenizer_source(family), "tokenizer.json").read_text(encoding="utf-8"))
    return [t["content"] for t in spec["added_tokens"] if t["content"]]


NESTED = ["<", "<a", "<ab", "<abc", "<abd", "<b>", "x<", "<｜", "<｜User｜>", "<｜User｜>>", "😀", "😀😀x"]


@pytest.mark.parametrize("family", [*FAMILIES, "nested"])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_tree_splitter_splits_like_the_flat_alternation(family: str, data: st.DataObject) -> None:
    words = NESTED if family == "nested" else _added(family)
    tree, flat = alternation(words), _flat(words)
    # fragments of the words too, so that near misses (a token's prefix, then something else) occur
    frags = st.sampled_from(words).flatmap(lambda w: st.sampled_from([w, w[:-1], w[1:], w[: len(w) // 2]]))
    text = "".join(data.draw(st.lists(st.one_of(frags, st.text(max_size=6)), max_size=16)))
    assert tree.split(text) == flat.split(text)


def test_tree_splitter_on_every_added_token_and_a_deep_tree() -> None:
    for family in FAMILIES:
        words = _added(family)
        text = "x".join(words) + "".join(words) + "".join(w[:-1] for w in words)
        assert alternation(words).split(text) == _flat(words).split(text)
    deep = ["a" * i for i in range(1, 1500)]  # every prefix a word: falls back to the flat form if needed
    text = "a" * 2000 + "b" + "a" * 5
    assert alternation(deep).split(text) == _flat(deep).split(text)
