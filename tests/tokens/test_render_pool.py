"""Large chat batches render in worker processes: same counts, same errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmtally._exceptions import TemplateError
from llmtally.tokens import _hf, load_hf_folder
from tests.support import tokenizer_source
from tests.tokens.corpus import CHATS, TEXTS


@pytest.fixture
def small_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_hf, "_POOL_MIN", 4)
    monkeypatch.setattr(_hf, "_CHUNK", 3)
    monkeypatch.setenv("LLMTALLY_RENDER_PROCESSES", "2")


@pytest.mark.parametrize("family", ["qwen3", "deepseek_v3"])
def test_pool_counts_equal_inline_counts(family: str, small_pool: None) -> None:
    src = tokenizer_source(family)
    inline = load_hf_folder(src, segment_cache=False)
    pooled = load_hf_folder(src)
    items = [x for pair in zip(CHATS * 3, TEXTS * 2, strict=False) for x in pair] + CHATS
    try:
        got = pooled.count_batch(items)
        assert pooled._pool is not None  # the worker processes really rendered
    finally:
        if pooled._pool is not None:
            pooled._pool.close()
    expected = [inline.count(it) if isinstance(it, str) else inline.count_batch([it])[0] for it in items]
    assert got == expected


def test_template_error_in_a_worker_reaches_the_caller(tmp_path: Path, small_pool: None) -> None:
    src = Path(tokenizer_source("qwen3"))
    (tmp_path / "tokenizer.json").write_bytes((src / "tokenizer.json").read_bytes())
    template = "{% if messages[0].content == 'BOOM' %}{{ raise_exception('no boom') }}{% endif %}{{ messages[0].content }}"
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}), encoding="utf-8")
    counter = load_hf_folder(tmp_path)
    items = [{"messages": [{"role": "user", "content": "ok"}]}] * 6 + [
        {"messages": [{"role": "user", "content": "BOOM"}]}
    ]
    try:
        with pytest.raises(TemplateError, match="no boom"):
            counter.count_batch(items)
    finally:
        if counter._pool is not None:
            counter._pool.close()
