"""Recount shards: every record the parse took is read back by exactly one shard, whatever the size."""

from __future__ import annotations

import gzip
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from llmtally import ConfigError, InputError
from llmtally.pipeline import DayParser
from llmtally.pipeline.shards import (
    DEFAULT_SHARD_RECORDS,
    ShardPlanner,
    merge_recount_summaries,
    read_shard,
    shard_records,
)

DAY = date(2026, 11, 20)
TZ = "Asia/Kolkata"  # a half-hour zone: the day rule is the parse's


def _rec(i: int, hour: int = 10, **extra: Any) -> dict[str, Any]:
    return {"v": 1, "id": f"{i:032x}", "ts": f"2026-11-20T{hour:02d}:00:00+05:30", "service": "api",
            "model": "m", "messages": [{"role": "user", "content": f"问题 {i} " * (i % 5 + 1)}],
            "usage": {"prompt_tokens": 10 + i, "completion_tokens": 2}, **extra}  # fmt: skip


def _day_logs(root: Path) -> list[str]:
    """Three files: plain, gzip and plain again, with every kind of line the parse meets."""
    a = [json.dumps(_rec(i)) for i in range(0, 9)]
    a.insert(3, "not json at all")  # quarantined
    a.insert(5, json.dumps(_rec(100, hour=23) | {"ts": "2026-11-21T01:00:00+05:30"}))  # another day
    a.insert(6, "")  # blank
    b = [json.dumps(_rec(i)) for i in range(9, 20)]
    b.insert(2, json.dumps(_rec(4)))  # a duplicate of a record of the first file
    b.insert(7, json.dumps({"v": 1, "kind": "loss", "id": "f" * 32, "ts": "2026-11-20T10:00:00+05:30",
                            "service": "api", "host": "h", "pid": 1, "records": 3,
                            "from": "2026-11-20T10:00:00+05:30", "to": "2026-11-20T10:01:00+05:30",
                            "reason": "disk full"}))  # fmt: skip
    c = [json.dumps(_rec(i)) for i in range(20, 26)] + [json.dumps(_rec(13))]  # a duplicate again
    root.mkdir(parents=True, exist_ok=True)
    (root / "a.jsonl").write_text("\n".join(a) + "\n", encoding="utf-8")
    with gzip.open(root / "b.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write("\n".join(b) + "\n")
    (root / "c.jsonl").write_text(
        "\n".join(c) + "\n" + json.dumps(_rec(99))[:40], encoding="utf-8"
    )  # partial
    return [str(root / n) for n in ("a.jsonl", "b.jsonl.gz", "c.jsonl")]


def _parse(
    files: list[str], size: int, *, until: Any = None, at_most: int | None = None
) -> tuple[list[str], Any]:
    parser = DayParser(DAY, TZ, until=until, derive=False)  # as the parse task reads
    planner = ShardPlanner(size)
    ids = []
    for r in parser.parse(files):
        ids.append(r.id)
        planner.add(r.source, parser.offset, parser.next_offset, r.line)
    return ids, planner.shards(ids, at_most=at_most)


def _own(ids: list[str], shard: Any) -> list[str]:
    return ids[shard.first : shard.first + shard.count]


@pytest.mark.parametrize("size", [1, 2, 7, 26, 1000])
def test_each_record_is_read_back_by_exactly_one_shard(tmp_path: Path, size: int) -> None:
    files = _day_logs(tmp_path / "logs")
    ids, shards = _parse(files, size)
    assert len(ids) == 26 and len(set(ids)) == 26
    assert len(shards) == -(-26 // size)
    assert [s.first for s in shards] == list(range(0, 26, size))
    assert all(s.count == min(size, 26 - s.first) for s in shards)
    taken: list[str] = []
    full = {r.id: r for r in DayParser(DAY, TZ).parse(files)}
    for shard in shards:
        got = list(read_shard(shard, _own(ids, shard), DAY, TZ))
        assert [r.id for r in got] == ids[shard.first : shard.first + shard.count]
        for r in got:  # the same record as the whole-day parse read, line number included
            assert r == full[r.id]
        taken += [r.id for r in got]
    assert taken == ids


def test_a_shard_reads_only_its_own_bytes(tmp_path: Path) -> None:
    files = _day_logs(tmp_path / "logs")
    _, shards = _parse(files, 7)
    size = {f: len(gzip.decompress(Path(f).read_bytes()) if f.endswith(".gz") else Path(f).read_bytes())
            for f in files}  # fmt: skip
    read = sum(span.end - span.start for s in shards for span in s.spans)
    assert read < sum(size.values())  # the other-day, partial and trailing lines are never re-read
    for s in shards:
        assert len({span.file for span in s.spans}) == len(s.spans)  # one range per file
        for span in s.spans:
            assert 0 <= span.start < span.end <= size[span.file]


def test_an_empty_day_still_has_one_shard() -> None:
    (shard,) = ShardPlanner(5).shards([])
    assert (shard.index, shard.first, shard.count, tuple(shard.spans)) == (0, 0, 0, ())
    assert list(read_shard(shard, [], DAY, TZ)) == []


def test_a_shard_that_does_not_fit_the_staged_ids_is_an_error(tmp_path: Path) -> None:
    files = _day_logs(tmp_path / "logs")
    ids, shards = _parse(files, 7)
    with pytest.raises(InputError, match="clear the run from parse on"):
        list(read_shard(shards[-1], ids[:5], DAY, TZ))  # as many ids, other ones
    with pytest.raises(InputError, match="clear the run from parse on"):
        list(read_shard(shards[0], ids[:6], DAY, TZ))  # fewer


def test_shards_coalesce_to_airflows_mapping_limit(tmp_path: Path) -> None:
    files = _day_logs(tmp_path / "logs")
    ids, shards = _parse(files, 1, at_most=5)  # 26 shards of one record merge pairwise: 13, 7, 4
    assert len(shards) == 4 and [s.index for s in shards] == [0, 1, 2, 3]
    assert sum(s.count for s in shards) == 26 and [s.first for s in shards] == [0, 8, 16, 24]
    full = {r.id: r for r in DayParser(DAY, TZ).parse(files)}
    taken = []
    for shard in shards:
        assert len({span.file for span in shard.spans}) == len(shard.spans)
        taken += [r.id for r in read_shard(shard, _own(ids, shard), DAY, TZ) if r == full[r.id]]
    assert taken == ids


def test_a_cut_day_and_files_that_grow_after_parse(tmp_path: Path) -> None:
    """An intraday cut: the shards read what parse took before the cut, though the files have grown
    since (records appended, a partial line completed)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    files = _day_logs(tmp_path / "logs")
    until = datetime(2026, 11, 20, 10, 30, tzinfo=ZoneInfo(TZ))
    with open(files[0], "a", encoding="utf-8") as fh:  # records before and after the cut, appended later
        fh.write(json.dumps(_rec(200, hour=9)) + "\n" + json.dumps(_rec(201, hour=11)) + "\n")
    ids, shards = _parse(files, 3, until=until)
    expected = [r.id for r in DayParser(DAY, TZ, until=until).parse(files)]
    assert ids == expected and f"{200:032x}" in ids and f"{201:032x}" not in ids
    with open(files[2], "a", encoding="utf-8") as fh:  # grows after parse: the partial line completed
        fh.write(', "x": 1}\n' + json.dumps(_rec(202, hour=9)) + "\n")
    with open(files[0], "a", encoding="utf-8") as fh:
        fh.write(json.dumps(_rec(203, hour=9)) + "\n")
    taken = [r.id for s in shards for r in read_shard(s, _own(ids, s), DAY, TZ, until=until)]
    assert taken == ids


def test_the_shard_size_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "llmtally.toml"
    cfg.write_text("[recount]\nshard_records = 5000\n")
    monkeypatch.setenv("LLMTALLY_CONFIG", str(cfg))
    monkeypatch.delenv("LLMTALLY_SHARD_RECORDS", raising=False)
    assert shard_records() == 5000
    monkeypatch.setenv("LLMTALLY_SHARD_RECORDS", "7")  # the environment wins
    assert shard_records() == 7
    for bad in ("0", "-3", "lots"):
        monkeypatch.setenv("LLMTALLY_SHARD_RECORDS", bad)
        with pytest.raises(ConfigError, match="LLMTALLY_SHARD_RECORDS must be a whole number"):
            shard_records()
    monkeypatch.delenv("LLMTALLY_SHARD_RECORDS")
    cfg.write_text('[recount]\nshard_records = "big"\n')
    with pytest.raises(ConfigError, match=r"\[recount\] shard_records must be a whole number"):
        shard_records()
    cfg.write_text("")
    assert shard_records() == DEFAULT_SHARD_RECORDS
    with pytest.raises(ValueError, match="shard size"):
        ShardPlanner(0)


def test_shard_summaries_merge_into_the_days() -> None:
    one = {"shard": 1, "records": 5, "reused": 1, "status": {"ok": 4, "error": 1}, "unknown_models": ["x"],
           "engines": {"m": {"engine": "fast", "device": "cpu", "records": 4, "seconds": 0.5, "fallback": None}},
           "loaded": {"m": "loaded"}, "host": "gpu-1", "pid": 7, "seconds": 2.0}  # fmt: skip
    zero = {"shard": 0, "records": 3, "reused": 0, "status": {"ok": 3}, "unknown_models": [],
            "engines": {"m": {"engine": "fast", "device": "cpu", "records": 3, "seconds": 0.25, "fallback": None},
                        "n": {"engine": "tokenizers", "device": "cpu", "records": 0, "seconds": 0.0,
                              "fallback": "why"}},
            "loaded": {"m": "preloaded", "n": "preloaded"}, "host": "gpu-2", "pid": 8, "seconds": 3.0}  # fmt: skip
    merged = merge_recount_summaries([one, zero])
    assert merged["records"] == 8 and merged["reused"] == 1
    assert merged["status"] == {"ok": 7, "error": 1} and merged["unknown_models"] == ["x"]
    assert merged["engines"]["m"]["records"] == 7 and merged["engines"]["m"]["seconds"] == 0.75
    assert merged["engines"]["n"]["fallback"] == "why"
    assert merged["seconds"] == 3.0  # the shards ran side by side: the slowest one
    assert [s["shard"] for s in merged["shards"]] == [0, 1]
    assert merged["shards"][0] == {"shard": 0, "records": 3, "seconds": 3.0, "host": "gpu-2", "pid": 8,
                                   "loaded": {"m": "preloaded", "n": "preloaded"}}  # fmt: skip
