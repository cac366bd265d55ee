"""SentencePiece-style tokenizers count as transformers' ``AutoTokenizer`` counts (issue 12 item 3).

The folders are built here from a SentencePiece model trained in the session (``spm_folders``):
saved by transformers' ``LlamaTokenizer`` with ``legacy`` true and false, with and without a prefix
space, as transformers 5 saves them and in the layout transformers 4 wrote for Llama 2 / Mistral
(the layout under which a leading space used to count one token more), and with the config flags
that change what is counted (tokenizer class, added and special tokens, ``split_special_tokens``).
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmtally.tokens import HFCounter, load_hf_folder
from llmtally.tokens._hf_classes import prepend_scheme
from tests.tokens.corpus import TEXTS
from tests.tokens.spm_folders import llama_folder

transformers = pytest.importorskip("transformers")

SP_TEXTS = [
    " Hello",
    "  Hello",
    "Hello ",
    "Hello   ",
    " ",
    "   ",
    "a  b   c    d",
    "\nHello",
    "Hello\n",
    "\n\n\n",
    "line one\nline two\r\n\tindented\n\n",
    "<s>Hello",
    "<s> Hello",
    "<s>",
    "</s> trailing",
    "Hello<s>world</s>",
    "x </s> y",
    "<unk> unknown",
    "你好，世界！今天天气怎么样？",
    " 你好 世界 ",
    "😀🎉 龘麤 \u00e9\u0301 \U0010ffff",
    "ÿ\x00\x7f",
    "def f(x):  return x.get('price', 42)",
    "<pad> and <mask> and <image> and <tool>",
    "Price 1234567890 and 3.14",
    "[INST] hi [/INST]",
]

# name -> (llama_folder options, tokenizer_config.json changes)
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "legacy": ({"legacy": True}, {}),
    "legacy-v4-layout": ({"legacy": True, "v4_layout": True}, {}),
    "non-legacy": ({"legacy": False}, {}),
    "non-legacy-v4-layout": ({"legacy": False, "v4_layout": True}, {}),
    "no-prefix-space-legacy-v4-layout": ({"legacy": True, "add_prefix_space": False, "v4_layout": True}, {}),
    "no-prefix-space-v4-layout": ({"legacy": False, "add_prefix_space": False, "v4_layout": True}, {}),
    "gemma-class": ({"legacy": False, "v4_layout": True}, {"tokenizer_class": "GemmaTokenizerFast"}),
    "split-special-tokens": ({"legacy": False, "v4_layout": True}, {"split_special_tokens": True}),
    "extra-specials-as-written": (
        {"legacy": True, "v4_layout": True},
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "pad_token": "<pad>",
            "image_token": "<image>",
            "extra_special_tokens": ["<tool>"],
        },
    ),
    "stripping-added-token": (
        {"legacy": False, "v4_layout": True},
        {
            "added_tokens_decoder": {
                "2": {
                    "content": "</s>",
                    "lstrip": True,
                    "rstrip": True,
                    "normalized": False,
                    "special": True,
                },
                "700": {
                    "content": "<tool>",
                    "lstrip": True,
                    "rstrip": False,
                    "normalized": False,
                    "special": True,
                },
            }
        },
    ),
}


def _build(sp_model: Path, out: Path, name: str) -> Path:
    options, changes = VARIANTS[name]
    folder = llama_folder(sp_model, out / name, **options)
    cfg_path = folder / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    changes = copy.deepcopy(changes)
    if "added_tokens_decoder" in changes:
        cfg.setdefault("added_tokens_decoder", {}).update(changes.pop("added_tokens_decoder"))
    cfg.update(changes)
    cfg_path.write_text(json.dumps(cfg, ensure_ascii=False), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def pair(
    request: pytest.FixtureRequest, sp_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[HFCounter, Any]:
    folder = _build(sp_model, tmp_path_factory.mktemp("sp-folders"), request.param)
    return load_hf_folder(folder), transformers.AutoTokenizer.from_pretrained(str(folder))


def _oracle_chat(ref: Any, messages: list[dict[str, str]]) -> int:
    ids = ref.apply_chat_template(copy.deepcopy(messages), tokenize=True, return_dict=False)
    return len(ids)


CHATS = [
    [{"role": "user", "content": "Hello there"}],
    [{"role": "user", "content": " leading space"}, {"role": "assistant", "content": "ok "}],
    [
        {"role": "system", "content": "你是一个助手。"},
        {"role": "user", "content": "你好 世界\n\n第二行"},
        {"role": "assistant", "content": "😀 龘"},
        {"role": "user", "content": "<s> typed special </s> tokens"},
    ],
]


@pytest.mark.parametrize("pair", list(VARIANTS), indirect=True)
def test_texts_count_as_transformers(pair: tuple[HFCounter, Any]) -> None:
    ours, ref = pair
    texts = SP_TEXTS + TEXTS
    expected = [len(ref.encode(t, add_special_tokens=False)) for t in texts]
    assert [ours.count(t) for t in texts] == expected
    assert ours.count_batch(texts) == expected
    # a raw prompt (completions endpoint): the post-processor's BOS as transformers adds it
    assert [ours.count(t, add_special_tokens=True) for t in texts] == [len(ref.encode(t)) for t in texts]


@pytest.mark.parametrize("pair", list(VARIANTS), indirect=True)
def test_chats_count_as_transformers(pair: tuple[HFCounter, Any]) -> None:
    ours, ref = pair
    expected = [_oracle_chat(ref, chat) for chat in CHATS]
    assert [ours.count_messages(chat) for chat in CHATS] == expected
    assert ours.count_batch([{"messages": chat} for chat in CHATS]) == expected


def test_a_leading_space_counts_once_on_a_transformers_4_llama_folder(sp_model: Path, tmp_path: Path) -> None:
    """The reported case: the file's Prepend normaliser doubles the "▁" of a leading space."""
    from tokenizers import Tokenizer

    folder = _build(sp_model, tmp_path, "non-legacy-v4-layout")
    ref = transformers.AutoTokenizer.from_pretrained(str(folder))
    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
    ours = load_hf_folder(folder)
    assert (
        len(raw.encode(" Hello", add_special_tokens=False).ids)
        == len(ref.encode(" Hello", add_special_tokens=False)) + 1
    )
    assert ours.count(" Hello") == len(ref.encode(" Hello", add_special_tokens=False))
    assert ours.loaded_as and "LlamaTokenizer" in ours.loaded_as[0]


def test_prepend_scheme_follows_transformers() -> None:
    assert prepend_scheme({}) == "first"
    assert prepend_scheme({"legacy": True}) == "always"
    assert prepend_scheme({"legacy": None, "add_prefix_space": None}) == "first"
    assert prepend_scheme({"legacy": True, "add_prefix_space": False}) == "never"
    assert prepend_scheme({"legacy": False, "add_prefix_space": True}) == "first"


def test_a_byte_level_file_declared_llama_is_used_as_written(tmp_path: Path) -> None:
    """DeepSeek V3's config says LlamaTokenizerFast over a byte-level file: no rebuild, as in transformers."""
    from tests.support import tokenizer_source

    src = Path(tokenizer_source("deepseek_v3"))
    assert (
        "Llama" in json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))["tokenizer_class"]
    )
    assert load_hf_folder(src).loaded_as == ()


def test_the_changes_are_in_the_fingerprint(sp_model: Path, tmp_path: Path) -> None:
    a = _build(sp_model, tmp_path / "a", "legacy-v4-layout")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    cfg = json.loads((b / "tokenizer_config.json").read_text(encoding="utf-8"))
    cfg["legacy"] = False
    (b / "tokenizer_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    assert load_hf_folder(a).fingerprint != load_hf_folder(b).fingerprint


_PIECES = [
    " ",
    "  ",
    "\n",
    "\t",
    "a",
    "Hello",
    "the",
    "你",
    "好世界",
    "😀",
    "龘",
    "<s>",
    "</s>",
    "<unk>",
    "1",
    ".",
]


@pytest.mark.parametrize("pair", ["legacy-v4-layout", "non-legacy-v4-layout", "gemma-class"], indirect=True)
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(st.sampled_from(_PIECES), max_size=12), tail=st.text(max_size=8))
def test_random_texts_count_as_transformers(pair: tuple[HFCounter, Any], parts: list[str], tail: str) -> None:
    ours, ref = pair
    text = "".join(parts) + tail
    cleaned = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    assert ours.count(text) == len(ref.encode(cleaned, add_special_tokens=False))
