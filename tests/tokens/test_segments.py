"""The segment cache gives exactly the whole-string counts (property-based)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmtally.tokens import HFCounter, load_hf_folder
from llmtally.tokens._segments import segment_splitter
from tests.support import tokenizer_source

FAMILIES = ["qwen3", "llama3_1", "deepseek_v3"]
_counters: dict[str, tuple[HFCounter, HFCounter, list[str]]] = {}


def _pair(family: str) -> tuple[HFCounter, HFCounter, list[str]]:
    if family not in _counters:
        src = tokenizer_source(family)
        spec = json.loads(Path(src, "tokenizer.json").read_text(encoding="utf-8"))
        specials = [t["content"] for t in spec["added_tokens"]][:40]
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
