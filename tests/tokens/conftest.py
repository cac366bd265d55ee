"""Token tests keep recount caches (pre-tokens, engine choice) in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path_factory.mktemp("llmtally-cache")
    monkeypatch.setenv("LLMTALLY_CACHE_DIR", str(path))
    return path


@pytest.fixture(scope="session")
def sp_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small SentencePiece BPE model with byte fallback, trained here (well under a second)."""
    pytest.importorskip("sentencepiece")
    from tests.tokens.spm_folders import train_sentencepiece

    return train_sentencepiece(tmp_path_factory.mktemp("spm") / "sp.model")
