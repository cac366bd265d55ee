"""Helpers shared by tests (importable as ``tests.support``).

Real tokenizer files live outside the project: ``$LLMTALLY_SHARED`` (default ``../shared`` relative to
the repository root) holds ``tokenizers/{qwen3,llama3_1,deepseek_v3}`` and ``tiktoken/``.  Elsewhere,
with internet, ``LLMTALLY_TEST_HUB=1`` makes the same tests load the same tokenizers by repo id.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import sysconfig
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


def build_wheel(src: Path, out: Path) -> Path:
    """Build the project's wheel from a copy of its sources (so no stale ``build/`` folder leaks in)."""
    copy = out / "src"
    copy.mkdir()
    for name in ("pyproject.toml", "setup.py", "setup.cfg", "MANIFEST.in", "README.md", "LICENSE"):
        if (src / name).is_file():
            shutil.copy2(src / name, copy / name)
    shutil.copytree(
        src / "include",
        copy / "include",
        ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "*.pyc", "build", "dist"),
    )
    dist = out / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, copy],
        check=True,
        capture_output=True,
        text=True,
    )
    (wheel,) = dist.glob("llmtally-*.whl")
    return wheel


def fresh_venv(path: Path, wheel: Path, *, share_deps: bool) -> Path:
    """A new virtual environment with ``wheel`` installed (no dependencies); with ``share_deps``
    this environment's packages are visible in it (a ``.pth`` file; the editable install is not)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", path], check=True)
    python = path / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if share_deps:
        deps = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
        Path(purelib, "_llmtally_test_deps.pth").write_text("\n".join(deps) + "\n", encoding="utf-8")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel],
        check=True,
        capture_output=True,
        text=True,
    )
    return python
