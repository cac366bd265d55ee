"""Bad input gets a clear error; odd but valid input is counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmtally._exceptions import InputError, TemplateError, TokenizerLoadError
from llmtally.tokens import load_hf_folder, load_tiktoken
from tests.support import tokenizer_source


@pytest.fixture(scope="module")
def qwen():  # type: ignore[no-untyped-def]
    return load_hf_folder(tokenizer_source("qwen3"))


def test_empty_text_is_zero(qwen) -> None:  # type: ignore[no-untyped-def]
    assert qwen.count("") == 0
    assert qwen.count_batch(["", "a"]) == [0, 1]
    assert load_tiktoken("gpt-4o").count("") == 0


def test_lone_surrogates_are_counted_as_replacement_characters(qwen) -> None:  # type: ignore[no-untyped-def]
    assert qwen.count("a\ud800b") == qwen.count("a\ufffdb")
    assert qwen.count_batch(["ok", "x\udfffy"]) == [qwen.count("ok"), qwen.count("x\ufffdy")]


def test_ten_megabyte_text(qwen) -> None:  # type: ignore[no-untyped-def]
    unit = "人工智能正在改变世界。Artificial intelligence is changing the world.\n"
    text = unit * (10_000_000 // len(unit.encode()) + 1)
    assert len(text.encode()) >= 10_000_000
    n = qwen.count(text)
    # the text is the unit repeated; a repeat count times the unit's tokens bounds it within one unit
    per_unit = qwen.count(unit)
    reps = text.count(unit)
    assert abs(n - per_unit * reps) <= reps  # merges across the newline boundary may differ
    assert n > 1_000_000


def test_missing_folder_and_files(tmp_path: Path) -> None:
    with pytest.raises(TokenizerLoadError, match="not a folder"):
        load_hf_folder(tmp_path / "nope")
    with pytest.raises(TokenizerLoadError, match=r"no tokenizer\.json"):
        load_hf_folder(tmp_path)


def test_broken_tokenizer_files(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(TokenizerLoadError, match=r"not a valid tokenizer\.json"):
        load_hf_folder(tmp_path)
    (tmp_path / "tokenizer.json").write_text(
        Path(tokenizer_source("llama3_1"), "tokenizer.json").read_text(encoding="utf-8"), encoding="utf-8"
    )
    (tmp_path / "tokenizer_config.json").write_text("[1, 2", encoding="utf-8")
    with pytest.raises(TokenizerLoadError, match="cannot read"):
        load_hf_folder(tmp_path)


def test_folder_without_template_counts_text_but_not_chats(tmp_path: Path) -> None:
    src = Path(tokenizer_source("llama3_1"))
    (tmp_path / "tokenizer.json").write_bytes((src / "tokenizer.json").read_bytes())
    counter = load_hf_folder(tmp_path)
    assert counter.count("hello") == 1
    with pytest.raises(TokenizerLoadError, match="no chat template"):
        counter.count_messages([{"role": "user", "content": "hi"}])


def test_chat_template_jinja_file_takes_precedence(tmp_path: Path) -> None:
    src = Path(tokenizer_source("qwen3"))
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / f).write_bytes((src / f).read_bytes())
    (tmp_path / "chat_template.jinja").write_text(
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}",
        encoding="utf-8",
    )
    counter = load_hf_folder(tmp_path)
    assert counter.render([{"role": "user", "content": "hi"}]) == "<|im_start|>user\nhi<|im_end|>\n"
    assert counter.fingerprint != load_hf_folder(src).fingerprint


def test_template_raise_exception_is_a_template_error(tmp_path: Path) -> None:
    src = Path(tokenizer_source("qwen3"))
    (tmp_path / "tokenizer.json").write_bytes((src / "tokenizer.json").read_bytes())
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps({"chat_template": "{{ raise_exception('roles must alternate') }}"}), encoding="utf-8"
    )
    with pytest.raises(TemplateError, match="roles must alternate"):
        load_hf_folder(tmp_path).count_messages([{"role": "user", "content": "x"}])


def test_malformed_messages(qwen) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match="empty"):
        qwen.count_messages([])
    with pytest.raises(InputError, match="not an object"):
        qwen.count_messages(["just a string"])
    with pytest.raises(InputError):
        qwen.count_batch([{"text": "no messages key"}])
    with pytest.raises(InputError, match="must be a string"):
        qwen.count(123)


def test_template_sandbox_blocks_escapes(tmp_path: Path) -> None:
    src = Path(tokenizer_source("qwen3"))
    (tmp_path / "tokenizer.json").write_bytes((src / "tokenizer.json").read_bytes())
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps({"chat_template": "{{ messages.__class__.__mro__ }}"}), encoding="utf-8"
    )
    with pytest.raises(TemplateError):
        load_hf_folder(tmp_path).count_messages([{"role": "user", "content": "x"}])
