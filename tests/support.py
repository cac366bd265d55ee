"""Helpers shared by tests (importable as ``tests.support``).

Real tokenizer files live outside the project: ``$LLMTALLY_SHARED`` (default ``../shared`` relative to
the repository root) holds ``tokenizers/{qwen3,llama3_1,deepseek_v3}`` and ``tiktoken/``.  Elsewhere,
with internet, ``LLMTALLY_TEST_HUB=1`` makes the same tests load the same tokenizers by repo id.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("LLMTALLY_SHARED", REPO_ROOT.parent / "shared")).resolve()

HF_FAMILIES = {
    "qwen3": "Qwen/Qwen3-8B",
    "llama3_1": "meta-llama/Llama-3.1-8B-Instruct",
    "deepseek_v3": "deepseek-ai/DeepSeek-V3",
}


def tokenizer_source(family: str) -> str:
    """The shared folder of a tokenizer family, or its repo id when LLMTALLY_TEST_HUB=1."""
    if os.environ.get("LLMTALLY_TEST_HUB") == "1":
        return HF_FAMILIES[family]
    folder = SHARED / "tokenizers" / family
    if not (folder / "tokenizer.json").is_file():
        pytest.fail(f"tokenizer files missing at {folder}: set LLMTALLY_SHARED to the shared/ folder")
    return str(folder)


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[dict[str, str]]:
    """Set environment variables for a module-scoped fixture (``monkeypatch`` is function-scoped)."""
    mp = pytest.MonkeyPatch()
    for k, v in values.items():
        mp.setenv(k, v)
    try:
        yield values
    finally:
        mp.undo()
