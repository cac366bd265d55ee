"""The raw record contract's usage normalisation: the canonical fast path gives what the general one
gives, for every canonical-looking dict (hypothesis)."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from llmtally._record import USAGE_KEYS, normalize_usage

counts = st.one_of(st.none(), st.integers(min_value=-5, max_value=10**20), st.booleans(), st.floats(allow_nan=False),
                   st.just("12"))  # fmt: skip


@given(st.dictionaries(st.sampled_from(USAGE_KEYS), counts))
def test_the_canonical_fast_path_equals_the_general_path(usage: dict[str, Any]) -> None:
    # a read-only mapping of the same items never takes the fast path (it is for plain dicts only)
    assert normalize_usage(usage) == normalize_usage(MappingProxyType(usage))


def test_what_the_logger_writes_and_what_providers_send() -> None:
    canonical = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15, "cached_tokens": None,
                 "reasoning_tokens": None}  # fmt: skip
    assert normalize_usage(canonical) == canonical
    assert normalize_usage({"prompt_tokens": 7, "total_tokens": 7}) == {  # embeddings
        "prompt_tokens": 7, "completion_tokens": 0, "total_tokens": 7, "cached_tokens": None,
        "reasoning_tokens": None,
    }  # fmt: skip
    assert normalize_usage({"input_tokens": 5, "output_tokens": 2,
                            "input_tokens_details": {"cached_tokens": 4}})["cached_tokens"] == 4  # type: ignore[index]  # fmt: skip
    assert normalize_usage({"prompt_tokens": True, "completion_tokens": None}) is None  # a bool is no count
    assert normalize_usage({}) is None
