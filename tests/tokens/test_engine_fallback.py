"""Engines never fail a model (issue 12 item 4): what ``cached`` / ``gpu`` cannot count exactly is
counted by ``tokenizers``, and the engine says so.

The SentencePiece-style folders are built here with the ``tokenizers`` library (``spm_folders``):
a Unigram model with Metaspace, and a BPE model with byte fallback declared as ``LlamaTokenizer``
with ``legacy`` false (a Llama-2-style folder: prefix space only at the very start).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from llmtally.pipeline import UsageRecord, recount
from llmtally.tokens import HFCounter, RecountEngine, load_engine, load_hf_folder
from tests.tokens.corpus import CHATS, TEXTS
from tests.tokens.spm_folders import tokenizers_folder

ITEMS = [
    *TEXTS,
    " Hello",
    "<s>Hello</s> world",
    "  runs   of  spaces ",
    "\n\nnew lines\n",
    "😀 龘",
    *[c for c in CHATS if "tools" not in c][:4],
]


@pytest.fixture(scope="module")
def unigram(tmp_path_factory: pytest.TempPathFactory) -> HFCounter:
    return load_hf_folder(tokenizers_folder(tmp_path_factory.mktemp("unigram"), kind="unigram"))


@pytest.fixture(scope="module")
def llama2_style(tmp_path_factory: pytest.TempPathFactory) -> HFCounter:
    folder = tokenizers_folder(
        tmp_path_factory.mktemp("bpe"),
        kind="bpe",
        config={"tokenizer_class": "LlamaTokenizer", "legacy": False},
    )
    return load_hf_folder(folder)


def test_gpu_hands_a_sentencepiece_tokenizer_to_tokenizers(
    unigram: HFCounter, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("torch")
    with caplog.at_level(logging.WARNING, logger="llmtally.tokens"):
        eng = load_engine(unigram, "gpu", "cpu")
    assert (eng.engine, eng.device, eng.requested_engine) == ("tokenizers", "cpu", "gpu")
    assert eng.fallback is not None and "byte-level" in eng.fallback
    assert eng.describe() == {
        "engine": "tokenizers",
        "device": "cpu",
        "requested_engine": "gpu",
        "fallback": eng.fallback,
    }
    assert "cannot count it exactly" in caplog.text and "engine tokenizers" in caplog.text
    assert eng.count_batch(ITEMS) == unigram.count_batch(ITEMS)
    assert "requested engine=gpu, fell back:" in eng.summary()


def test_cached_counts_a_context_free_sentencepiece_tokenizer_itself(unigram: HFCounter) -> None:
    """Metaspace prepending to every piece: pieces and pre-tokens are context-free, no fallback."""
    eng = load_engine(unigram, "cached", "cpu")
    assert eng.engine == "cached" and eng.fallback is None
    assert eng.count_batch(ITEMS) == unigram.count_batch(ITEMS)
    assert eng.describe() == {"engine": "cached", "device": "cpu"}


@pytest.mark.parametrize("engine", ["cached", "gpu"])
def test_a_first_only_prefix_space_falls_back(llama2_style: HFCounter, engine: str) -> None:
    if engine == "gpu":
        pytest.importorskip("torch")
    assert llama2_style.loaded_as and not llama2_style.splits_on_added_tokens
    eng = load_engine(llama2_style, engine, "cpu")
    assert eng.engine == "tokenizers" and eng.requested_engine == engine
    assert eng.fallback is not None and "not counted independently" in eng.fallback
    assert eng.count_batch(ITEMS) == llama2_style.count_batch(ITEMS)


def test_the_counts_are_transformers_counts(llama2_style: HFCounter, unigram: HFCounter) -> None:
    transformers = pytest.importorskip("transformers")
    texts = [t for t in ITEMS if isinstance(t, str)]
    for counter in (llama2_style, unigram):
        ref = transformers.AutoTokenizer.from_pretrained(counter.name)
        assert [counter.count(t) for t in texts] == [
            len(ref.encode(t, add_special_tokens=False)) for t in texts
        ]


def test_a_self_check_mismatch_falls_back(unigram: HFCounter, monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine whose counts differ from the library's on the load-time sample is not used."""
    from llmtally.tokens import _pretoken

    real = _pretoken.HFPretokens.lengths
    monkeypatch.setattr(
        _pretoken.HFPretokens, "lengths", lambda self, pieces: [n + 1 for n in real(self, pieces)]
    )
    eng = load_engine(unigram, "cached", "cpu")
    assert eng.engine == "tokenizers" and eng.fallback is not None and "self-check" in eng.fallback
    assert eng.count_batch(ITEMS) == unigram.count_batch(ITEMS)


def test_auto_chooses_among_engines_that_count_exactly(llama2_style: HFCounter, tmp_path: Path) -> None:
    """``auto`` measures only what counts exactly here: ``cached`` cannot, so it is not a candidate."""
    eng = load_engine(llama2_style, "auto", "cpu", cache_dir=tmp_path)
    assert eng.engine != "cached" and eng.fallback is None
    choice = json.loads((tmp_path / "engine-choice.json").read_text(encoding="utf-8"))
    (entry,) = choice.values()
    assert "tokenizers" in entry["mb_per_s"] and "cached" not in entry["mb_per_s"]


def test_the_daily_recount_keeps_a_sentencepiece_model(llama2_style: HFCounter, unigram: HFCounter) -> None:
    """The pipeline's recount with a configured gpu engine: both models counted, none failed."""
    pytest.importorskip("torch")
    ts = datetime(2026, 11, 20, 2, tzinfo=UTC)
    msgs = [{"role": "user", "content": " 你好，介绍一下分词器。"}]
    engines: dict[str, RecountEngine] = {}

    def counter_for_model(model: str) -> RecountEngine:
        if model not in engines:
            engines[model] = load_engine(llama2_style if model == "llama2-style" else unigram, "gpu", "cpu")
        return engines[model]

    recs = [
        UsageRecord("a", ts, model="llama2-style", messages=msgs, completion="好的。", finish_reason="stop"),
        UsageRecord("b", ts, model="unigram", messages=msgs, completion="好的。", finish_reason="stop"),
    ]
    out = recount(recs, counter_for_model)
    for rid, base in (("a", llama2_style), ("b", unigram)):
        assert out[rid].status == "ok"
        assert out[rid].prompt_tokens == base.count_messages(msgs)
        assert out[rid].completion_tokens == base.count("好的。") + 1
        assert out[rid].fingerprint == base.fingerprint
    assert all(e.fallback and "fell back" in e.summary() for e in engines.values())
