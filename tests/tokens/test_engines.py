"""Every recount path gives exactly the library's counts: pre-token cache, torch BPE on cpu, engines."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from llmtally.tokens import (
    HFCounter,
    RecountEngine,
    TiktokenCounter,
    load_engine,
    load_hf_folder,
    load_tiktoken,
)
from llmtally.tokens._pretoken import HFPretokens, PretokenCache, TiktokenPretokens
from tests.support import tokenizer_source
from tests.tokens.corpus import CHATS, TEXTS

torch = pytest.importorskip("torch")
from llmtally.tokens._gpu_bpe import TorchBPE  # noqa: E402

FAMILIES = ["qwen3", "llama3_1", "deepseek_v3"]
ENCODINGS = ["o200k_base", "cl100k_base"]

ADVERSARIAL = [
    "a" * 4000,
    "哈" * 2000,
    "ab" * 1500,
    " " * 3000 + "x",
    "\n" * 500,
    "!!!???" * 300,
    "0123456789" * 200,
    "\x00\x01\x02\x7f\x80\xff",
    "\u200b\u200d\ufeff\U0010ffff\U000e0001",
    "😀" * 300 + "👨‍👩‍👧‍👦" * 50,
    "ÿÿÿÿ ĠĠĠ ĊĊ",
    "aaaaaaaabaaaaaaaab" * 100,
    "こんにちは世界" * 100 + "한국어텍스트" * 100,
    "x = [i ** 2 for i in range(10)]  # 平方\n\tif x: return {'k': \"v\"}\r\n",
]
TEXT_CASES = [t for t in TEXTS if t] + ADVERSARIAL


@cache
def _hf(family: str) -> HFCounter:
    return load_hf_folder(tokenizer_source(family))


@cache
def _hf_bpe(family: str) -> TorchBPE:
    spec = json.loads(Path(tokenizer_source(family), "tokenizer.json").read_text(encoding="utf-8"))
    return TorchBPE.from_hf_spec(spec, "cpu")


@cache
def _tt(name: str) -> TiktokenCounter:
    return load_tiktoken(name)


@cache
def _tt_bpe(name: str) -> TorchBPE:
    return TorchBPE.from_tiktoken(_tt(name).encoding, "cpu")


def _library_pretoken_lengths(tok: Tokenizer, text: str) -> tuple[list[str], list[int]]:
    norm = tok.normalizer.normalize_str(text) if tok.normalizer is not None else text
    words = [w for w, _ in tok.pre_tokenizer.pre_tokenize_str(norm)]
    return words, [len(tok.model.tokenize(w)) for w in words]


@pytest.mark.parametrize("family", FAMILIES)
def test_torch_bpe_on_cpu_matches_the_library_model(family: str) -> None:
    tok = _hf(family).backend
    words: list[str] = []
    expected: list[int] = []
    for text in TEXT_CASES:
        w, n = _library_pretoken_lengths(tok, text)
        words += w
        expected += n
    assert _hf_bpe(family).lengths_byte_level(words) == expected


@pytest.mark.parametrize("name", ENCODINGS)
def test_torch_bpe_on_cpu_matches_tiktoken(name: str) -> None:
    enc = _tt(name).encoding
    pieces = [
        p.encode() for text in TEXT_CASES for p in TiktokenPretokens(enc, PretokenCache("t")).pretokens(text)
    ]
    assert _tt_bpe(name).lengths(pieces) == [len(enc._encode_single_piece(p)) for p in pieces]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("engine", ["cached", "gpu"])
def test_engines_count_texts_and_chats_exactly(family: str, engine: str) -> None:
    base = _hf(family)
    eng = load_engine(base, engine, "cpu")
    items = [*TEXT_CASES, *[c for c in CHATS if family == "qwen3" or "tools" not in c]]
    expected = base.count_batch(items)
    assert eng.count_batch(items) == expected
    assert eng.count_batch(items) == expected  # warm cache
    assert [eng.count(t) for t in TEXT_CASES] == expected[: len(TEXT_CASES)]


@pytest.mark.parametrize("name", ENCODINGS)
@pytest.mark.parametrize("engine", ["cached", "gpu"])
def test_openai_engines_count_exactly(name: str, engine: str) -> None:
    base = _tt(name)
    eng = load_engine(base, engine, "cpu")
    expected = [len(base.encoding.encode_ordinary(t)) for t in TEXT_CASES]
    assert eng.count_batch(TEXT_CASES) == expected
    assert eng.count_batch(list(CHATS)) == [base.count_messages(**_chat_args(c)) for c in CHATS]


def _chat_args(chat: dict[str, object]) -> dict[str, object]:
    return {k: chat[k] for k in ("messages", "tools", "tool_choice", "add_generation_prompt") if k in chat}


@pytest.mark.parametrize("family", FAMILIES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_random_unicode_hf(family: str, text: str) -> None:
    base = _hf(family)
    words, expected = _library_pretoken_lengths(base.backend, text)
    assert _hf_bpe(family).lengths_byte_level(words) == expected
    pre = HFPretokens(base.backend, PretokenCache(base.fingerprint))
    assert pre.lengths([text, text]) == [base.count(text)] * 2


@pytest.mark.parametrize("name", ENCODINGS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_random_unicode_tiktoken(name: str, text: str) -> None:
    enc = _tt(name).encoding
    pre = TiktokenPretokens(enc, PretokenCache("x"), _tt_bpe(name).lengths)
    assert pre.lengths([text]) == [len(enc.encode_ordinary(text))]


def test_pretoken_cache_persists_and_is_keyed_by_fingerprint(tmp_path: Path) -> None:
    base = _hf("qwen3")
    cache = PretokenCache(base.fingerprint, tmp_path)
    HFPretokens(base.backend, cache).lengths(["你好，世界 hello world"])
    assert cache.save() == tmp_path / f"pretokens-{base.fingerprint}.json"
    again = PretokenCache(base.fingerprint, tmp_path)
    assert again.counts == cache.counts and again.counts
    assert PretokenCache("0" * 16, tmp_path).counts == {}
    (tmp_path / f"pretokens-{base.fingerprint}.json").write_text("{broken", encoding="utf-8")
    assert PretokenCache(base.fingerprint, tmp_path).counts == {}


def test_cache_stays_bounded() -> None:
    cache = PretokenCache("f", max_entries=10)
    cache.add({str(i): 1 for i in range(25)})
    assert len(cache.counts) <= 10


def test_auto_picks_a_measured_path_once(tmp_path: Path) -> None:
    eng = load_engine(_hf("deepseek_v3"), "auto", "cpu", cache_dir=tmp_path)
    assert isinstance(eng, RecountEngine) and eng.engine in ("tokenizers", "cached", "fast")
    choice = json.loads((tmp_path / "engine-choice.json").read_text(encoding="utf-8"))
    assert [v["engine"] for v in choice.values()] == [eng.engine]
    assert eng.count_batch(TEXT_CASES) == _hf("deepseek_v3").count_batch(TEXT_CASES)
    assert "MB/s" in eng.summary() and "records/s" in eng.summary()


def test_bad_engine_or_device_is_a_config_error() -> None:
    from llmtally import ConfigError

    with pytest.raises(ConfigError):
        load_engine(_hf("qwen3"), "warp", "cpu")
    with pytest.raises(ConfigError):
        load_engine(_hf("qwen3"), "cached", "cuda")


def test_import_llmtally_tokens_does_not_import_torch() -> None:
    code = "import sys, llmtally, llmtally.tokens; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
