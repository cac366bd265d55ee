"""``llmtally count --engine gpu|cached`` on SentencePiece-style folders: exact counts, and the
output says when the requested engine handed the model to ``tokenizers`` (issue 12 item 4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmtally.cli import main
from llmtally.tokens import load_hf_folder
from tests.tokens.corpus import CHATS, TEXTS
from tests.tokens.spm_folders import tokenizers_folder


@pytest.fixture(autouse=True)
def _private_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMTALLY_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("sp-cli")
    return {
        "unigram": str(tokenizers_folder(base / "unigram", kind="unigram")),
        "llama2-style": str(
            tokenizers_folder(
                base / "bpe", kind="bpe", config={"tokenizer_class": "LlamaTokenizer", "legacy": False}
            )
        ),
    }


def _jsonl(tmp_path: Path) -> Path:
    lines = [{"id": i, "text": t} for i, t in enumerate([*TEXTS, " Hello", "<s>Hi</s>  x"])] + [
        {"id": f"c{i}", **c} for i, c in enumerate(CHATS) if "tools" not in c
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n", encoding="utf-8")
    return path


# (folder, engine flags, whether the engine falls back)
CASES = [
    ("unigram", ["--engine", "gpu", "--device", "cpu"], True),
    ("unigram", ["--engine", "cached"], False),
    ("llama2-style", ["--engine", "gpu", "--device", "cpu"], True),
    ("llama2-style", ["--engine", "cached"], True),
]


@pytest.mark.parametrize(("name", "flags", "falls_back"), CASES)
def test_jsonl_counts_are_exact_and_say_the_fallback(
    folders: dict[str, str], tmp_path: Path, name: str, flags: list[str], falls_back: bool
) -> None:
    if "gpu" in flags:
        pytest.importorskip("torch")
    src = folders[name]
    path = _jsonl(tmp_path)
    runner = CliRunner()
    plain = runner.invoke(main, ["count", "-t", src, "--jsonl", str(path)], catch_exceptions=False)
    assert plain.exit_code == 0
    res = runner.invoke(main, ["count", "-t", src, "--jsonl", str(path), *flags], catch_exceptions=False)
    assert res.exit_code == 0 and res.stdout == plain.stdout
    items = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    batch = [x["text"] if "text" in x else {k: v for k, v in x.items() if k != "id"} for x in items]
    expected = load_hf_folder(src).count_batch(batch)
    assert [json.loads(x)["tokens"] for x in res.stdout.splitlines()] == expected
    requested = flags[1]
    if falls_back:
        assert (
            f"engine {requested} cannot count" in res.stderr
            and "counted with engine tokenizers" in res.stderr
        )
        assert f"requested engine={requested}, fell back:" in res.stderr
    else:
        assert "fell back" not in res.stderr and f"engine={requested}" in res.stderr
    summary = runner.invoke(
        main, ["count", "-t", src, "--jsonl", str(path), "--json", *flags], catch_exceptions=False
    )
    last = json.loads(summary.stderr.strip().splitlines()[-1])
    assert last["tokens"] == sum(expected) and last["items"] == len(items)
    assert last["engine"] == ("tokenizers" if falls_back else requested)
    assert ("fallback" in last) == falls_back
    if falls_back:
        assert last["requested_engine"] == requested


@pytest.mark.parametrize(("name", "flags", "falls_back"), CASES)
def test_json_summary_names_the_engine_and_the_fallback(
    folders: dict[str, str], name: str, flags: list[str], falls_back: bool
) -> None:
    if "gpu" in flags:
        pytest.importorskip("torch")
    src = folders[name]
    text = " 你好 world  <s>x"
    res = CliRunner().invoke(main, ["count", "-t", src, "--json", *flags, text], catch_exceptions=False)
    assert res.exit_code == 0
    out = json.loads(res.stdout)
    assert out["tokens"] == load_hf_folder(src).count(text)
    if falls_back:
        assert out["engine"] == "tokenizers" and out["requested_engine"] == flags[1]
        assert out["fallback"] and "cannot count" in res.stderr
    else:
        assert out["engine"] == flags[1] and "fallback" not in out


def test_json_without_engine_flags_stays_tokens_only(folders: dict[str, str]) -> None:
    res = CliRunner().invoke(
        main, ["count", "-t", folders["unigram"], "--json", "hi"], catch_exceptions=False
    )
    assert json.loads(res.stdout) == {"tokens": load_hf_folder(folders["unigram"]).count("hi")}
