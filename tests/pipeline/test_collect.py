"""Collecting log files from directories, globs and the environment."""

from __future__ import annotations

import os
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from llmtally import ConfigError
from llmtally.pipeline import collect, is_log_file, resolve_sources


def touch(path: Path, when: datetime | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}\n")
    if when is not None:
        os.utime(path, (when.timestamp(), when.timestamp()))
    return path


def test_file_kinds() -> None:
    for ok in ["usage-a-b-1-20261120T000000-0.jsonl", "x.jsonl.gz", "app.log", "app.log.3", "app.log.12.gz"]:
        assert is_log_file(ok), ok
    for bad in [".hidden.jsonl", "notes.txt", "app.log.bak", "x.json", "app.logs"]:
        assert not is_log_file(bad), bad


def test_dirs_globs_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = touch(tmp_path / "host-a" / "usage-1.jsonl")
    b = touch(tmp_path / "host-a" / "sub" / "app.log.1")
    touch(tmp_path / "host-a" / "readme.txt")
    c = touch(tmp_path / "host-b" / "usage-2.jsonl.gz")
    explicit = touch(tmp_path / "odd-name.txt")
    got = collect([str(tmp_path / "host-a"), str(tmp_path / "host-*"), str(explicit), str(tmp_path / "gone")])
    assert got.paths == sorted(map(str, [a, b, c, explicit]))
    assert got.missing_sources == [str(tmp_path / "gone")]
    assert got.bytes == 12
    monkeypatch.setenv(
        "LLMTALLY_LOG_DIRS", os.pathsep.join([str(tmp_path / "host-a"), str(tmp_path / "host-b")])
    )
    assert collect().paths == sorted(map(str, [a, b, c]))
    assert resolve_sources(f" {tmp_path} {os.pathsep}") == [str(tmp_path)]
    monkeypatch.setenv("LLMTALLY_LOG_DIRS", "")
    with pytest.raises(ConfigError, match="LLMTALLY_LOG_DIRS"):
        collect()


def test_files_modified_before_the_day_are_skipped(tmp_path: Path) -> None:
    zone = ZoneInfo("Asia/Shanghai")
    old = touch(tmp_path / "old.jsonl", datetime(2026, 11, 18, 23, 0, tzinfo=zone))
    edge = touch(tmp_path / "edge.jsonl", datetime(2026, 11, 19, 0, 30, tzinfo=zone))
    new = touch(tmp_path / "new.jsonl", datetime(2026, 11, 21, 1, 0, tzinfo=zone))
    got = collect([str(tmp_path)], day=date(2026, 11, 20), tz="Asia/Shanghai")
    assert got.paths == sorted(map(str, [edge, new]))  # one day of slack keeps edge
    assert [f.path for f in got.skipped] == [str(old)]
    assert collect([str(tmp_path)]).paths == sorted(map(str, [edge, new, old]))
