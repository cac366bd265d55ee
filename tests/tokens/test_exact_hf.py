"""Counts equal transformers' on the real tokenizer files: difference 0, for every family."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from llmtally.tokens import HFCounter, load_hf_folder
from tests.support import tokenizer_source
from tests.tokens.corpus import CHATS, TEXTS

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def pair(request: pytest.FixtureRequest) -> tuple[HFCounter, Any]:
    src = tokenizer_source(request.param)
    return load_hf_folder(src), transformers.AutoTokenizer.from_pretrained(src)


def _oracle_chat(ref: Any, chat: dict[str, Any]) -> int:
    out = ref.apply_chat_template(
        copy.deepcopy(chat["messages"]),
        tools=chat.get("tools"),
        add_generation_prompt=chat.get("add_generation_prompt", True),
        tokenize=True,
        return_dict=False,
        **chat.get("template_kwargs", {}),
    )
    return len(out)


FAMILIES = ["qwen3", "llama3_1", "deepseek_v3"]


@pytest.mark.parametrize("pair", FAMILIES, indirect=True)
def test_text_counts_are_exact(pair: tuple[HFCounter, Any]) -> None:
    ours, ref = pair
    for text in TEXTS:
        expected = len(ref.encode(text, add_special_tokens=False))
        assert ours.count(text) == expected, f"difference on {text[:40]!r}"
    assert ours.count_batch(TEXTS) == [len(ref.encode(t, add_special_tokens=False)) for t in TEXTS]
    # a raw prompt (completions endpoint) gets the post-processor's specials, e.g. Llama's BOS
    assert [ours.count(t, add_special_tokens=True) for t in TEXTS] == [len(ref.encode(t)) for t in TEXTS]


@pytest.mark.parametrize("pair", FAMILIES, indirect=True)
def test_chat_counts_are_exact(pair: tuple[HFCounter, Any]) -> None:
    ours, ref = pair
    expected = [_oracle_chat(ref, chat) for chat in CHATS]
    got = [
        ours.count_messages(
            chat["messages"],
            tools=chat.get("tools"),
            add_generation_prompt=chat.get("add_generation_prompt", True),
            **chat.get("template_kwargs", {}),
        )
        for chat in CHATS
    ]
    assert [g - e for g, e in zip(got, expected, strict=True)] == [0] * len(CHATS)
    assert ours.count_batch(CHATS) == expected


@pytest.mark.parametrize("pair", FAMILIES, indirect=True)
def test_rendered_prompt_equals_transformers(pair: tuple[HFCounter, Any]) -> None:
    ours, ref = pair
    for chat in CHATS:
        kwargs = chat.get("template_kwargs", {})
        agp = chat.get("add_generation_prompt", True)
        theirs = ref.apply_chat_template(
            copy.deepcopy(chat["messages"]),
            tools=chat.get("tools"),
            add_generation_prompt=agp,
            tokenize=False,
            **kwargs,
        )
        assert (
            ours.render(chat["messages"], tools=chat.get("tools"), add_generation_prompt=agp, **kwargs)
            == theirs
        )


def test_qwen3_strips_earlier_reasoning_and_counts_it() -> None:
    counter = load_hf_folder(tokenizer_source("qwen3"))
    chat = CHATS[3]["messages"]
    rendered = counter.render(chat)
    assert "简单的加法" not in rendered  # earlier turn's <think> dropped by the template
    # a naive count of message contents over-counts the stripped reasoning
    naive = sum(counter.count(m["content"]) for m in chat)
    assert counter.count_messages(chat) != naive


def test_special_token_typed_by_user_is_one_token() -> None:
    counter = load_hf_folder(tokenizer_source("qwen3"))
    assert counter.count("<|im_end|>") == 1
    assert counter.count("<|im_end |>") > 1


def test_enable_thinking_false_adds_empty_think_block() -> None:
    counter = load_hf_folder(tokenizer_source("qwen3"))
    msgs = [{"role": "user", "content": "hi"}]
    assert counter.count_messages(msgs, enable_thinking=False) > counter.count_messages(msgs)
