"""Recount engines per process: preloaded once (a Celery worker's pool process), reused by every shard."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO_ROOT, SHARED


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "llmtally.toml"
    cfg.write_text(
        f'[models."qwen3-8b"]\ntokenizer = "{SHARED / "tokenizers" / "qwen3"}"\n\n'
        f'[models."broken"]\ntokenizer = "{tmp_path / "no-such-folder"}"\n',
        encoding="utf-8",
    )
    return cfg


def test_preload_models_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from llmtally.jobs._engines import preload_models

    monkeypatch.setenv("LLMTALLY_CONFIG", str(_config(tmp_path)))
    monkeypatch.delenv("LLMTALLY_PRELOAD_MODELS", raising=False)
    assert preload_models() == []
    assert preload_models("*") == ["qwen3-8b", "broken"]
    assert preload_models(" gpt-4o-mini , *, qwen3-8b,") == ["gpt-4o-mini", "qwen3-8b", "broken"]
    monkeypatch.setenv("LLMTALLY_PRELOAD_MODELS", "deepseek-chat")
    assert preload_models() == ["deepseek-chat"]


_CHILD = """
import json, os, sys
from llmtally.jobs._engines import engine_for, preload
took = preload(["qwen3-8b", "broken"])          # the pool process, before any task
pid = os.fork()                                  # Airflow runs each task in a fork of it
if pid == 0:
    eng, how = engine_for("qwen3-8b")
    n = eng.count_batch(["你好，世界"])[0]
    eng2, how2 = engine_for("qwen3-8b")
    print(json.dumps({"took": sorted(took), "how": [how, how2], "tokens": n, "same": eng is eng2}))
    sys.stdout.flush()
    os._exit(0)
os.waitpid(pid, 0)
"""


def test_a_forked_task_finds_the_preloaded_engine_and_a_bad_model_never_breaks_the_worker(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "LLMTALLY_CONFIG": str(_config(tmp_path)), "PYTHONPATH": str(REPO_ROOT / "include")}
    out = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    import json

    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["took"] == ["qwen3-8b"]  # the broken one was logged and left to the task that meets it
    assert got["how"] == ["preloaded", "preloaded"] and got["same"] is True
    from tokenizers import Tokenizer

    qwen = Tokenizer.from_file(str(SHARED / "tokenizers" / "qwen3" / "tokenizer.json"))
    assert got["tokens"] == len(qwen.encode("你好，世界", add_special_tokens=False).ids)
    assert "preload of broken failed" in out.stderr


def test_engines_are_loaded_once_per_process_and_per_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from llmtally.jobs._engines import engine_for

    monkeypatch.setenv("LLMTALLY_CONFIG", str(_config(tmp_path)))
    first, how = engine_for("qwen3-8b")
    again, how_again = engine_for("qwen3-8b")
    assert (how, how_again) == ("loaded", "reused") and first is again
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setenv("LLMTALLY_CONFIG", str(_config(other)))  # another llmtally.toml: another engine
    third, how_third = engine_for("qwen3-8b")
    assert how_third == "loaded" and third is not first
    with caplog.at_level(logging.WARNING), pytest.raises(Exception, match="no-such-folder"):
        engine_for("broken")  # a task that meets a broken model fails, saying why


_GPU_CHILD = """
import json, os, sys
from llmtally.jobs._engines import engine_for, preload, _tokenizers
took = preload(["qwen3-8b"])                     # [recount] engine = "gpu": the tokenizer only
base = next(iter(_tokenizers.values()))
pid = os.fork()
if pid == 0:                                     # the task: the registry is fresh after a fork ...
    from llmtally.tokens import _registry
    eng, how = engine_for("qwen3-8b")            # ... yet the engine is built over the preloaded one
    print(json.dumps({"took": sorted(took), "how": how, "same": eng.fingerprint == base.fingerprint,
                      "registry": _registry._default is None, "engine": eng.engine}))
    sys.stdout.flush()
    os._exit(0)
os.waitpid(pid, 0)
"""


def test_a_gpu_engine_is_built_after_the_fork_over_the_preloaded_tokenizer(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    cfg.write_text(
        cfg.read_text(encoding="utf-8") + '\n[recount]\nengine = "gpu"\ndevice = "cpu"\n', encoding="utf-8"
    )
    env = {**os.environ, "LLMTALLY_CONFIG": str(cfg), "PYTHONPATH": str(REPO_ROOT / "include")}
    out = subprocess.run(
        [sys.executable, "-c", _GPU_CHILD], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    import json

    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["took"] == ["qwen3-8b"] and got["how"] == "preloaded tokenizer" and got["same"] is True
    assert got["registry"] is True  # nothing was loaded again through the (fresh) registry
    assert got["engine"] in ("gpu", "tokenizers")  # the torch BPE on the CPU, or its exact fallback
