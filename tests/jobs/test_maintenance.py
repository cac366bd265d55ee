"""Retention: raw logs, quarantined lines and stale staging folders."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from llmtally._exceptions import ConfigError
from llmtally.jobs.maintenance import Retention, purge_raw_logs, purge_staging


def _file(path: Path, age_days: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"id": "x"}\n')
    t = time.time() - age_days * 86400
    os.utime(path, (t, t))
    return path


def test_purge_raw_logs_deletes_only_old_log_files(tmp_path: Path) -> None:
    old = _file(tmp_path / "svc-a" / "usage-a-h-1-20260101T000000-1.jsonl", 20)
    old_gz = _file(tmp_path / "svc-a" / "usage-a-h-1-20260101T000000-2.jsonl.gz", 30)
    new = _file(tmp_path / "svc-a" / "usage-a-h-1-20261120T000000-1.jsonl", 1)
    other = _file(tmp_path / "svc-a" / "notes.txt", 400)
    dry = purge_raw_logs([str(tmp_path / "*")], 14, dry_run=True)
    assert dry["deleted"] == 2 and old.exists()
    done = purge_raw_logs([str(tmp_path / "*")], 14)
    assert done["deleted"] == 2 and done["bytes"] > 0
    assert not old.exists() and not old_gz.exists() and new.exists() and other.exists()


def test_purge_staging_removes_stale_run_folders(tmp_path: Path) -> None:
    stale = tmp_path / "2026-11-01" / "manual_run"
    fresh = tmp_path / "2026-11-20" / "scheduled_run"
    for d, age in ((stale, 72), (fresh, 1)):
        d.mkdir(parents=True)
        t = time.time() - age * 3600
        os.utime(d, (t, t))
    assert purge_staging(48, str(tmp_path)) == 1
    assert not stale.exists() and not (tmp_path / "2026-11-01").exists() and fresh.exists()


def test_retention_from_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "llmtally.toml"
    cfg.write_text("[retention]\nraw_log_days = 7\nquarantine_days = 30\n", encoding="utf-8")
    monkeypatch.setenv("LLMTALLY_CONFIG", str(cfg))
    assert Retention.from_config() == Retention(raw_log_days=7, quarantine_days=30, staging_hours=48)
    cfg.write_text("[retention]\nraw_log_days = 0\n", encoding="utf-8")
    os.utime(cfg, (time.time() + 5, time.time() + 5))  # a new mtime: the config cache re-reads it
    with pytest.raises(ConfigError, match="raw_log_days"):
        Retention.from_config()
