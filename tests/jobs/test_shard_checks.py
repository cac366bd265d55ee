"""What a recount shard and the merge refuse rather than bill wrong: another price book than parse's,
a partial left by an earlier parse of the run, a file cut since parse; and a record nested too deep
to hash is still billed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmtally import InputError
from llmtally.jobs import daily
from llmtally.jobs._staging import ParseIndex, Staging
from llmtally.store import DayLoad


def _logs(tmp_path: Path, n: int = 6) -> Path:
    logs = tmp_path / "logs" / "api"
    logs.mkdir(parents=True)
    lines = []
    for i in range(n):
        content = f"问题 {i}"
        lines.append(json.dumps(
            {"v": 1, "id": f"{i:032x}", "ts": "2026-11-20T10:00:00+00:00", "service": "api", "model": "m",
             "text": "full", "messages": [{"role": "user", "content": content}],
             "usage": {"prompt_tokens": 10 + i, "completion_tokens": 2}},
        ))  # fmt: skip
    (logs / "usage-api-h-1-20261120T100000-1.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return logs


def _plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shard_records: str = "2") -> dict[str, object]:
    monkeypatch.setenv("LLMTALLY_SHARD_RECORDS", shard_records)
    monkeypatch.setenv("LLMTALLY_STAGING_DIR", str(tmp_path / "staging"))
    cfg = tmp_path / "llmtally.toml"
    if not cfg.exists():
        cfg.write_text("", encoding="utf-8")
    monkeypatch.setenv("LLMTALLY_CONFIG", str(cfg))
    return daily.plan({"day": "2026-11-20", "sources": [str(tmp_path / "logs" / "*")]}, run_id="t")


def test_a_shard_refuses_another_price_book_than_parse_fixed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _logs(tmp_path)
    p = _plan(tmp_path, monkeypatch)
    assert daily.parse(p, daily.collect(p))["shards"] == [0, 1, 2]
    daily.recount(p, 0)
    (tmp_path / "llmtally.toml").write_text(  # a worker whose llmtally.toml prices the model
        '[models."m"]\ntokenizer = "gpt-4o"\nprice = { currency = "USD", input = "1", output = "2" }\n',
        encoding="utf-8",
    )
    with pytest.raises(InputError, match="price book"):
        daily.recount(p, 1)


def test_the_merge_refuses_a_partial_of_an_earlier_parse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logs = _logs(tmp_path)
    p = _plan(tmp_path, monkeypatch)
    daily.parse(p, daily.collect(p))
    daily.reconcile(p, daily.recount(p))
    stage = Staging(str(p["staging"]))
    assert stage.read("dayload", DayLoad).quality.records == 6
    # the log is rewritten with other records and parse re-runs, but the recount is not cleared
    (logs / "usage-api-h-1-20261120T100000-1.jsonl").unlink()
    _logs(tmp_path / "again")
    for f in (tmp_path / "again" / "logs" / "api").iterdir():
        f.replace(logs / f.name.replace("-1.jsonl", "-2.jsonl"))
    text = (logs / "usage-api-h-1-20261120T100000-2.jsonl").read_text(encoding="utf-8")
    (logs / "usage-api-h-1-20261120T100000-2.jsonl").write_text(text.replace('"id": "0000', '"id": "ffff'))
    daily.parse(p, daily.collect(p))
    with pytest.raises(InputError, match="does not fit the staged parse"):
        daily.reconcile(p, [])


def test_a_file_cut_after_parse_fails_its_shard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    logs = _logs(tmp_path)
    p = _plan(tmp_path, monkeypatch, shard_records="3")
    daily.parse(p, daily.collect(p))
    (f,) = logs.iterdir()
    f.write_text("\n".join(f.read_text(encoding="utf-8").splitlines()[:4]) + "\n", encoding="utf-8")
    daily.recount(p, 0)  # its three records are still there
    with pytest.raises(InputError, match="found 1 of the 3 records"):
        daily.recount(p, 1)


def test_a_record_too_deep_to_hash_is_billed_all_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """json's encoder gives up on text nested about a thousand levels deep, where its decoder (a few
    frames shallower) did not: the digest is left out, the record is billed.  The encoder's limit
    depends on the stack depth, so it is made to give up on the first record here."""
    import llmtally.pipeline.parse as parse_module

    derive = parse_module.derived_prompt_fields

    def too_deep(messages: object, *args: object, **kwargs: object) -> object:
        if "问题 0" in json.dumps(messages, ensure_ascii=False):
            raise RecursionError("maximum recursion depth exceeded while encoding a JSON object")
        return derive(messages, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(parse_module, "derived_prompt_fields", too_deep)
    _logs(tmp_path)
    p = _plan(tmp_path, monkeypatch, shard_records="100")
    parsed = daily.parse(p, daily.collect(p))
    assert parsed["records"] == 6 and parsed["quarantined"] == 0
    daily.reconcile(p, daily.recount(p))
    load = Staging(str(p["staging"])).read("dayload", DayLoad)
    assert load.quality.records == 6 and sum(r.requests for r in load.hourly) == 6
    assert sum(r.prompt_tokens for r in load.hourly) == sum(10 + i for i in range(6))
    assert Staging(str(p["staging"])).read("parse", ParseIndex).shards[0].count == 6
