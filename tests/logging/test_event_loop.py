"""The event loop never waits on logging work: log() is an append, the writer yields the GIL."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import time
from pathlib import Path

from llmtally.logging import MemorySink, UsageLogger

MESSAGES = [
    {"role": "system", "content": "You are helpful." * 20},
    {"role": "user", "content": "今天天气怎么样？" * 50},
]


def _in_a_fresh_interpreter(call: str, attempts: int = 1) -> None:
    """Measured in a fresh interpreter: threads left running by other tests in this process (servers,
    loggers) would take the GIL too, and that is their pause, not the logger's."""
    for attempt in range(attempts):
        out = subprocess.run(
            [sys.executable, "-c", f"from tests.logging.test_event_loop import measure; {call}"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if out.returncode == 0 or attempt == attempts - 1:
            break
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]


def test_event_loop_never_stalls_over_1ms_on_logging() -> None:
    _in_a_fresh_interpreter("measure()")


def test_event_loop_never_stalls_over_5ms_when_the_queue_overflows(tmp_path: Path) -> None:
    """A queue of 1,024 under 20,000 records in a burst, into real files: the loop's own thread
    builds the overflow (``on_full="write"``, the default) into the spill and writes it when full,
    and nothing is lost.  The loop's thread does real work here (building, writing), so a scheduler
    hiccup of a shared machine can land on it: a second, fresh measurement decides (a stall the
    logger causes comes back, a hiccup does not)."""
    _in_a_fresh_interpreter(f"measure(max_queue_size=1024, directory={str(tmp_path)!r})", attempts=2)


def measure(max_queue_size: int = 200_000, directory: str | None = None) -> None:
    """The measurement (asserts inside; run by the tests above in their own process)."""
    lg = UsageLogger(
        directory, service="svc", sink=None if directory else MemorySink(), max_batch_size=512,
        max_queue_size=max_queue_size, schedule_delay=0.01,
    )  # fmt: skip
    calls: list[float] = []
    gaps: list[float] = []

    async def handler(n: int) -> None:  # a request handler that logs, then awaits
        for i in range(n):
            t0 = time.perf_counter()
            lg.log(
                model="qwen3-8b",
                messages=MESSAGES,
                completion=f"晴 {i}",
                usage={"prompt_tokens": 500, "completion_tokens": 3},
            )
            calls.append(time.perf_counter() - t0)
            await asyncio.sleep(0)

    async def ticker(stop: asyncio.Event) -> None:  # how late does the loop come back to us?
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    async def main() -> None:
        stop = asyncio.Event()
        tick = asyncio.create_task(ticker(stop))
        await asyncio.gather(*(handler(5000) for _ in range(4)))
        stop.set()
        await tick

    # A full garbage collection pauses every thread of the process, whatever it allocates; it is the
    # host's pause (tuned with gc.freeze / thresholds), so it is kept out of this measurement.
    gc.collect()
    gc.disable()
    try:
        asyncio.run(main())
    finally:
        gc.enable()
    assert lg.close(30)
    assert lg.stats()["written"] == 20_000  # the writer really was busy meanwhile
    calls.sort()
    gaps.sort()
    if max_queue_size < 20_000:
        # An overflowing call builds and serialises its 1.2 kB record itself into the spill (a few
        # microseconds); the one that fills it writes 1 MiB and may wait for the writer's next
        # hand-over (every 0.1 ms while a caller writes).  A turn of the loop stays around a
        # millisecond.
        assert lg._spilled > 1000 and lg.stats()["dropped"] == 0
        assert calls[len(calls) // 2] < 200e-6, calls[len(calls) // 2]
        assert gaps[int(len(gaps) * 0.99)] < 2.5e-3, gaps[int(len(gaps) * 0.99)]
        assert gaps[-1] < 5e-3, gaps[-5:]
        return
    # log() is an append; the loop's turnaround (one round of five coroutines, four of them logging)
    # stays under 1 ms while the writer serialises 20,000 records on another thread, because the
    # writer hands the GIL over every 0.5 ms of work instead of holding it for the 5 ms switch
    # interval.  On a loaded 2-core machine the OS scheduler adds its own hiccups, so the test
    # bounds the 99th percentile by 1 ms and the worst turnaround by the switch interval;
    # bench/bench_logger.py reports the measured figures.
    assert calls[len(calls) // 2] < 20e-6, calls[len(calls) // 2]
    assert gaps[int(len(gaps) * 0.99)] < 1e-3, gaps[int(len(gaps) * 0.99)]
    assert gaps[-1] < 5e-3, gaps[-5:]
