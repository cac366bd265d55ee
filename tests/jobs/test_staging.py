"""The staging folder holds plain data: gzip JSON rebuilt by type, never pickle (no code from a volume)."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import pickle
import typing
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmtally._exceptions import InputError
from llmtally._plain import from_plain, to_plain
from llmtally.jobs._staging import ParseIndex, StagedRecounts, Staging
from llmtally.pipeline import ParseStats, Recount
from llmtally.pipeline.shards import Shard, Span, ids_digest
from llmtally.store import (
    DayLoad,
    DayQuality,
    FoldEntry,
    HourlyRow,
    LedgerEntry,
    LossEntry,
    PromptDigestRow,
    QuarantineEntry,
    ReconciliationRow,
    TopRequest,
)

DAY = date(2026, 11, 20)
SHANGHAI = ZoneInfo("Asia/Shanghai")
KOLKATA = timezone(timedelta(hours=5, minutes=30))


def _day_load() -> DayLoad:
    """A day load as reconcile builds it (lists), with every kind of value the codec must keep."""
    h0 = datetime(2026, 11, 19, 16, tzinfo=UTC)  # 00:00 in Shanghai
    hourly = [
        HourlyRow(
            day=DAY, hour=h0, model="qwen3-8b", feature="chat", user_id="u1", tenant="acme",
            service="api", requests=3, prompt_tokens=300, completion_tokens=90, cached_tokens=10,
            recounted_prompt_tokens=300, recounted_completion_tokens=80, estimated_prompt_tokens=280,
            cost=Decimal("0.000099000000"), currency="USD",
        ),
        HourlyRow(
            day=DAY, hour=h0 + timedelta(hours=23), model="mine", feature="", user_id="", tenant="",
            service="batch", requests=1, prompt_tokens=7, completion_tokens=7, unpriced_requests=1,
        ),
    ]  # fmt: skip
    recon = [
        ReconciliationRow(
            day=DAY, model="qwen3-8b", service="api", fingerprint="sha256:ab12", records=3,
            reported=3, recounted=3, drift_records=1, prompt_drift_tokens=-3,
            prompt_drift_abs_tokens=3, estimated=2, estimate_ape_sum=0.1 + 0.2, estimate_pe_sum=-0.1,
        ),
        ReconciliationRow(day=DAY, model="mine", service="batch", fingerprint="", records=1, unknown_model=1),
    ]  # fmt: skip
    top = [
        TopRequest(
            day=DAY, rank=1, record_id="req-1", ts=datetime(2026, 11, 20, 8, 5, 7, 123456, tzinfo=SHANGHAI),
            model="qwen3-8b", service="api", feature="chat", user_id="u1", tenant="acme",
            prompt_sha256="9f" * 32, prompt_tokens=200, completion_tokens=50,
            cost=Decimal("0.00004500"), currency="USD", tags={"team": "search", "env": "prod"},
        ),
        TopRequest(
            day=DAY, rank=2, record_id="req-2", ts=datetime(2026, 11, 20, 5, 1, 0, 1, tzinfo=KOLKATA),
            model="mine", service="batch", feature="", user_id="", tenant="", prompt_sha256="",
            prompt_tokens=7, completion_tokens=7,
        ),
    ]  # fmt: skip
    ledger = LedgerEntry(
        run_id="manual__2026-11-21T02:00:00+08:00", day=DAY, files=2, bytes=4096, records=4,
        quarantined=1, partial_lines=0, duplicates=1, recounted=3, durations={"parse": 0.25, "recount": 1.5},
        details={"recount": {"records": 4, "status": {"ok": 3}, "unknown_models": ["mine"], "x": None}},
    )  # fmt: skip
    digest = PromptDigestRow(
        day=DAY, prompt_sha256="9f" * 32, feature="chat", requests=2, total_tokens=500,
        first_ts=datetime(2026, 11, 19, 16, 0, 1, 999999, tzinfo=UTC),
        last_ts=datetime(2026, 11, 20, 15, 59, 59, tzinfo=UTC),
    )  # fmt: skip
    return DayLoad(
        day=DAY,
        hourly=hourly,
        reconciliation=recon,
        top_requests=top,
        quality=DayQuality(day=DAY, records=4, prompt_tokens=307, completion_tokens=97, files=2, lines=9),
        quarantine=[
            QuarantineEntry(DAY, source="/logs/a.jsonl", line=3, reason="not JSON", line_sha256="0a1b")
        ],
        ledger=ledger,
        timezone="Asia/Shanghai",
        digests=[digest],
        losses=[
            LossEntry(
                DAY, "api", "web-1", 40, datetime(2026, 11, 19, 19, 0, 0, 5, tzinfo=UTC),
                datetime(2026, 11, 20, 3, 7, tzinfo=SHANGHAI), "write error: ENOTDIR",
            )
        ],
        folds=[FoldEntry(DAY, "api", "user_id", 100_000, 100_007, 7, requests=9, tokens=2**40)],
    )  # fmt: skip


def test_a_realistic_day_load_comes_back_equal(tmp_path: Path) -> None:
    stage = Staging.for_run("2026-11-20", "manual__2026-11-21T02:00:00+08:00", root=str(tmp_path))
    original = _day_load()
    path = stage.write("dayload", original)
    assert path.name == "dayload.json.gz"
    assert [p.name for p in stage.path.iterdir()] == ["dayload.json.gz"]  # no temporary file left
    json.loads(gzip.decompress(path.read_bytes()))  # plain JSON inside
    back = stage.read("dayload", DayLoad)
    assert back == original
    # exactly: cost digits, the microseconds and the UTC offset of each time, None stays None
    assert str(back.hourly[0].cost) == "0.000099000000" and back.hourly[1].cost is None
    assert back.top_requests[0].ts.isoformat() == "2026-11-20T08:05:07.123456+08:00"
    assert back.top_requests[1].ts.utcoffset() == timedelta(hours=5, minutes=30)
    assert back.top_requests[1].ts.microsecond == 1
    assert back.top_requests[0].tags == {"team": "search", "env": "prod"}
    assert back.reconciliation[0].estimate_ape_sum == 0.1 + 0.2
    assert back.ledger is not None and original.ledger is not None
    assert back.ledger.details == original.ledger.details


def test_every_field_of_every_row_type_is_written(tmp_path: Path) -> None:
    # generic: a field someone adds to a row is written and read without codec changes
    data = to_plain(_day_load())
    for name, cls in (("hourly", HourlyRow), ("top_requests", TopRequest), ("digests", PromptDigestRow),
                      ("losses", LossEntry)):  # fmt: skip
        assert set(data[name][0]) == {f.name for f in dataclasses.fields(cls)}
    assert set(data["quality"]) == {f.name for f in dataclasses.fields(DayQuality)}


def test_the_parse_index_and_recounts_round_trip(tmp_path: Path) -> None:
    stage = Staging(tmp_path / "run")
    index = ParseIndex(
        files=["/logs/a.jsonl", "/logs/b.jsonl.gz"],
        stats=ParseStats(files=2, lines=6, records=2, quarantined=1, loss_markers=1, lost_records=9),
        quarantine=[QuarantineEntry(DAY, "/logs/a.jsonl", 4, "not JSON", "ffee")],
        losses=[
            LossEntry(DAY, "svc", "h", 9, datetime(2026, 11, 20, 1, tzinfo=UTC),
                      datetime(2026, 11, 20, 1, 5, tzinfo=UTC), "queue full")
        ],
        shards=[
            Shard(0, 0, 1, [Span("/logs/a.jsonl", 0, 812, 1)], ids_digest(["r1"])),
            Shard(1, 1, 1, [Span("/logs/a.jsonl", 812, 1400, 2), Span("/logs/b.jsonl.gz", 0, 90, 1)],
                  ids_digest(["r2"])),
        ],
        prices="ab" * 32,
    )  # fmt: skip
    stage.write("parse", index)
    assert stage.read("parse", ParseIndex) == index
    counts = {"r1": Recount("ok", 12, 3, "sha256:1"), "r2": Recount("not_recountable")}
    stage.write("recount-0", {rid: rc.to_json() for rid, rc in counts.items()})
    back = {rid: Recount.from_json(v) for rid, v in stage.read("recount-0", StagedRecounts).items()}
    assert back == counts
    stage.write("summary", {"a": [1, "x", None]})
    assert stage.read("summary", dict) == stage.read("summary", Any) == {"a": [1, "x", None]}


class _RunsCode:
    """Unpickling this runs a shell command (``touch`` of a marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_in_the_staging_folder_is_refused_and_never_run(tmp_path: Path) -> None:
    # the payload is live: unpickled, it creates its marker
    canary = tmp_path / "canary"
    pickle.loads(pickle.dumps(_RunsCode(canary)))
    assert canary.exists()

    marker = tmp_path / "pwned"
    payload = pickle.dumps(_RunsCode(marker), protocol=pickle.HIGHEST_PROTOCOL)
    stage = Staging(tmp_path / "staging" / "2026-11-20" / "run")
    stage.path.mkdir(parents=True)
    target = stage.file("dayload")
    for planted in (gzip.compress(payload), payload, gzip.compress(b"x" + payload)):
        target.write_bytes(planted)
        with pytest.raises(InputError, match="not a gzip-compressed JSON staging file"):
            stage.read("dayload", DayLoad)
    # a pickle under the old name is not even looked at
    target.unlink()
    (stage.path / "dayload.pkl.gz").write_bytes(gzip.compress(payload))
    with pytest.raises(InputError, match="is missing"):
        stage.read("dayload", DayLoad)
    assert not marker.exists()


def _tamper(stage: Staging, name: str, change: typing.Callable[[Any], None]) -> None:
    path = stage.file(name)
    data = json.loads(gzip.decompress(path.read_bytes()))
    change(data)
    path.write_bytes(gzip.compress(json.dumps(data).encode()))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["hourly"][1].update(prompt_tokens="7"), r"DayLoad\.hourly\[1\]\.prompt_tokens: expected an integer, not a string '7'"),
        (lambda d: d["hourly"][0].update(cost=9.9e-05), r"DayLoad\.hourly\[0\]\.cost: expected a decimal string, not a number"),
        (lambda d: d["top_requests"][0].update(ts="yesterday"), r"top_requests\[0\]\.ts: expected an ISO 8601 date-time"),
        (lambda d: d["top_requests"][0]["tags"].update(team=1), r"top_requests\[0\]\.tags\['team'\]: expected a string"),
        (lambda d: d["quality"].update(records=True), r"DayLoad\.quality\.records: expected an integer, not a boolean"),
        (lambda d: d["quality"].update(shell="rm -rf /"), r"DayLoad\.quality: unknown field\(s\) \['shell'\] for DayQuality"),
        (lambda d: d.pop("quality"), r"missing field\(s\) \['quality'\] of DayLoad"),
        (lambda d: d.update(hourly={}), r"DayLoad\.hourly: expected an array, not an object"),
        (lambda d: d.update(day="2026-11-20T00:00:00"), r"DayLoad\.day: expected an ISO 8601 date string"),
    ],
)  # fmt: skip
def test_a_tampered_file_is_refused_with_where_and_what(
    tmp_path: Path, change: typing.Callable[[Any], None], message: str
) -> None:
    stage = Staging(tmp_path / "run")
    stage.write("dayload", _day_load())
    _tamper(stage, "dayload", change)
    with pytest.raises(InputError, match=message) as info:
        stage.read("dayload", DayLoad)
    assert str(stage.file("dayload")) in str(info.value)


def test_a_tampered_recount_status_is_refused(tmp_path: Path) -> None:
    stage = Staging(tmp_path / "run")
    stage.write("recount", {"r1": Recount("ok", 1, 2, "fp").to_json()})
    _tamper(stage, "recount", lambda d: d["r1"].__setitem__(0, "__import__('os')"))
    with pytest.raises(InputError, match=r"dict\['r1'\]\[0\]: expected one of \['ok', "):
        stage.read("recount", StagedRecounts)


def test_what_plain_data_cannot_hold_fails_at_write(tmp_path: Path) -> None:
    stage = Staging.for_run("2026-11-20", "run", root=str(tmp_path))
    with pytest.raises(TypeError, match="under an Any hint is not plain JSON"):
        stage.write("ledger", LedgerEntry("r", DAY, 0, 0, 0, 0, 0, 0, 0, details={"cost": Decimal("1.5")}))
    with pytest.raises(TypeError, match="cannot write a set"):
        stage.write("ids", {"ids": {"r1"}})
    with pytest.raises(ValueError, match="a staging name is"):
        stage.write("../elsewhere", {})
    assert not any(stage.path.iterdir())  # nothing half-written


def test_a_missing_hand_off_says_how_to_recover(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="clear the run's tasks from parse on"):
        Staging(tmp_path / "gone").read("parse", ParseIndex)


# ----------------------------------------------------------------------------- property: HourlyRow
_OFFSETS = st.builds(timezone, st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timedelta(minutes=m)))
_STRATEGIES: dict[Any, st.SearchStrategy[Any]] = {
    int: st.integers(),
    float: st.floats(allow_nan=False),
    str: st.text(),
    bool: st.booleans(),
    date: st.dates(),
    datetime: st.datetimes(timezones=st.just(UTC) | _OFFSETS),
    Decimal: st.decimals(allow_nan=False, allow_infinity=False),
}


def _strategy(tp: Any) -> st.SearchStrategy[Any]:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if len(args) < len(typing.get_args(tp)):  # X | None
        return st.none() | _strategy(args[0])
    return _STRATEGIES[tp] if tp in _STRATEGIES else st.from_type(tp)


def _rows(cls: type) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    return st.builds(cls, **{f.name: _strategy(hints[f.name]) for f in dataclasses.fields(cls)})


@settings(max_examples=200, deadline=None)
@given(row=_rows(HourlyRow))
def test_any_hourly_row_round_trips_through_json(row: HourlyRow) -> None:
    text = json.dumps(to_plain(row), ensure_ascii=False)
    back = from_plain(HourlyRow, json.loads(text))
    assert back == row
    assert back.hour.utcoffset() == row.hour.utcoffset()
    assert str(back.cost) == str(row.cost)
