"""The registry: config entries, built-in aliases, Hub cache, tiktoken, errors, thread safety."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from llmtally import tokens
from llmtally._config import load_config
from llmtally._exceptions import ConfigError, TokenizerLoadError, UnknownModelError
from llmtally.tokens import Registry, load_hf_folder
from tests.support import tokenizer_source


def _config(tmp_path: Path, body: str) -> Registry:
    cfg = tmp_path / "llmtally.toml"
    cfg.write_text(body, encoding="utf-8")
    return Registry(load_config(cfg))


def test_config_entry_points_at_a_folder_with_template_defaults(tmp_path: Path) -> None:
    folder = tokenizer_source("qwen3")
    reg = _config(
        tmp_path,
        f'[models."qwen3-local"]\ntokenizer = "{folder}"\ntemplate_kwargs = {{ enable_thinking = false }}\n',
    )
    counter = reg.load("qwen3-local")
    direct = load_hf_folder(folder)
    msgs = [{"role": "user", "content": "你好"}]
    assert counter.count_messages(msgs) == direct.count_messages(msgs, enable_thinking=False)
    assert counter.fingerprint == direct.fingerprint


def test_repo_id_redirected_to_a_folder_serves_every_alias(tmp_path: Path) -> None:
    reg = _config(tmp_path, f'[models."Qwen/Qwen3-8B"]\ntokenizer = "{tokenizer_source("qwen3")}"\n')
    res = reg.resolve("qwen-plus-2025-07-28")
    assert res.kind == "folder"
    assert res.chain == ("qwen-plus-2025-07-28", "Qwen/Qwen3-8B", tokenizer_source("qwen3"))
    assert reg.load("qwen-plus") is reg.load("qwen3-32b")


def test_relative_tokenizer_path_is_relative_to_the_config_file(tmp_path: Path, shared_dir: Path) -> None:
    shutil.copytree(shared_dir / "tokenizers" / "llama3_1", tmp_path / "tok" / "llama")
    reg = _config(tmp_path, '[models."my-llama"]\ntokenizer = "tok/llama"\n')
    assert reg.resolve("my-llama").target == str((tmp_path / "tok" / "llama").resolve())


def test_openai_names_resolve_to_tiktoken() -> None:
    reg = Registry(load_config(None))
    assert reg.resolve("gpt-4o-2024-08-06").target == "o200k_base"
    assert reg.resolve("gpt-4.1-mini").target == "o200k_base"
    assert reg.resolve("o3").target == "o200k_base"
    assert reg.resolve("gpt-3.5-turbo").target == "cl100k_base"
    assert reg.resolve("openai/gpt-4o").target == "o200k_base"


def test_builtin_aliases() -> None:
    reg = Registry(load_config(None))
    assert reg.resolve("qwen-max").target == "Qwen/Qwen3-8B"
    assert reg.resolve("DeepSeek-Chat").target == "deepseek-ai/DeepSeek-V3"
    assert reg.resolve("meta-llama/Llama-3.1-8B-Instruct").kind == "hub"


def test_unknown_model_says_how_to_point_at_a_tokenizer() -> None:
    reg = Registry(load_config(None))
    with pytest.raises(UnknownModelError) as info:
        reg.resolve("my-secret-model")
    assert isinstance(info.value, KeyError)
    assert "llmtally.toml" in str(info.value) and "--tokenizer" in str(info.value)


def test_alias_loop_is_a_config_error(tmp_path: Path) -> None:
    reg = _config(tmp_path, '[models.a]\ntokenizer = "b"\n[models.b]\ntokenizer = "a"\n')
    with pytest.raises(ConfigError, match="loop"):
        reg.resolve("a")


def test_config_entry_needs_a_tokenizer_or_a_price(tmp_path: Path) -> None:
    cfg = tmp_path / "llmtally.toml"
    cfg.write_text('[models."x"]\ntemplate_kwargs = {}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="tokenizer"):
        load_config(cfg)
    # a price-only entry is fine and does not make the model countable
    cfg.write_text(
        '[models."x"]\nprice = { currency = "CNY", input = "1", output = "2" }\n', encoding="utf-8"
    )
    reg = Registry(load_config(cfg))
    with pytest.raises(UnknownModelError):
        reg.resolve("x")


def _hf_cache(root: Path, repo_id: str, folder: str) -> Path:
    org, name = repo_id.split("/")
    repo = root / f"models--{org}--{name}"
    snap = repo / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(folder, snap)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(snap.name)
    return root


def test_repo_id_loads_from_the_hugging_face_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hf_constants

    cache = _hf_cache(tmp_path / "hub", "Qwen/Qwen3-8B", tokenizer_source("qwen3"))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    reg = Registry(load_config(None))
    counter = reg.load("qwen-plus")  # qwen-plus -> Qwen/Qwen3-8B -> the cached snapshot
    assert counter.fingerprint == load_hf_folder(tokenizer_source("qwen3")).fingerprint


def test_repo_id_offline_and_not_cached_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(TokenizerLoadError, match="not in the Hugging Face cache"):
        Registry(load_config(None)).load("deepseek-ai/DeepSeek-V3")


def test_tokenizer_dirs_are_searched_before_the_hub(
    tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(shared_dir / "tokenizers" / "deepseek_v3", tmp_path / "deepseek-ai" / "DeepSeek-V3")
    monkeypatch.setenv("LLMTALLY_TOKENIZER_DIRS", str(tmp_path))
    counter = Registry(load_config(None)).load("deepseek-chat")
    assert counter.count("<｜User｜>") == 1


def test_concurrent_loads_share_one_counter(tmp_path: Path) -> None:
    reg = _config(tmp_path, f'[models."m"]\ntokenizer = "{tokenizer_source("llama3_1")}"\n')
    results: list[object] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        results.append(reg.load("m"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and all(r is results[0] for r in results)


def test_default_registry_reads_llmtally_config_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "custom.toml"
    cfg.write_text(f'[models."env-model"]\ntokenizer = "{tokenizer_source("qwen3")}"\n', encoding="utf-8")
    monkeypatch.setenv("LLMTALLY_CONFIG", str(cfg))
    assert tokens.Registry().resolve("env-model").kind == "folder"
