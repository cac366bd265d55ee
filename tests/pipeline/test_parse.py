"""The day parser: day cut in the report zone, quarantine, partial lines, gzip, duplicates, legacy lines."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from llmtally import UsageLogger
from llmtally._record import prompt_digest
from llmtally.pipeline import DayParser, parse_day

DAY = date(2026, 11, 20)
CANARY = "CANARY-parse-机密"


def rec(rid: str, ts: str, **extra: object) -> bytes:
    body = {
        "v": 1,
        "id": rid,
        "ts": ts,
        "service": "svc",
        "model": "qwen3-8b",
        "usage": {"prompt_tokens": 10, "completion_tokens": 5},
        **extra,
    }
    return (json.dumps(body, ensure_ascii=False) + "\n").encode()


def test_day_is_cut_at_local_midnight(tmp_path: Path) -> None:
    f = tmp_path / "a.jsonl"
    f.write_bytes(
        rec("a1", "2026-11-19T15:59:59.999+00:00")  # 23:59:59.999 on the 19th in Shanghai
        + rec("a2", "2026-11-19T16:00:00+00:00")  # 00:00 on the 20th
        + rec("a3", "2026-11-20T23:30:00+08:00")
        + rec("a4", "2026-11-20T16:00:00Z")  # 00:00 on the 21st
        + rec("a5", "2026-11-20T12:00:00")  # naive: the configured zone
    )
    parsed = parse_day([f], DAY, "Asia/Shanghai")
    assert [r.id for r in parsed.records] == ["a2", "a3", "a5"]
    assert parsed.stats.out_of_day == 2
    assert parsed.records[2].ts == datetime(2026, 11, 20, 4, tzinfo=UTC)
    utc_day = parse_day([f], DAY, "UTC")
    assert [r.id for r in utc_day.records] == ["a3", "a4", "a5"]


def test_malformed_lines_are_quarantined_without_text(tmp_path: Path) -> None:
    f = tmp_path / "bad.jsonl"
    lines = [
        rec("ok1", "2026-11-20T10:00:00+08:00", messages=[{"role": "user", "content": CANARY}]),
        b"{broken " + CANARY.encode() + b"\n",
        b'{"ts": "2026-11-20T10:00:00+08:00"}\n',
        rec("bad-ts", "not a time"),
        rec("neg", "2026-11-20T10:00:00+08:00", usage={"prompt_tokens": -1}),
        rec("tags", "2026-11-20T10:00:00+08:00", tags=["x"]),
        b"\xff\xfe not utf-8\n",
        rec("choices", "2026-11-20T10:00:00+08:00", choices=["x"]),
        rec("inputs", "2026-11-20T10:00:00+08:00", inputs=[{"a": 1}]),
        b"plain text line " + CANARY.encode() + b"\n",
        b"   \n",
    ]
    f.write_bytes(b"".join(lines))
    parser = DayParser(DAY)
    records = list(parser.parse([f]))
    assert [r.id for r in records] == ["ok1"]
    assert parser.stats.quarantined == 9 and parser.stats.blank_lines == 1
    assert [q.line for q in parser.quarantine] == [2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert parser.quarantine[0].line_sha256 == hashlib.sha256(lines[1]).hexdigest()[:16]
    reasons = [q.reason for q in parser.quarantine]
    assert reasons[:3] == ["invalid JSON", "missing or invalid id", "ts is not an ISO 8601 timestamp"]
    assert "negative" in reasons[3] and reasons[5] == "not UTF-8"
    assert reasons[6:8] == [
        "choices is not a list of objects",
        "inputs is not a list of strings or token-id lists",
    ]
    assert all(CANARY not in repr(q) for q in parser.quarantine)


def test_partial_trailing_line_is_skipped_not_quarantined(tmp_path: Path) -> None:
    f = tmp_path / "live.jsonl"
    f.write_bytes(rec("p1", "2026-11-20T10:00:00+08:00") + rec("p2", "2026-11-20T10:00:00+08:00")[:-9])
    parsed = parse_day([f], DAY)
    assert [r.id for r in parsed.records] == ["p1"]
    assert parsed.stats.partial_lines == 1 and parsed.stats.quarantined == 0 and parsed.stats.lines == 2


def test_gzip_files_and_duplicates_across_files(tmp_path: Path) -> None:
    a = tmp_path / "usage-1.jsonl.gz"
    a.write_bytes(
        gzip.compress(rec("g1", "2026-11-20T10:00:00+08:00") + rec("g2", "2026-11-20T11:00:00+08:00"))
    )
    b = tmp_path / "usage-2.jsonl"
    b.write_bytes(rec("g2", "2026-11-20T11:00:00+08:00") + rec("g3", "2026-11-20T12:00:00+08:00"))
    cut = tmp_path / "usage-3.jsonl.gz"
    cut.write_bytes(gzip.compress(rec("g4", "2026-11-20T12:00:00+08:00") * 50)[:-20])
    parsed = parse_day([a, b, cut], DAY)
    assert [r.id for r in parsed.records][:3] == ["g1", "g2", "g3"]
    assert parsed.stats.duplicates >= 1
    assert parsed.stats.quarantined == 1 and parsed.quarantine[0].reason == "corrupt or truncated gzip stream"


def test_legacy_recipe_lines(tmp_path: Path) -> None:
    f = tmp_path / "app.log.1"
    epoch = datetime(2026, 11, 20, 2, 0, 0, 500000, tzinfo=UTC).timestamp()
    f.write_text(
        f"2026-11-20 10:00:00,500 - {{'prompt': '写一篇3000字的文章', 'prompt_tokens': 12, 'completion_tokens': 30, 'total_tokens': 42, 'timestamp': {epoch}}}\n"
        "2026-11-20 11:00:00,000 - {'prompt': 'hi', 'prompt_tokens': 3, 'completion_tokens': 4, 'total_tokens': 7, 'timestamp': '2026-11-20T11:00:00'}\n"
        "2026-11-20 12:00:00,250 - {'prompt': 'no stamp', 'prompt_tokens': 1, 'completion_tokens': 2, 'total_tokens': 3}\n"
        "2026-11-20 12:00:00,250 - {'prompt': 'no stamp', 'prompt_tokens': 1, 'completion_tokens': 2, 'total_tokens': 3}\n"
        "2026-11-20 13:00:00,000 - {'prompt': (lambda: 1)(), 'prompt_tokens': 1}\n"
        "2026-11-20 13:00:00,000 - {'prompt': 'x', 'prompt_tokens': 'many', 'completion_tokens': 1}\n"
        "2026-11-20 13:00:00,000 - INFO something else happened\n",
        encoding="utf-8",
    )
    parsed = parse_day([f], DAY)
    recs = parsed.records
    assert [r.ts for r in recs] == [
        datetime(2026, 11, 20, 2, 0, 0, 500000, tzinfo=UTC),
        datetime(2026, 11, 20, 3, tzinfo=UTC),
        datetime(2026, 11, 20, 4, 0, 0, 250000, tzinfo=UTC),
    ]
    assert all(r.legacy and not r.has_prompt_text and r.prompt is None for r in recs)
    assert recs[0].estimated_prompt_tokens == 12 and recs[0].estimated_completion_tokens == 30
    assert recs[0].reported_prompt_tokens is None and recs[0].service == tmp_path.name
    assert parsed.stats.duplicates == 1 and parsed.stats.quarantined == 3 and parsed.stats.legacy_records == 3


def test_loss_markers_of_the_day_are_counted_not_quarantined(tmp_path: Path) -> None:
    def marker(rid: str, start: str, records: int, **extra: Any) -> dict[str, Any]:
        return {"v": 1, "kind": "loss", "id": rid, "ts": start, "service": "svc", "host": "h", "pid": 1,
                "records": records, "from": start, "to": start, "reason": "disk full", **extra}  # fmt: skip

    lines = [
        marker("m1", "2026-11-20T01:00:00+00:00", 7),
        marker("m1", "2026-11-20T01:00:00+00:00", 7),  # the same marker again (a copied file)
        marker("m2", "2026-11-19T23:59:59+00:00", 3, to="2026-11-20T00:00:05+00:00"),  # dated by from
        marker("m3", "2026-11-20T02:00:00+00:00", -1),  # malformed: quarantined
        {"v": 1, "id": "r1", "ts": "2026-11-20T03:00:00+00:00", "kind": "chat", "model": "m"},  # a record
    ]
    f = tmp_path / "usage-svc-h-1-20261120T000000-1.jsonl"
    f.write_text("".join(json.dumps(x) + "\n" for x in lines))
    parser = DayParser(date(2026, 11, 20), "UTC")
    assert [r.id for r in parser.parse([f])] == ["r1"]
    s = parser.stats
    assert (s.records, s.loss_markers, s.lost_records, s.duplicates, s.out_of_day, s.quarantined) == (
        1, 1, 7, 1, 1, 1,
    )  # fmt: skip
    assert parser.quarantine[0].reason == "loss marker: records is not a count"
    (e,) = parser.losses
    assert (e.service, e.host, e.records, e.reason) == ("svc", "h", 7, "disk full")
    assert e.first_ts == e.last_ts == datetime(2026, 11, 20, 1, tzinfo=UTC)
    previous = DayParser(date(2026, 11, 19), "UTC")
    list(previous.parse([f]))
    assert previous.stats.lost_records == 3 and previous.losses[0].last_ts.day == 20


MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": [{"type": "text", "text": "你好"}, {"type": "image_url", "image_url": {}}]},
    {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "function": {"arguments": "{}"}}]},
]
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"minimum": 1e-05}}}]


def test_full_records_without_digest_get_the_loggers_digest_derived(tmp_path: Path) -> None:
    """The logger leaves ``prompt_sha256`` and ``prompt_chars`` out of full-text records; the parser
    derives them from the text (the value the logger would have written), keeps them where a record
    carries them (older records, hash mode), and derives nothing for text that is gone or cut."""
    logs = tmp_path / "logs"
    with UsageLogger(logs, service="svc") as lg:
        lg.log(model="m", messages=MESSAGES, tools=TOOLS, completion="好", ts="2026-11-20T01:00:00+00:00")
        lg.log(model="m", prompt="plain prompt", completion="好", ts="2026-11-20T01:00:01+00:00")
    raw = [json.loads(line) for p in logs.iterdir() for line in p.read_bytes().splitlines()]
    assert all("prompt_sha256" not in r and "prompt_chars" not in r for r in raw)  # left out ...
    f = tmp_path / "more.jsonl"
    f.write_bytes(
        rec("old", "2026-11-20T02:00:00Z", text="full", prompt="p", prompt_sha256="ab" * 32, prompt_chars=99)
        + rec("hash", "2026-11-20T02:00:01Z", text="hash", prompt_sha256="cd" * 32, prompt_chars=7)
        + rec("cut", "2026-11-20T02:00:02Z", text="prefix:2", prompt="pl")
        + rec("other-day", "2026-11-21T02:00:00Z", text="full", prompt="p")
    )
    parsed = parse_day([*logs.iterdir(), f], DAY, "UTC")
    by_id = {r.id: r for r in parsed.records}
    chat, plain = (r for r in parsed.records if r.source != str(f))
    assert chat.prompt_sha256 == prompt_digest(MESSAGES, None, TOOLS)  # ... and derived exactly
    assert chat.prompt_chars == len("Be brief.") + len("你好")
    assert (plain.prompt_sha256, plain.prompt_chars) == (prompt_digest(None, "plain prompt", None), 12)
    assert chat.completion_chars == plain.completion_chars == 1  # still written by the logger
    assert (by_id["old"].prompt_sha256, by_id["old"].prompt_chars) == ("ab" * 32, 99)
    assert (by_id["hash"].prompt_sha256, by_id["hash"].prompt_chars) == ("cd" * 32, 7)
    assert (by_id["cut"].prompt_sha256, by_id["cut"].prompt_chars) == (None, None)
    # the parse task, which only fixes the day's ids, leaves the derivation to the recount shards
    lean = {r.id: r for r in DayParser(DAY, "UTC", derive=False).parse([*logs.iterdir(), f])}
    assert [lean[r.id].prompt_sha256 for r in (chat, plain)] == [None, None]
    assert lean["old"].prompt_sha256 == "ab" * 32  # what a record carries is read either way
    assert [dataclasses.replace(lean[r.id], prompt_sha256=r.prompt_sha256, prompt_chars=r.prompt_chars)
            for r in parsed.records] == parsed.records  # fmt: skip


def test_a_nan_in_the_text_is_hashed_as_json_wrote_it(tmp_path: Path) -> None:
    f = tmp_path / "nan.jsonl"
    messages = [{"role": "user", "content": "x", "score": float("nan")}]
    f.write_bytes(
        rec("n1", "2026-11-20T02:00:00Z", text="full", messages=messages)
        + rec("n2", "2026-11-20T02:00:01Z", text="full", messages=[{"role": "user", "content": "x"}])
    )
    first, second = parse_day([f], DAY, "UTC").records
    assert first.prompt_sha256 == prompt_digest(messages) and first.prompt_chars == 1
    assert second.prompt_sha256 == prompt_digest([{"role": "user", "content": "x"}])  # flag reset
