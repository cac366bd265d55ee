"""``llmtally count`` through click's CliRunner, with real tokenizers."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from llmtally.cli import main
from llmtally.tokens import load_hf_folder, load_tiktoken
from tests.support import tokenizer_source
from tests.tokens.corpus import CHATS, TEXTS


def _run(*args: str, input: bytes | str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def test_count_text_argument_and_stdin() -> None:
    qwen = tokenizer_source("qwen3")
    res = _run("count", "--tokenizer", qwen, "你好，世界！")
    assert res.exit_code == 0 and res.stdout.strip() == str(load_hf_folder(qwen).count("你好，世界！"))
    res = _run("count", "--model", "gpt-4o", "--json", input="hello world")
    assert json.loads(res.stdout) == {"tokens": 2}


def test_count_messages_and_tools_files(tmp_path: Path) -> None:
    chat = CHATS[8]
    (tmp_path / "m.json").write_text(json.dumps(chat["messages"], ensure_ascii=False), encoding="utf-8")
    (tmp_path / "t.json").write_text(json.dumps(chat["tools"], ensure_ascii=False), encoding="utf-8")
    src = tokenizer_source("qwen3")
    res = _run(
        "count", "-t", src, "--messages", str(tmp_path / "m.json"), "--tools", str(tmp_path / "t.json")
    )
    assert res.exit_code == 0
    assert int(res.stdout) == load_hf_folder(src).count_messages(chat["messages"], tools=chat["tools"])


def test_jsonl_batch_in_order_with_ids(tmp_path: Path) -> None:
    lines = [{"id": f"t{i}", "text": t} for i, t in enumerate(TEXTS)] + [
        {"id": f"c{i}", **c} for i, c in enumerate(CHATS)
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n", encoding="utf-8")
    src = tokenizer_source("deepseek_v3")
    res = _run("count", "-t", src, "--jsonl", str(path))
    assert res.exit_code == 0
    out = [json.loads(x) for x in res.stdout.splitlines()]
    expected = load_hf_folder(src).count_batch([t for t in TEXTS] + [c for c in CHATS])
    assert [o["id"] for o in out] == [x["id"] for x in lines]
    assert [o["tokens"] for o in out] == expected
    assert "item(s)" in res.stderr and str(sum(expected)) in res.stderr


def test_malformed_line_names_the_line_and_prints_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n{"text": "fine"}\n{"text": oops}\n', encoding="utf-8")
    res = CliRunner().invoke(main, ["count", "-m", "gpt-4o", "--jsonl", str(path)])
    assert res.exit_code == 1
    assert "line 3" in res.stderr
    assert res.stdout == ""


def test_unknown_model_and_missing_selector() -> None:
    res = CliRunner().invoke(main, ["count", "--model", "no-such-model", "x"])
    assert res.exit_code == 1 and "llmtally.toml" in res.stderr
    res = CliRunner().invoke(main, ["count", "x"])
    assert res.exit_code == 2 and "--model" in res.stderr


def test_invalid_utf8_is_counted_with_replacement_characters() -> None:
    res = _run("count", "-m", "gpt-4o", input=b"ab\xff\xfecd")
    assert res.exit_code == 0
    assert int(res.stdout) == load_tiktoken("gpt-4o").count("ab\ufffd\ufffdcd")
    assert "invalid UTF-8" in res.stderr


def test_which_shows_resolution() -> None:
    res = _run("which", "gpt-4o-mini")
    assert res.exit_code == 0 and "o200k_base" in res.stdout
