"""Fixtures for the usage-logger tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmtally.logging import MemorySink, UsageLogger
from tests.logging.openai_server import Server, serve


def read_records(directory: Path) -> list[dict[str, Any]]:
    """Every complete record under ``directory`` (a trailing partial line is skipped, as readers must)."""
    out = []

    def order(path: Path) -> tuple[int, int]:  # usage-<service>-<host>-<pid>-<stamp>-<seq>.jsonl
        parts = path.stem.split("-")
        return int(parts[-3]), int(parts[-1])

    for path in sorted(directory.glob("usage-*.jsonl"), key=order):
        data = path.read_bytes()
        out.extend(json.loads(line) for line in data.split(b"\n")[:-1])
    return out


def memory_records(sink: MemorySink) -> list[dict[str, Any]]:
    return [json.loads(line) for line in sink.lines()]


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
def logger(sink: MemorySink) -> Iterator[UsageLogger]:
    """A logger writing into memory; always closed."""
    lg = UsageLogger(service="test-svc", sink=sink, schedule_delay=0.05)
    try:
        yield lg
    finally:
        lg.close(timeout=5)


@pytest.fixture(scope="session")
def openai_server() -> Iterator[Server]:
    with serve() as server:
        yield server
