"""Budget tests run against both stores: the in-memory double and a real PostgreSQL schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def store(any_store: Any) -> Iterator[Any]:
    """Each store backend in turn (see ``any_store``)."""
    yield any_store
