"""UsageLogger: the record contract, files and rotation, overload, failures, lifecycle, privacy."""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import llmtally
from llmtally import ConfigError
from llmtally._record import prompt_chars, prompt_digest
from llmtally.logging import MemorySink, UsageLogger, get_default_logger, set_default_logger
from llmtally.logging._build import Pending, TextPolicy, build_record, record_line
from tests.logging.conftest import memory_records, read_records

MESSAGES = [
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": "今天天气怎么样？"},
]
NAME = re.compile(r"^usage-svc-[A-Za-z0-9_.]+-\d+-\d{8}T\d{6}-\d+\.jsonl$")


def _log(logger: UsageLogger, i: int = 0, **kw: Any) -> None:
    logger.log(
        model="qwen3-8b",
        messages=MESSAGES,
        completion=f"晴 {i}",
        usage={"prompt_tokens": 20, "completion_tokens": 3},
        **kw,
    )


def test_record_carries_the_contract(logger: UsageLogger, sink: MemorySink) -> None:
    before = time.time()
    logger.log(
        model="qwen3-8b", messages=MESSAGES, completion="晴", tools=[{"type": "function", "function": {"name": "f"}}],
        usage={"input_tokens": 20, "output_tokens": 2, "input_tokens_details": {"cached_tokens": 4}},
        estimate={"prompt_tokens": 18, "completion_tokens": 1}, tags={"feature": "chat"}, latency_ms=250.0,
        request_id="r1", finish_reason="stop", endpoint="chat.completions",
    )  # fmt: skip
    assert logger.flush(5)
    (rec,) = memory_records(sink)
    assert rec["v"] == 1 and re.fullmatch(r"[0-9a-f]{32}", rec["id"])
    ts = datetime.fromisoformat(rec["ts"])
    assert ts.utcoffset() is not None and ts.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert before - 0.25 - 0.01 <= ts.timestamp() <= time.time() - 0.25 + 0.01  # ts is the request start
    assert rec["service"] == "test-svc" and rec["pid"] == os.getpid() and rec["host"]
    assert rec["messages"] == MESSAGES and rec["completion"] == "晴" and rec["text"] == "full"
    # full text: the digest and the prompt's length are left to the reader, derived from the text
    assert "prompt_sha256" not in rec and "prompt_chars" not in rec and rec["completion_chars"] == 1
    assert prompt_digest(rec["messages"], None, rec["tools"]) == prompt_digest(MESSAGES, None, rec["tools"])
    assert prompt_chars(rec["messages"]) == len("You are helpful.") + len("今天天气怎么样？")
    assert rec["usage"] == {
        "prompt_tokens": 20,
        "completion_tokens": 2,
        "total_tokens": 22,
        "cached_tokens": 4,
        "reasoning_tokens": None,
    }
    assert rec["estimate"] == {"prompt_tokens": 18, "completion_tokens": 1}
    assert rec["tags"] == {"feature": "chat"} and rec["latency_ms"] == 250.0 and rec["status"] == "ok"
    assert (
        rec["request_id"] == "r1" and rec["finish_reason"] == "stop" and rec["endpoint"] == "chat.completions"
    )
    assert logger.stats() == {"logged": 1, "written": 1, "dropped": 0, "queued": 0}


def test_messages_appended_after_logging_are_not_recorded(logger: UsageLogger, sink: MemorySink) -> None:
    history = list(MESSAGES)
    logger.log(model="m", messages=history, completion="晴")
    history.append({"role": "assistant", "content": "晴"})
    assert logger.flush(5)
    assert memory_records(sink)[0]["messages"] == MESSAGES


def test_explicit_ts_and_extra_fields_cannot_forge_owned_keys(logger: UsageLogger, sink: MemorySink) -> None:
    logger.log(
        model="m",
        prompt="hi",
        ts=datetime(2026, 3, 1, 8, 0, tzinfo=UTC),
        id="forged",
        service="x",
        kind="loss",  # a caller cannot make a usage record look like a loss marker
        ttft_ms=None,
    )
    logger.log(model="m", prompt="hi", ts=1_700_000_000.5)
    assert logger.flush(5)
    a, b = memory_records(sink)
    assert (
        a["ts"] == "2026-03-01T08:00:00.000000+00:00" and a["id"] != "forged" and a["service"] == "test-svc"
    )
    assert "ttft_ms" not in a and "kind" not in a
    assert b["ts"] == "2023-11-14T22:13:20.500000+00:00"


@settings(max_examples=60, deadline=None)
@given(
    messages=st.lists(
        st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]), "content": st.text()}),
        max_size=4,
    ),
    tools=st.none() | st.lists(st.fixed_dictionaries({"name": st.text(max_size=5)}), max_size=2),
)
def test_the_line_is_the_record_and_derives_its_digest(messages: list[dict[str, str]], tools: Any) -> None:
    p = Pending(1.0, None, "m", messages, None, "c", tools, None, None, None, {}, None, "ok", None, None)
    line = record_line(p, rid="0" * 32, service="s", host="h", pid=1, policy=TextPolicy())
    rec = json.loads(line)
    built = build_record(p, rid="0" * 32, service="s", host="h", pid=1, policy=TextPolicy())
    assert (rec.pop("prompt_sha256", None), rec.pop("prompt_chars", None)) in (
        (None, None),  # left to the reader (the lean path) ...
        (built["prompt_sha256"], built["prompt_chars"]),  # ... or written (the general path)
    )
    assert rec == {k: v for k, v in built.items() if k not in ("prompt_sha256", "prompt_chars")}
    assert prompt_digest(rec["messages"], None, rec.get("tools")) == built["prompt_sha256"]
    assert built["prompt_sha256"] == prompt_digest(messages, None, tools)
    assert prompt_chars(rec["messages"]) == built["prompt_chars"]


def test_files_are_named_per_process_and_rotated_by_size(tmp_path: Path) -> None:
    with UsageLogger(
        tmp_path, service="svc", max_file_bytes=4096, schedule_delay=0.05, max_batch_size=16
    ) as lg:
        for i in range(400):
            _log(lg, i)
            if i % 50 == 0:
                lg.flush(5)
    files = sorted(tmp_path.iterdir())
    assert len(files) > 5
    for f in files:
        assert NAME.match(f.name), f.name
        data = f.read_bytes()
        # at most max_file_bytes, unless a single batch (<= 16 records) is larger
        assert data.endswith(b"\n") and (len(data) <= 4096 or data.count(b"\n") <= 16)
        assert oct(f.stat().st_mode & 0o777) == oct(0o640 & ~_umask())
    records = read_records(tmp_path)
    assert [r["completion"] for r in records] == [f"晴 {i}" for i in range(400)]
    assert lg.stats() == {"logged": 400, "written": 400, "dropped": 0, "queued": 0}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_files_rotate_by_time(tmp_path: Path) -> None:
    with UsageLogger(tmp_path, service="svc", rotate_seconds=0.2, schedule_delay=0.02) as lg:
        for i in range(5):
            _log(lg, i)
            lg.flush(5)
            time.sleep(0.21)
    assert len(list(tmp_path.iterdir())) == 5
    assert len(read_records(tmp_path)) == 5


@pytest.mark.parametrize("queue", [65536, 64], ids=["queued", "overflowing"])
def test_reader_sees_only_whole_records_while_writers_rotate(tmp_path: Path, queue: int) -> None:
    """With a queue of 64 most records are written by the four logging threads themselves
    (``on_full="write"``), racing the writer thread's batches and the size rotation."""
    n_threads, per_thread = 4, 3000
    lg = UsageLogger(
        tmp_path, service="svc", max_file_bytes=32 * 1024, schedule_delay=0.01, max_batch_size=64,
        max_queue_size=queue,
    )  # fmt: skip
    stop = threading.Event()
    seen_max = 0
    errors: list[str] = []

    def reader() -> None:
        nonlocal seen_max
        while not stop.is_set():
            count = 0
            for path in tmp_path.glob("usage-*.jsonl"):
                data = path.read_bytes()
                complete = data.split(b"\n")[:-1]  # a trailing partial line is not a record
                for line in complete:
                    try:
                        json.loads(line)
                    except ValueError as exc:
                        errors.append(f"{path.name}: {exc}: {line[:80]!r}")
                count += len(complete)
            seen_max = max(seen_max, count)

    def writer(t: int) -> None:
        for i in range(per_thread):
            _log(lg, i, tags={"thread": str(t)})

    rt = threading.Thread(target=reader)
    rt.start()
    writers = [threading.Thread(target=writer, args=(t,)) for t in range(n_threads)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    assert lg.close(10)
    stop.set()
    rt.join()
    assert errors == []
    records = read_records(tmp_path)
    assert len(records) == len({r["id"] for r in records}) == n_threads * per_thread
    assert len(list(tmp_path.iterdir())) > 3 and seen_max > 0
    assert lg.stats()["dropped"] == 0
    assert (lg._spilled > 1000) == (queue == 64)


class SlowSink(MemorySink):
    """A disk that takes 50 ms per write."""

    def write_batch(self, data: bytes, count: int) -> None:
        time.sleep(0.05)
        super().write_batch(data, count)


def test_drop_policy_keeps_memory_bounded_and_counts_drops_exactly(caplog: pytest.LogCaptureFixture) -> None:
    sink = SlowSink()
    lg = UsageLogger(
        service="svc", sink=sink, max_queue_size=500, max_batch_size=100, schedule_delay=0.01, on_full="drop"
    )
    longest = 0
    with caplog.at_level(logging.WARNING, logger="llmtally.logging"):
        for i in range(20_000):
            _log(lg, i)
            longest = max(longest, len(lg._queue))
    assert longest <= 500
    stats = lg.stats()
    assert stats["logged"] == 20_000 and stats["dropped"] > 10_000
    assert lg.close(10)
    stats = lg.stats()
    assert stats["written"] + stats["dropped"] == 20_000 and stats["queued"] == 0
    lines = [json.loads(x) for x in sink.lines()]
    markers = [x for x in lines if x.get("kind") == "loss"]
    assert stats["written"] == len(lines) - len(markers)
    assert sum(m["records"] for m in markers) == stats["dropped"]  # every drop is written down
    assert {m["reason"] for m in markers} == {"queue full"}
    full = [r for r in caplog.records if "dropping" in r.getMessage()]
    assert len(full) == 1  # warned at most once a minute


class FlakySink(MemorySink):
    """A disk that is full for the first ``failures`` writes."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def write_batch(self, data: bytes, count: int) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise OSError(errno.ENOSPC, "No space left on device")
        super().write_batch(data, count)


def test_store_errors_are_reported_once_retried_and_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    sink = FlakySink(failures=3)
    lg = UsageLogger(service="svc", sink=sink, schedule_delay=0.01)
    with caplog.at_level(logging.ERROR, logger="llmtally.logging"):
        for i in range(10):
            _log(lg, i)
        assert lg.flush(1) is False  # the disk is full: nothing raised, the batch is kept
        deadline = time.monotonic() + 5
        while not lg.flush(1):  # the writer thread and flush() retry the same batch
            assert time.monotonic() < deadline
        assert lg.close(5)
    assert [json.loads(x)["completion"] for x in sink.lines()] == [f"晴 {i}" for i in range(10)]
    assert lg.stats() == {"logged": 10, "written": 10, "dropped": 0, "queued": 0}
    assert len([r for r in caplog.records if "No space left" in r.getMessage()]) == 1


def test_unwritable_records_at_close_are_counted_dropped(caplog: pytest.LogCaptureFixture) -> None:
    lg = UsageLogger(service="svc", sink=FlakySink(failures=10**9), schedule_delay=0.01)
    for i in range(7):
        _log(lg, i)
    with caplog.at_level(logging.ERROR, logger="llmtally.logging"):
        assert lg.close(0.3) is False
    assert lg.stats() == {"logged": 7, "written": 0, "dropped": 7, "queued": 0}
    # nothing can be written, not even a loss marker: the log message is the only trace
    assert any("only trace" in r.getMessage() and " 7 " in r.getMessage() for r in caplog.records)


def test_bad_records_are_dropped_alone(logger: UsageLogger, sink: MemorySink) -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    logger.log(model="m", messages=[{"role": "user", "content": "lone \ud800 surrogate"}])
    logger.log(model="m", messages=[loop])
    logger.log(model="m", prompt="fine")
    assert logger.flush(5)
    recs = memory_records(sink)
    marker = next(r for r in recs if r.get("kind") == "loss")
    recs = [r for r in recs if r.get("kind") != "loss"]
    assert [r.get("prompt") for r in recs] == [None, "fine"]
    assert recs[0]["messages"][0]["content"] == "lone \ud800 surrogate"
    assert logger.stats() == {"logged": 3, "written": 2, "dropped": 1, "queued": 0}
    assert marker["records"] == 1 and marker["reason"] == "unserialisable record"


def test_log_after_close_drops_and_close_is_idempotent(sink: MemorySink) -> None:
    lg = UsageLogger(service="svc", sink=sink)
    _log(lg)
    assert lg.close() and lg.close()
    _log(lg)
    assert lg.stats() == {"logged": 2, "written": 1, "dropped": 1, "queued": 0}
    assert sink.closed and not lg._thread.is_alive()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_queue_size": 0},
        {"max_batch_size": -1},
        {"schedule_delay": 0},
        {"max_batch_size": 10, "max_queue_size": 5},
        {"text": "partial"},
        {"max_file_bytes": 0},
        {"on_full": "wait"},
        {"on_full": ""},
        {"block_timeout": 0},
    ],
)
def test_arguments_are_validated_at_construction(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        UsageLogger(tmp_path, service="svc", **kwargs)


def test_text_policies(monkeypatch: pytest.MonkeyPatch) -> None:
    tool_calls = [
        {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}
    ]
    digests = set()
    for text, check in [
        ("hash", lambda r: "messages" not in r and "completion" not in r and "prompt" not in r),
        (
            "prefix:3",
            lambda r: (
                r["messages"] == [{"role": "system", "content": "You"}, {"role": "user", "content": "今天天"}]
            ),
        ),
    ]:
        monkeypatch.setenv("LLMTALLY_LOG_TEXT", text)
        sink = MemorySink()
        with UsageLogger(service="svc", sink=sink) as lg:
            lg.log(
                model="m",
                messages=MESSAGES,
                completion="晴朗的一天",
                tools=[{"type": "function"}],
                tool_calls=tool_calls,
                reasoning="想一想",
            )
            lg.log(model="m", prompt="a long prompt")
        rec, plain = memory_records(sink)
        assert rec["text"] == text and check(rec) and "tools" not in rec
        assert rec["tool_calls"] == [{"type": "function", "function": {"name": "weather"}}]
        assert rec["prompt_chars"] == 24 and rec["completion_chars"] == 5
        digests.add(rec["prompt_sha256"])
        if text == "prefix:3":
            assert (
                rec["completion"] == "晴朗的"
                and rec["reasoning"] == "想一想"[:3]
                and plain["prompt"] == "a l"
            )
        else:
            assert "reasoning" not in rec and "prompt" not in plain
    assert digests == {prompt_digest(MESSAGES, None, [{"type": "function"}])}


def test_log_token_usage_is_the_recipe_drop_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMTALLY_LOG_DIR", str(tmp_path))
    monkeypatch.setenv("LLMTALLY_SERVICE", "svc")
    previous = set_default_logger(None)
    try:
        llmtally.log_token_usage("你好", "你好！有什么可以帮你？")
        llmtally.log_token_usage(
            MESSAGES, "晴", model="qwen3-8b", estimate={"prompt_tokens": 9, "completion_tokens": 1}
        )
        default = get_default_logger()
        assert default.close(5)
    finally:
        set_default_logger(previous)
    a, b = read_records(tmp_path)
    assert a["prompt"] == "你好" and a["completion"] == "你好！有什么可以帮你？" and a["service"] == "svc"
    assert b["messages"] == MESSAGES and b["model"] == "qwen3-8b" and b["estimate"]["prompt_tokens"] == 9


def test_atexit_writes_what_is_queued(tmp_path: Path) -> None:
    code = (
        "import llmtally\n"
        f"lg = llmtally.UsageLogger({str(tmp_path)!r}, service='svc', schedule_delay=60)\n"
        "for i in range(1000): lg.log(model='m', prompt=str(i))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert sorted(int(r["prompt"]) for r in read_records(tmp_path)) == list(range(1000))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_writes_its_own_file(tmp_path: Path) -> None:
    lg = UsageLogger(tmp_path, service="svc", schedule_delay=60)
    for i in range(10):
        lg.log(model="m", prompt=f"parent-before-{i}")
    pid = os.fork()
    if pid == 0:  # the child: queued records are the parent's; log its own, close, exit
        code = 1
        try:
            assert lg.stats()["logged"] == 0
            for i in range(5):
                lg.log(model="m", prompt=f"child-{i}")
            code = 0 if lg.close(10) and lg.stats()["written"] == 5 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    lg.log(model="m", prompt="parent-after")
    assert lg.close(10)
    records = read_records(tmp_path)
    by_pid: dict[int, list[str]] = {}
    for r in records:
        by_pid.setdefault(r["pid"], []).append(r["prompt"])
    assert sorted(by_pid[os.getpid()]) == sorted([f"parent-before-{i}" for i in range(10)] + ["parent-after"])
    assert by_pid[pid] == [f"child-{i}" for i in range(5)]
    assert len({p.name for p in tmp_path.iterdir()}) == 2


def test_retention_deletes_only_this_services_old_files(tmp_path: Path) -> None:
    from llmtally.logging._sinks import FileSink

    old_own = tmp_path / "usage-chat_api-otherhost-1-20260101T000000-1.jsonl"
    old_other = tmp_path / "usage-billing-h-1-20260101T000000-1.jsonl"
    recent_own = tmp_path / "usage-chat_api-h-2-20261120T000000-1.jsonl"
    for f in (old_own, old_other, recent_own):
        f.write_text('{"id": "x"}\n')
    stale = time.time() - 20 * 86400
    os.utime(old_own, (stale, stale))
    os.utime(old_other, (stale, stale))
    sink = FileSink(tmp_path, "chat-api", retention_days=14)
    sink.write_batch(b'{"id": "y"}\n', 1)
    sink.close()
    assert not old_own.exists()
    assert old_other.exists() and recent_own.exists() and sink.path is not None and sink.path.exists()
    with pytest.raises(ConfigError):
        FileSink(tmp_path, "x", retention_days=0)


@pytest.mark.parametrize("text", ["hash", "prefix:2"])
def test_text_policies_cover_every_choice_and_input(text: str) -> None:
    sink = MemorySink()
    with UsageLogger(service="svc", sink=sink, text=text) as lg:
        lg.log(
            model="m",
            messages=MESSAGES,
            completion="第一个回答",
            choices=[
                {"index": 0, "completion": "第一个回答", "finish_reason": "stop"},
                {"index": 1, "completion": "第二个回答", "reasoning": "想", "finish_reason": "length"},
            ],
        )
        lg.log(model="e", endpoint="embeddings", inputs=["秘密一号", [1, 2, 3]])
    chat, emb = memory_records(sink)
    assert chat["completion_chars"] == 10 and emb["prompt_chars"] == 4
    if text == "hash":
        assert all("completion" not in c and "reasoning" not in c for c in chat["choices"])
        assert "inputs" not in emb
    else:
        assert [c["completion"] for c in chat["choices"]] == ["第一", "第二"]
        assert emb["inputs"] == ["秘密", []]
    assert [c["finish_reason"] for c in chat["choices"]] == ["stop", "length"]
    assert "秘密一号" not in json.dumps(emb, ensure_ascii=False) and "回答" not in json.dumps(
        chat, ensure_ascii=False
    )


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=12,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    messages=st.lists(st.dictionaries(st.text(max_size=8), _json_values, max_size=4), max_size=3),
    tools=st.none() | st.lists(st.dictionaries(st.text(max_size=8), _json_values, max_size=3), max_size=2),
)
def test_orjson_and_json_write_the_same_canonical_text(messages: list[dict[str, Any]], tools: Any) -> None:
    """The writer's accelerator never changes a digest: written (json's canonical text, or orjson's
    where they agree) or derived from the line orjson wrote, it is prompt_digest's; the records are
    the same values."""
    from llmtally.logging import _build

    assert _build._orjson is not None, "the test environment installs llmtally[fast]"
    p = Pending(1.0, None, "m", messages, None, "c", tools, None, None, None, {}, None, "ok", None, None)
    lines = {}
    try:
        for fast in (True, False):
            _build.use_orjson = fast
            line = record_line(p, rid="0" * 32, service="s", host="h", pid=1, policy=TextPolicy())
            rec = lines[fast] = json.loads(line)
            digest = rec.pop("prompt_sha256", None) or prompt_digest(rec["messages"], None, rec.get("tools"))
            rec.pop("prompt_chars", None)
            assert digest == prompt_digest(messages, None, tools)
        _build.use_orjson = True
        for tiny in (1e-05, 3.5e-09, 2.5e-300):
            assert _build._canonical([tiny]) == json.dumps([tiny])
    finally:
        _build.use_orjson = True
    assert lines[True] == lines[False]


def test_hash_policy_keeps_no_text_of_choices_or_inputs_in_any_shape() -> None:
    sink = MemorySink()
    with UsageLogger(service="svc", sink=sink, text="hash") as lg:
        lg.log(model="m", inputs=("SECRET-A", "SECRET-B"))
        lg.log(model="m", choices=({"index": 0, "completion": "SECRET"},))
        lg.log(model="m", choices=[{"index": 0, "message": {"content": "SECRET"}, "text": "SECRET"}])
        lg.log(model="m", inputs="SECRET", choices="SECRET")
    lines = sink.lines()
    assert len(lines) == 4 and not any(b"SECRET" in line for line in lines)
    assert [json.loads(line).get("choices") for line in lines[1:3]] == [[{"index": 0}], [{"index": 0}]]
