"""Engine ``fast`` (kitoken for tokenizer.json, bpe-openai for OpenAI encodings) counts exactly as the
libraries do, or is not used: tokenizers and tiktoken are the oracles."""

from __future__ import annotations

import importlib.util
import logging
import sys
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmtally.tokens import HFCounter, TiktokenCounter, _kitoken, load_engine, load_hf_folder, load_tiktoken
from llmtally.tokens._kitoken import BpeOpenAITexts, KitokenPieces, fast_counter, probe_texts
from tests.support import tokenizer_source
from tests.tokens.corpus import CHATS, TEXTS

pytest.importorskip("kitoken")
if importlib.util.find_spec("bpe_openai") is None:
    pytest.skip("bpe-openai is not installed", allow_module_level=True)

FAMILIES = ["qwen3", "llama3_1", "deepseek_v3"]
ENCODINGS = ["o200k_base", "cl100k_base"]

EXTRA = [
    " " * 3000 + "x",
    "\n" * 500 + "x\n\n",
    "\t \t\r\n\r\n  \u3000\u3000\xa0 x \x0b\x0c\x85\u2028",
    "lone \ud800 and \udfff surrogates, \udbff\udc00 a pair written as two",
    "\x00\x01\x02\x1c\x1f\x7f\x80\xff ÿÿ ĠĠ ĊĊ ▁▁",
    "I'M you'RE they'LL we'd 's 'S",
    "".join(chr(c) for c in range(0x20, 0x3000, 7)),
    ("Hello, 世界! 123 foo_bar\n\t  " * 5000),  # ~130 KB: the threaded path
    "😀" * 2000,
    "x" * 200_000,
]
TEXT_CASES = [*TEXTS, *EXTRA]


@cache
def _hf(family: str) -> HFCounter:
    return load_hf_folder(tokenizer_source(family))


@cache
def _tt(name: str) -> TiktokenCounter:
    return load_tiktoken(name)


def _oracle_hf(base: HFCounter, text: str) -> int:
    clean = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return len(base.backend.encode(clean, add_special_tokens=False).ids)


def _added(base: HFCounter) -> list[str]:
    return sorted({t.content for t in base.backend.get_added_tokens_decoder().values()})


@pytest.mark.parametrize("family", FAMILIES)
def test_fast_engine_counts_hf_exactly(family: str) -> None:
    base = _hf(family)
    eng = load_engine(base, "fast", "cpu")
    assert eng.engine == "fast" and eng.fallback is None, eng.describe()
    want = [_oracle_hf(base, t) for t in TEXT_CASES]
    assert eng.count_batch(TEXT_CASES) == want
    assert [eng.count(t) for t in TEXT_CASES] == want
    items = [*TEXT_CASES, *CHATS]
    assert eng.count_batch(items) == base.count_batch(items)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_added_token_typed_by_a_user_counts_as_the_library(family: str) -> None:
    base = _hf(family)
    counter, why = fast_counter(base)
    assert why is None
    texts = [f"user typed {tok} here{tok}{tok} and <{tok}>" for tok in _added(base)]
    assert counter.count_batch(texts) == [_oracle_hf(base, t) for t in texts]


@pytest.mark.parametrize("family", FAMILIES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    parts=st.lists(
        st.one_of(
            st.text(max_size=40),
            st.text(alphabet=" \t\n\r\u3000\xa0\x0bx'sS1", max_size=60),
            st.sampled_from(
                ["\ud800", "\udfff", "<|im_end|>", "<|eot_id|>", "<｜User｜>", "<think>", "  ", "\n\n"]
            ),
            st.characters(),
        ),
        max_size=12,
    )
)
def test_property_kitoken_equals_tokenizers(family: str, parts: list[str]) -> None:
    base = _hf(family)
    counter, _ = fast_counter(base)
    text = "".join(parts)
    assert counter.count(text) == _oracle_hf(base, text)


@pytest.mark.parametrize("name", ENCODINGS)
def test_fast_engine_counts_openai_exactly(name: str) -> None:
    base = _tt(name)
    eng = load_engine(base, "fast", "cpu")
    assert eng.engine == "fast" and eng.fallback is None, eng.describe()
    want = [len(base.encoding.encode_ordinary(t)) for t in TEXT_CASES]
    assert eng.count_batch(TEXT_CASES) == want
    assert eng.count_batch(list(CHATS)) == base.count_batch(list(CHATS))


@pytest.mark.parametrize("name", ENCODINGS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    parts=st.lists(
        st.one_of(
            st.text(max_size=40),
            st.text(alphabet=" \t\n\r\u3000\xa0x'sS1", max_size=60),
            st.sampled_from(["\ud800", "<|endoftext|>", "<|endofprompt|>", "'ll", "1234567"]),
        ),
        max_size=12,
    )
)
def test_property_bpe_openai_equals_tiktoken(name: str, parts: list[str]) -> None:
    base = _tt(name)
    counter, _ = fast_counter(base)
    text = "".join(parts)
    assert counter.count(text) == len(base.encoding.encode_ordinary(text))


def test_threads_give_the_same_counts_in_order() -> None:
    base = _hf("qwen3")
    from kitoken import Kitoken

    kt = Kitoken.from_tokenizers(base.backend.to_str().encode())
    texts = [f"{i} 你好 world " * (i % 50 + 1) for i in range(3000)]
    one = KitokenPieces(kt, lambda t: [], threads=1).lengths(texts)
    four = KitokenPieces(kt, lambda t: [], threads=4).lengths(texts)
    assert one == four == [_oracle_hf(base, t) for t in texts]


def test_a_piece_kitoken_cannot_encode_is_counted_by_the_library() -> None:
    class Refuses:
        def encode_all(self, texts: list[str], specials: bool) -> list[list[int]]:
            raise RuntimeError("no token for this part")

    assert KitokenPieces(Refuses(), lambda t: [len(x) for x in t]).lengths(["abc", "de"]) == [3, 2]


def test_a_failed_self_check_falls_back_to_tokenizers_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_kitoken, "_checked", {})
    real = KitokenPieces._encode
    monkeypatch.setattr(KitokenPieces, "_encode", lambda self, texts: [n + 1 for n in real(self, texts)])
    base = _hf("deepseek_v3")
    with caplog.at_level(logging.WARNING, logger="llmtally.tokens"):
        eng = load_engine(base, "fast", "cpu")
    assert eng.engine == "tokenizers" and eng.requested_engine == "fast"
    assert eng.fallback is not None and "self-check failed" in eng.fallback
    assert "falls back" in caplog.text
    assert eng.count_batch(TEXTS) == base.count_batch(TEXTS)


def test_without_the_packages_the_fast_engine_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_kitoken, "_checked", {})
    monkeypatch.setitem(sys.modules, "kitoken", None)
    monkeypatch.setitem(sys.modules, "bpe_openai", None)
    monkeypatch.setitem(sys.modules, "bpe_openai._bindings", None)
    hf = load_engine(_hf("qwen3"), "fast", "cpu")
    tt = load_engine(_tt("o200k_base"), "fast", "cpu")
    assert (hf.engine, tt.engine) == ("tokenizers", "tokenizers")
    assert "not installed" in (hf.fallback or "") and "not installed" in (tt.fallback or "")
    assert hf.describe()["requested_engine"] == "fast"


def test_context_dependent_added_tokens_fall_back() -> None:
    base = load_hf_folder(tokenizer_source("qwen3"), segment_cache=False)
    counter, why = fast_counter(base)
    assert counter is base and why is not None and "context-dependent" in why


def test_an_encoding_bpe_openai_lacks_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    _bindings = _kitoken.bpe_openai_bindings()
    monkeypatch.setattr(_kitoken, "_checked", {})
    monkeypatch.setattr(_bindings, "supported_encodings", lambda: ["voyage3_base"])
    _, why = fast_counter(_tt("cl100k_base"))
    assert why == "bpe-openai has no cl100k_base"


def test_bpe_openai_replaces_lone_surrogates_as_tiktoken() -> None:
    texts = BpeOpenAITexts(_kitoken.bpe_openai_bindings().tokenizer_for_encoding("o200k_base"))
    enc = _tt("o200k_base").encoding
    sample = ["a\ud800b", "\udfff", "", "ok"]
    assert texts.lengths(sample) == [len(enc.encode_ordinary(t)) for t in sample]


def test_probe_set_is_fixed_and_covers_the_added_tokens() -> None:
    probes = probe_texts(["<|im_end|>"])
    assert probes == probe_texts(["<|im_end|>"])
    assert "x<|im_end|>y" in probes and " " * 200 in probes and any("\ud800" in p for p in probes)


@pytest.fixture(scope="module")
def spm_counters(tmp_path_factory: pytest.TempPathFactory) -> dict[str, HFCounter]:
    from tests.tokens.spm_folders import tokenizers_folder

    root = tmp_path_factory.mktemp("spm")
    return {kind: load_hf_folder(tokenizers_folder(root / kind, kind=kind)) for kind in ("unigram", "bpe")}


@pytest.mark.parametrize("kind", ["unigram", "bpe"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    parts=st.lists(
        st.one_of(
            st.text(max_size=30),
            st.text(alphabet=" \t\n▁\u3000x", max_size=40),
            st.sampled_from(["<s>", "</s>", "<unk>", " the", "\ud800", "😀", "é"]),
        ),
        max_size=10,
    )
)
def test_property_kitoken_on_sentencepiece_style_tokenizers(
    spm_counters: dict[str, HFCounter], kind: str, parts: list[str]
) -> None:
    """Unigram and BPE-with-byte-fallback (Metaspace) folders built offline: kitoken passes the
    self-check there too, and stays equal to tokenizers."""
    base = spm_counters[kind]
    counter, why = fast_counter(base)
    assert why is None
    text = "".join(parts)
    assert counter.count(text) == _oracle_hf(base, text)


def test_fast_is_the_default_engine() -> None:
    eng = load_engine(_hf("qwen3"))
    assert (eng.engine, eng.fallback) == ("fast", None)


def test_the_default_without_the_packages_is_tokenizers_and_no_fallback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_kitoken, "_checked", {})
    monkeypatch.setitem(sys.modules, "kitoken", None)
    eng = load_engine(_hf("qwen3"))
    assert (eng.engine, eng.fallback) == ("tokenizers", None)


def test_bpe_openai_loads_without_its_python_wrapper() -> None:
    import subprocess

    code = (
        "import sys; from llmtally.tokens._kitoken import bpe_openai_bindings as b; "
        "n = b().tokenizer_for_encoding('o200k_base').count('hello world'); "
        "print(n, 'bpe_openai' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["2", "False"]
