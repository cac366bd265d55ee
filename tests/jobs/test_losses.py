"""The daily job's tasks carry the services' loss markers from parse, through staging, to the load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmtally import ConfigError
from llmtally.jobs import daily
from llmtally.jobs._staging import ParseIndex, Staging
from llmtally.store import DayLoad


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMTALLY_STAGING_DIR", str(tmp_path / "staging"))
    monkeypatch.setenv("LLMTALLY_TIMEZONE", "UTC")
    monkeypatch.delenv("LLMTALLY_CONFIG", raising=False)


def test_loss_markers_go_from_parse_through_staging_into_the_day_load(tmp_path: Path) -> None:
    logs = tmp_path / "logs" / "api"
    logs.mkdir(parents=True)
    lines = [
        {"v": 1, "id": "a" * 32, "ts": "2026-11-20T10:00:00+00:00", "service": "api", "model": "m",
         "usage": {"prompt_tokens": 10, "completion_tokens": 2}},
        {"v": 1, "kind": "loss", "id": "b" * 32, "ts": "2026-11-20T10:00:01+00:00", "service": "api",
         "host": "web-1", "pid": 7, "records": 300, "from": "2026-11-20T10:00:01+00:00",
         "to": "2026-11-20T10:02:00+00:00", "reason": "disk full"},
        {"v": 1, "kind": "loss", "id": "c" * 32, "ts": "2026-11-20T10:03:00+00:00", "service": "api",
         "host": "web-1", "pid": 7, "records": 12, "from": "2026-11-20T10:03:00+00:00",
         "to": "2026-11-20T10:03:30+00:00", "reason": "disk full"},
    ]  # fmt: skip
    (logs / "usage-api-web-1-7-20261120T100000-1.jsonl").write_text(
        "".join(json.dumps(x) + "\n" for x in lines)
    )
    p = daily.plan({"day": "2026-11-20", "sources": [str(tmp_path / "logs" / "*")]}, run_id="t")
    parsed = daily.parse(p, daily.collect(p))
    assert (parsed["records"], parsed["loss_markers"], parsed["lost_records"], parsed["quarantined"]) == (
        1, 2, 312, 0,
    )  # fmt: skip
    stage = Staging(p["staging"])
    assert [e.records for e in stage.read("parse", ParseIndex).losses] == [300, 12]
    daily.reconcile(p, daily.recount(p))
    load = stage.read("dayload", DayLoad)
    assert load.quality.lost_records == 312 and load.quality.loss_markers == 2
    ((e),) = load.losses  # two markers three minutes apart: one episode
    assert (e.service, e.host, e.records, e.reason) == ("api", "web-1", 312, "disk full")
    assert e.first_ts.isoformat() == "2026-11-20T10:00:01+00:00"
    assert e.last_ts.isoformat() == "2026-11-20T10:03:30+00:00"


def test_cardinality_limits_from_the_config_fold_users_through_the_tasks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "llmtally.toml"
    cfg.write_text("[cardinality]\nusers_per_day = 2\n")
    monkeypatch.setenv("LLMTALLY_CONFIG", str(cfg))
    assert daily.cardinality_limits() == {"user_id": 2, "tenant": 100_000}
    logs = tmp_path / "logs" / "api"
    logs.mkdir(parents=True)
    lines = [
        {"v": 1, "id": f"{i:032x}", "ts": "2026-11-20T10:00:00+00:00", "service": "api", "model": "m",
         "tags": {"user": f"random-{i}"}, "usage": {"prompt_tokens": 10 + i, "completion_tokens": 2}}
        for i in range(5)
    ]  # fmt: skip
    (logs / "usage-api-web-1-7-20261120T100000-1.jsonl").write_text(
        "".join(json.dumps(x) + "\n" for x in lines)
    )
    p = daily.plan({"day": "2026-11-20", "sources": [str(tmp_path / "logs" / "*")]}, run_id="t")
    daily.parse(p, daily.collect(p))
    stage = Staging(p["staging"])
    daily.reconcile(p, daily.recount(p))
    load = stage.read("dayload", DayLoad)
    assert sorted(h.user_id for h in load.hourly) == ["(other)", "random-3", "random-4"]
    ((fold),) = load.folds
    assert (fold.service, fold.dimension, fold.limit, fold.distinct, fold.folded, fold.requests) == (
        "api", "user_id", 2, 5, 3, 3,
    )  # fmt: skip
    assert fold.tokens == 10 + 11 + 12 + 3 * 2 and load.quality.folded_values == 3
    for bad in ("users_per_day = 0", "users_per_day = true", "people_per_day = 5"):
        cfg.write_text(f"[cardinality]\n{bad}\n")
        with pytest.raises(ConfigError, match=r"\[cardinality\]"):
            daily.cardinality_limits()
