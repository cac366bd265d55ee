"""Nothing is lost by default, and what is still lost is written down where the pipeline reads it.

Real parts throughout: bursts into real files, a real full disk and a real read-only volume (small
tmpfs mounts: the tests run as root, so ``chmod`` would not stop a write), a log directory whose
parent is a regular file, the pipeline's own parser, ``reconcile``, a store and the report.
"""

from __future__ import annotations

import errno
import itertools
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from llmtally.logging import MemorySink, UsageLogger
from llmtally.logging._build import Pending
from llmtally.pipeline import DayParser, ParseStats, UsageRecord, reconcile
from llmtally.report import ReportSettings, make_report
from llmtally.store import LossEntry, MemoryStore

PROMPT = "把会议改到下午三点"
CAN_MOUNT = os.geteuid() == 0 and shutil.which("mount") is not None


def _log(lg: UsageLogger, i: int) -> None:
    lg.log(model="gpt-4o-mini", prompt=f"{PROMPT} {i}", completion="好的",
           usage={"prompt_tokens": 12, "completion_tokens": 2}, latency_ms=5.0)  # fmt: skip


class Parsed:
    """The pipeline's view of a log directory (every day the test ran on, in UTC)."""

    def __init__(self, directory: Path, since: datetime) -> None:
        self.records: list[UsageRecord] = []
        self.stats = ParseStats()
        self.losses: list[LossEntry] = []
        files = sorted(directory.glob("usage-*.jsonl"))
        day, last = (since - timedelta(seconds=5)).date(), datetime.now(UTC).date()
        while day <= last:
            parser = DayParser(day, "UTC")
            self.records += list(parser.parse(files))
            for name, value in vars(parser.stats).items():
                setattr(self.stats, name, getattr(self.stats, name) + value)
            self.losses += parser.losses
            day += timedelta(days=1)
        self.stats.files = len(files)


def _wait(what: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """``tmpfs(name, "size=1m", ...)``: a real small file system, unmounted after the test."""
    mounted: list[Path] = []

    def mount(name: str, *options: str) -> Path:
        if not CAN_MOUNT:
            pytest.skip("mounting a tmpfs needs root and mount(8)")
        path = tmp_path / name
        path.mkdir()
        cmd = ["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(path)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte; returns the filler file."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"\0" * 65536):
            pass
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def _messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


# -- no loss by default ------------------------------------------------------------------------------


def test_a_burst_of_200000_records_at_default_settings_leaves_200000_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LLMTALLY_LOG_MAX_QUEUE", raising=False)
    monkeypatch.delenv("LLMTALLY_LOG_ON_FULL", raising=False)
    since = datetime.now(UTC)
    lg = UsageLogger(tmp_path, service="burst")
    assert (lg.max_queue_size, lg.on_full) == (65536, "write")  # what a user gets
    for i in range(200_000):
        _log(lg, i)
    assert lg._spilled > 0  # the burst overflowed the queue: callers wrote records themselves
    assert lg.close(120)
    assert lg.stats() == {"logged": 200_000, "written": 200_000, "dropped": 0, "queued": 0}
    parsed = Parsed(tmp_path, since)
    assert len(parsed.records) == parsed.stats.records == 200_000
    assert len({r.id for r in parsed.records}) == 200_000
    assert parsed.stats.duplicates == parsed.stats.quarantined == parsed.stats.partial_lines == 0
    assert parsed.stats.loss_markers == 0
    assert {r.prompt for r in parsed.records} == {f"{PROMPT} {i}" for i in range(200_000)}


class SlowSink(MemorySink):
    """A disk that takes 30 ms per write."""

    def write_batch(self, data: bytes, count: int) -> None:
        time.sleep(0.03)
        super().write_batch(data, count)


def test_block_waits_for_room_in_order_then_writes_inline() -> None:
    sink = SlowSink()
    with UsageLogger(service="svc", sink=sink, on_full="block", block_timeout=5, max_queue_size=20,
                     max_batch_size=10, schedule_delay=0.01) as lg:  # fmt: skip
        for i in range(200):
            _log(lg, i)
        assert lg._spilled == 0
    assert [json.loads(x)["prompt"] for x in sink.lines()] == [f"{PROMPT} {i}" for i in range(200)]
    sink = SlowSink()
    with UsageLogger(service="svc", sink=sink, on_full="block", block_timeout=0.005, max_queue_size=20,
                     max_batch_size=10, schedule_delay=0.01) as lg:  # fmt: skip
        for i in range(200):
            _log(lg, i)
        assert lg._spilled > 0  # the wait timed out: written by the caller, not lost
    assert lg.stats() == {"logged": 200, "written": 200, "dropped": 0, "queued": 0}
    assert len(sink.lines()) == 200


class BrokenSink(MemorySink):
    def write_batch(self, data: bytes, count: int) -> None:
        raise OSError(errno.EIO, "Input/output error")


def test_a_failing_sink_never_makes_callers_wait_or_write(caplog: pytest.LogCaptureFixture) -> None:
    for policy in ("write", "block"):
        lg = UsageLogger(service="svc", sink=BrokenSink(), on_full=policy, block_timeout=5,
                         max_queue_size=10, max_batch_size=10, schedule_delay=0.01)  # fmt: skip
        _log(lg, 0)
        assert not lg.flush(1)  # the sink is known to fail now
        t0 = time.monotonic()
        for i in range(1, 100):
            _log(lg, i)
        assert time.monotonic() - t0 < 1.0  # no 5 s waits for a queue that cannot drain
        stats = lg.stats()
        assert stats["queued"] <= 20 and stats["queued"] + stats["dropped"] == 100
        with caplog.at_level(logging.ERROR, logger="llmtally.logging"):
            assert not lg.close(0.2)
        assert lg.stats()["dropped"] == 100


# -- losses are data: drop policy, full disk, read-only volume, broken path, close -------------------


def test_drop_policy_losses_reach_the_pipeline_quality_and_the_report(tmp_path: Path) -> None:
    since = datetime.now(UTC)
    lg = UsageLogger(tmp_path, service="chat-api", on_full="drop", max_queue_size=8, max_batch_size=8,
                     schedule_delay=60)  # fmt: skip
    for i in range(500):
        _log(lg, i)
    assert lg.close(10)
    dropped = lg.stats()["dropped"]
    assert dropped > 0
    markers = [json.loads(line) for p in tmp_path.iterdir() for line in p.read_bytes().splitlines()]
    markers = [m for m in markers if m.get("kind") == "loss"]
    assert sum(m["records"] for m in markers) == dropped
    m = markers[0]
    assert set(m) == {"v", "kind", "id", "ts", "service", "host", "pid", "records", "from", "to", "reason"}
    assert m["reason"] == "queue full" and m["service"] == "chat-api" and m["pid"] == os.getpid()
    assert datetime.fromisoformat(m["from"]) <= datetime.fromisoformat(m["to"])

    parsed = Parsed(tmp_path, since)
    assert parsed.stats.loss_markers == len(markers) and parsed.stats.lost_records == dropped
    assert parsed.stats.quarantined == 0 and len(parsed.records) == 500 - dropped
    day = datetime.fromisoformat(m["from"]).date()
    load = reconcile(parsed.records, {}, day=day, tz="UTC", stats=parsed.stats, losses=parsed.losses)
    assert load.quality.lost_records == dropped
    ((entry),) = load.losses  # one episode: the markers of one burst are merged
    assert (entry.service, entry.records, entry.reason) == ("chat-api", dropped, "queue full")
    store = MemoryStore()
    store.load_day(load)
    q = store.quality(day)
    assert q is not None and q.lost_records == dropped and store.losses(day) == [entry]

    report = make_report(store, day, timezone="UTC", settings=ReportSettings(lang="en"))
    assert report.summary["losses"]["lost_records"] == dropped
    assert report.summary["losses"]["entries"][0]["reason"] == "queue full"
    t1, t2 = (x.strftime("%Y-%m-%d %H:%M:%S") for x in (entry.first_ts, entry.last_ts))
    sentence = f"service chat-api lost {dropped:,} records between {t1} and {t2} (queue full)"
    assert sentence in report.text and sentence in report.html_file
    zh = make_report(store, day, timezone="UTC", settings=ReportSettings(lang="zh"))
    assert f"服务「chat-api」在 {t1} 至 {t2} 之间丢失 {dropped:,} 条记录（队列已满）" in zh.html_file


def _through_trouble(lg: UsageLogger, caplog: pytest.LogCaptureFixture, n: int) -> tuple[int, int]:
    """Log ``n`` records while the sink fails, retrying a few times; returns (queued, dropped)."""
    with caplog.at_level(logging.WARNING, logger="llmtally.logging"):
        for i in range(20):
            _log(lg, i)
        for _ in range(3):
            assert not lg.flush(0.1)  # three failed attempts (plus the writer's own retries)
        for i in range(20, n):
            _log(lg, i)
        time.sleep(0.3)
    stats = lg.stats()
    assert stats["logged"] == n and stats["written"] == 0
    assert 0 < stats["queued"] <= lg.max_queue_size + lg.max_batch_size  # kept, bounded
    return stats["queued"], stats["dropped"]


def _after_recovery(
    lg: UsageLogger,
    caplog: pytest.LogCaptureFixture,
    logs: Path,
    since: datetime,
    kept: int,
    lost: int,
    reason: str,
) -> None:
    with caplog.at_level(logging.WARNING, logger="llmtally.logging"):
        _wait(lambda: lg.stats()["queued"] == 0)  # the writer retries by itself
        assert lg.close(10)
    assert lg.stats()["written"] == kept and lg.stats()["dropped"] == lost
    parsed = Parsed(logs, since)
    assert len(parsed.records) == kept and parsed.stats.quarantined == 0
    assert parsed.stats.lost_records == lost and {e.reason for e in parsed.losses} == {reason}
    # warned at most once a minute while the trouble lasted, though every attempt failed
    assert len(_messages(caplog, "could not be written")) == 1
    assert len(_messages(caplog, f"({reason})")) >= 1
    assert len(_messages(caplog, "sink is failing")) == 1
    assert len(_messages(caplog, "accepts writes again after")) == 1


def test_a_full_disk_keeps_records_then_writes_them_and_a_loss_marker(
    tmpfs: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    disk = tmpfs("disk", "size=1m")
    logs = disk / "logs"
    logs.mkdir()
    filler = _fill(disk)
    since = datetime.now(UTC)
    lg = UsageLogger(logs, service="svc", max_queue_size=300, max_batch_size=100, schedule_delay=0.05)
    kept, lost = _through_trouble(lg, caplog, 1000)
    assert lost > 0 and len(list(logs.iterdir())) <= 1  # no trail of empty files while full
    filler.unlink()
    _after_recovery(lg, caplog, logs, since, kept, lost, "disk full")


def test_a_read_only_volume_keeps_records_then_writes_them_and_a_loss_marker(
    tmpfs: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    volume = tmpfs("volume", "size=4m")
    logs = volume / "logs"
    logs.mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(volume)], check=True)
    with pytest.raises(OSError) as err:  # really read-only, for root too
        (logs / "probe").write_text("x")
    assert err.value.errno == errno.EROFS
    since = datetime.now(UTC)
    lg = UsageLogger(logs, service="svc", max_queue_size=300, max_batch_size=100, schedule_delay=0.05)
    kept, lost = _through_trouble(lg, caplog, 1000)
    assert lost > 0
    subprocess.run(["mount", "-o", "remount,rw", str(volume)], check=True)
    _after_recovery(lg, caplog, logs, since, kept, lost, "read-only")


def test_a_log_directory_under_a_regular_file_then_fixed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Runs everywhere (no mount): the volume's mount point is a regular file (ENOTDIR)."""
    volume = tmp_path / "volume"
    volume.write_text("not a directory")
    logs = volume / "logs"
    since = datetime.now(UTC)
    lg = UsageLogger(logs, service="svc", max_queue_size=300, max_batch_size=100, schedule_delay=0.05)
    kept, lost = _through_trouble(lg, caplog, 1000)
    volume.unlink()  # the writer creates the directory on its next attempt
    _after_recovery(lg, caplog, logs, since, kept, lost, "write error: ENOTDIR")


def test_records_unwritten_at_close_are_written_down_when_the_sink_works(tmp_path: Path) -> None:
    since = datetime.now(UTC)
    lg = UsageLogger(tmp_path, service="svc", schedule_delay=60, max_batch_size=8192)
    for i in range(5000):
        _log(lg, i)
    assert lg.close(timeout=0) is False  # no time to write them: lost, but said so
    assert lg.stats() == {"logged": 5000, "written": 0, "dropped": 5000, "queued": 0}
    parsed = Parsed(tmp_path, since)
    assert parsed.records == [] and parsed.stats.lost_records == 5000
    assert {e.reason for e in parsed.losses} == {"unwritten at exit"}


def test_on_full_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMTALLY_LOG_ON_FULL", "drop")
    with UsageLogger(tmp_path, service="svc") as lg:
        assert lg.on_full == "drop"
    with UsageLogger(tmp_path, service="svc", on_full="block") as lg:
        assert lg.on_full == "block"  # the argument wins


# -- the spill: what callers build when the queue is full ------------------------------------------


class CountingSink(MemorySink):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, int]] = []  # (thread name, records)

    def write_batch(self, data: bytes, count: int) -> None:
        assert data.endswith(b"\n")  # whole lines, every write
        self.writes.append((threading.current_thread().name, count))
        super().write_batch(data, count)


@pytest.fixture
def small_spill(monkeypatch: pytest.MonkeyPatch) -> None:
    """Callers write their spill at 64 KiB (not 1 MiB), so small records reach it."""
    from llmtally.logging import _logger

    monkeypatch.setattr(_logger, "_SPILL_BYTES", 64 * 1024)


@pytest.mark.usefixtures("small_spill")
def test_callers_spill_whole_lines_and_the_counts_stay_exact_throughout() -> None:
    """Four threads overflow a queue of 64: their records go to the spill, written when it is full
    by the caller that fills it, or with the writer's next batch; ``logged == written + dropped +
    queued`` holds at every moment, and every record is on the sink exactly once."""
    sink = CountingSink()
    lg = UsageLogger(service="svc", sink=sink, max_queue_size=64, max_batch_size=64, schedule_delay=0.01)
    stop = threading.Event()
    seen: list[dict[str, int]] = []

    def sampler() -> None:
        while not stop.is_set():
            s = lg.stats()
            assert s["logged"] == s["written"] + s["dropped"] + s["queued"], s
            assert s["queued"] >= 0 and s["dropped"] == 0, s
            seen.append(dict(s))

    def caller(t: int) -> None:
        for i in range(5000):
            lg.log(
                model="m",
                prompt=f"{t}-{i}",
                completion="好的",
                usage={"prompt_tokens": 3, "completion_tokens": 1},
            )

    threads = [threading.Thread(target=sampler)] + [
        threading.Thread(target=caller, args=(t,), name=f"caller-{t}") for t in range(4)
    ]
    for th in threads:
        th.start()
    for th in threads[1:]:
        th.join()
    assert lg.close(10)
    stop.set()
    threads[0].join()
    assert lg.stats() == {"logged": 20_000, "written": 20_000, "dropped": 0, "queued": 0}
    assert len(seen) > 10 and all(a["written"] <= b["written"] for a, b in itertools.pairwise(seen))
    prompts = [json.loads(line)["prompt"] for line in sink.lines()]
    assert sorted(prompts) == sorted(f"{t}-{i}" for t in range(4) for i in range(5000))
    by_callers = [n for name, n in sink.writes if name.startswith("caller-")]  # (close() flushes too)
    assert lg._spilled > 1000 and lg._inline_written == sum(by_callers) > 0
    assert max(by_callers) > 1  # callers write their spill many records at a time, not one write each


class CallersDiskFull(MemorySink):
    """The disk is full for the first write a caller (not the writer thread) attempts."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = 0

    def write_batch(self, data: bytes, count: int) -> None:
        if not self.failed and not threading.current_thread().name.startswith("llmtally-usage-writer"):
            self.failed = count
            raise OSError(errno.ENOSPC, "No space left on device")
        super().write_batch(data, count)


@pytest.mark.usefixtures("small_spill")
def test_a_spill_the_sink_refuses_is_lost_exactly_and_written_down() -> None:
    sink = CallersDiskFull()
    lg = UsageLogger(service="svc", sink=sink, max_queue_size=4, max_batch_size=4, schedule_delay=0.01)
    for i in range(3000):
        lg.log(model="m", prompt=f"p{i}", completion="好的" * 50)
    assert lg.close(10)
    stats = lg.stats()
    assert sink.failed > 1  # a whole spill was refused
    assert stats["logged"] == 3000 and stats["queued"] == 0 and stats["dropped"] >= sink.failed
    lines = [json.loads(x) for x in sink.lines()]
    markers = [x for x in lines if x.get("kind") == "loss"]
    records = [x for x in lines if x.get("kind") != "loss"]
    assert len(records) == stats["written"] == 3000 - stats["dropped"]
    assert sum(m["records"] for m in markers) == stats["dropped"]
    assert {m["reason"] for m in markers} == {"disk full"}
    assert len({r["prompt"] for r in records}) == len(records)


CRASHING = """
import sys, llmtally
lg = llmtally.UsageLogger(sys.argv[1], service="crash", max_queue_size=64, max_batch_size=64,
                          max_file_bytes=256 * 1024)
i = 0
while True:
    lg.log(model="m", prompt=f"p{i}", completion="好的" * 200, usage={"prompt_tokens": 3, "completion_tokens": 1})
    i += 1
    if i == 5000:
        print("logging", flush=True)
"""


def test_a_crash_mid_burst_leaves_whole_lines(tmp_path: Path) -> None:
    """SIGKILL while callers and the writer append: every line read is a whole record (a file may
    end in a partial line, which readers skip), no line is quarantined, none is there twice."""
    since = datetime.now(UTC)
    with subprocess.Popen(
        [sys.executable, "-c", CRASHING, str(tmp_path)], stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "logging\n"
            time.sleep(0.3)
        finally:
            proc.kill()
    parsed = Parsed(tmp_path, since)
    assert parsed.stats.records > 5000 and parsed.stats.files > 1
    assert parsed.stats.quarantined == parsed.stats.duplicates == 0
    assert parsed.stats.partial_lines <= parsed.stats.files
    assert len({r.prompt for r in parsed.records}) == parsed.stats.records


def test_a_record_spilled_while_the_logger_closes_is_still_written() -> None:
    """A caller that found the queue full just before ``close()`` and spills after close's last
    flush writes the spill itself: nothing is left behind in memory."""
    sink = MemorySink()
    lg = UsageLogger(service="svc", sink=sink, max_queue_size=1, max_batch_size=1)
    assert lg.close(5)
    p = Pending(
        time.time(), None, "m", None, "late", "好的", None, None, None, None, {}, None, "ok", None, None
    )
    lg._write_inline(p)  # what _overflow does for a caller that passed the closed check in time
    assert lg.stats() == {"logged": 1, "written": 1, "dropped": 0, "queued": 0}
    assert [json.loads(x)["prompt"] for x in sink.lines()] == ["late"]
