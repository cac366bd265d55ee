"""``llmtally count --engine … --device …``: same input, same output as without the flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmtally.cli import main
from tests.support import tokenizer_source
from tests.tokens.corpus import CHATS, TEXTS


@pytest.mark.parametrize("model", ["qwen3", "gpt-4o"])
def test_engine_flags_change_nothing_but_the_path(tmp_path: Path, model: str) -> None:
    pytest.importorskip("torch")
    src = tokenizer_source(model) if model == "qwen3" else model
    lines = [{"id": i, "text": t} for i, t in enumerate(TEXTS)] + [
        {"id": f"c{i}", **c} for i, c in enumerate(CHATS) if "tools" not in c
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n", encoding="utf-8")
    runner = CliRunner()
    plain = runner.invoke(main, ["count", "-t", src, "--jsonl", str(path)], catch_exceptions=False)
    assert plain.exit_code == 0
    for flags in (["--engine", "tokenizers"], ["--engine", "cached"], ["--engine", "gpu", "--device", "cpu"]):
        res = runner.invoke(main, ["count", "-t", src, "--jsonl", str(path), *flags], catch_exceptions=False)
        assert res.exit_code == 0 and res.stdout == plain.stdout
        assert f"engine={flags[1]}" in res.stderr and "MB/s" in res.stderr
    one = runner.invoke(main, ["count", "-t", src, "--engine", "cached", "你好，世界"])
    assert one.stdout == runner.invoke(main, ["count", "-t", src, "你好，世界"]).stdout


def test_cuda_for_a_cpu_engine_is_a_usage_error() -> None:
    res = CliRunner().invoke(main, ["count", "-m", "gpt-4o", "--engine", "cached", "--device", "cuda", "hi"])
    assert res.exit_code == 1 and "runs on the CPU" in res.output
