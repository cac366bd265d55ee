"""Shared test fixtures (helpers importable from :mod:`tests.support`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import SHARED

os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED / "tiktoken"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared/ folder with the real tokenizer files."""
    return SHARED
