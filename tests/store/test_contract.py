"""One contract, every store backend: in-memory and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from llmtally import ConfigError, DataQualityError, FinalDayError, LessEvidenceError, StorageError
from llmtally.store import DayLoad, FoldEntry, PostgresStore, UsageStore, Where, fold
from tests.store.days import broken, day_load

D1, D2 = date(2026, 11, 20), date(2026, 11, 21)


@pytest.fixture
def store(any_store: UsageStore) -> UsageStore:
    return any_store


@pytest.fixture
def writer(store: UsageStore, request: pytest.FixtureRequest) -> Iterator[UsageStore]:
    """Another handle on the same data (PostgreSQL: a second connection; memory: the store itself)."""
    if isinstance(store, PostgresStore):
        with PostgresStore(request.getfixturevalue("pg_dsn"), schema=store.schema) as other:
            yield other
    else:
        yield store


def test_is_a_usage_store(store: UsageStore) -> None:
    assert isinstance(store, UsageStore)


def test_load_and_read_back(store: UsageStore) -> None:
    load = day_load(D1)
    store.load_day(load)
    assert store.hourly_rows(D1) == sorted(
        load.hourly, key=lambda h: (h.hour, h.model, h.feature, h.user_id, h.tenant, h.service)
    )
    assert store.reconciliation(D1) == sorted(
        load.reconciliation, key=lambda r: (r.model, r.service, r.fingerprint)
    )
    assert store.top_requests(D1) == list(load.top_requests)
    assert store.top_requests(D1, limit=1) == [load.top_requests[0]]
    assert store.quality(D1) == load.quality
    assert store.quarantine(D1) == list(load.quarantine)
    assert store.prompt_digests(D1) == list(load.digests)
    assert store.losses(D1) == list(load.losses) and store.losses(D2) == []
    assert store.quality(D1).lost_records == 42  # type: ignore[union-attr]
    assert store.ledger(D1) == [load.ledger]
    assert store.loaded_days(D1 - timedelta(days=3), D2) == [D1]
    assert store.quality(D2) is None and store.hourly_rows(D2) == []
    store.check_day(D1)


def test_queries(store: UsageStore) -> None:
    store.load_day(day_load(D1))
    store.load_day(day_load(D2, scale=2))
    daily = store.daily_totals(D1, D2)
    assert sorted(daily) == [D1, D2]
    t1 = daily[D1]
    assert (t1.requests, t1.prompt_tokens, t1.completion_tokens, t1.total_tokens) == (6, 357, 117, 474)
    assert (t1.cached_tokens, t1.reasoning_tokens, t1.unpriced_requests) == (10, 5, 1)
    assert t1.cost == {"CNY": Decimal("0.00008"), "USD": Decimal("0.000099")}
    assert daily[D2].cost["USD"] == Decimal("0.000198")
    hours = store.hourly_series(D1, D1)
    assert [t.requests for _, t in sorted(hours.items())] == [3, 3]
    models = store.totals_by("model", D1, D2)
    assert [m for m, _ in models] == ["gpt-4o-mini", "qwen-plus", "mine"]
    assert models[0][1].prompt_tokens == 900
    assert store.totals_by("service", D1, D2, limit=1)[0][0] == "api"
    trend = store.daily_totals_by("feature", D1, D2)
    assert trend[D2]["chat"].requests == 6 and trend[D1][""].requests == 1
    with pytest.raises(ConfigError):
        store.totals_by("prompt", D1, D2)


def test_reload_replaces_the_day(store: UsageStore) -> None:
    store.load_day(day_load(D1))
    store.load_day(day_load(D2))
    store.load_day(day_load(D1, scale=3, run_id="again"))
    assert store.daily_totals(D1, D1)[D1].requests == 12
    assert store.daily_totals(D2, D2)[D2].requests == 6
    assert [e.run_id for e in store.ledger(D1)] == ["run", "again"]
    store.load_day(day_load(D1, scale=3, run_id="same"))  # the same evidence: replaced
    assert store.hourly_rows(D1) == sorted(day_load(D1, scale=3).hourly, key=lambda h: (h.hour, h.model))
    assert [(e.run_id, e.forced) for e in store.ledger(D1)] == [
        ("run", False),
        ("again", False),
        ("same", False),
    ]


def test_losses_round_trip_and_a_reload_replaces_them(store: UsageStore) -> None:
    load = day_load(D1)
    store.load_day(load)
    (disk, queue) = store.losses(D1)
    assert (disk.service, disk.host, disk.records, disk.reason) == ("api", "web-1", 40, "disk full")
    assert disk.first_ts == load.losses[0].first_ts and disk.last_ts == load.losses[0].last_ts
    assert disk.first_ts.utcoffset() is not None
    assert queue == load.losses[1]
    store.load_day(replace(day_load(D1, run_id="again"), losses=[]))  # the logs were re-read: none
    assert store.losses(D1) == []
    with pytest.raises(StorageError, match="another day"):
        store.load_day(replace(day_load(D2), losses=[replace(load.losses[0], day=D1)]))
    assert store.losses(D2) == [] and store.quality(D2) is None


def _with_sources(load: DayLoad, sources: dict[str, int]) -> DayLoad:
    assert load.ledger is not None
    return replace(load, ledger=replace(load.ledger, sources=sources))


def test_less_evidence_never_replaces_a_day(store: UsageStore) -> None:
    full = day_load(D1, scale=3, files=3)  # 12 records: /logs/a.jsonl 4, b 4, c 4
    store.load_day(full)
    with pytest.raises(LessEvidenceError, match=r"holds 12 records; this run found 6") as err:
        store.load_day(day_load(D1, run_id="purged", files=3))
    assert 'force": true' in str(err.value) and "logs/a.jsonl (4 → 2)" in str(err.value)
    with pytest.raises(LessEvidenceError, match=r"fewer records than before: logs/c\.jsonl \(4 → 0\)"):
        store.load_day(day_load(D1, scale=3, run_id="unmounted", files=2))  # same count, c missing
    # one file gone and another with more records: the total holds, the lost file is still refused
    swapped = _with_sources(day_load(D1, scale=3, run_id="swapped"), {"/logs/b.jsonl": 4, "/logs/c.jsonl": 4,
                                                                        "/logs/d.jsonl": 4})  # fmt: skip
    with pytest.raises(LessEvidenceError, match=r"logs/a\.jsonl \(4 → 0\)"):
        store.load_day(swapped)
    # the same file name in another host's folder is another file
    other_host = _with_sources(day_load(D1, scale=3, run_id="host"), {"/h2/a.jsonl": 4, "/logs/b.jsonl": 4,
                                                                        "/logs/c.jsonl": 4})  # fmt: skip
    with pytest.raises(LessEvidenceError, match=r"logs/a\.jsonl"):
        store.load_day(other_host)
    assert store.hourly_rows(D1) == sorted(full.hourly, key=lambda h: (h.hour, h.model))
    assert store.quality(D1) == full.quality
    assert [e.run_id for e in store.ledger(D1)] == ["run"]  # refused runs leave no ledger entry
    # a file compressed or rotated since is the same file
    rotated = day_load(D1, scale=3, run_id="rotated", files=3)
    assert rotated.ledger is not None
    store.load_day(_with_sources(rotated, {"/logs/a.jsonl.gz": 4, "/logs/b.jsonl.1": 2, "/logs/b.jsonl": 2,
                                           "/logs/c.jsonl": 4}))  # fmt: skip
    # forced: replaced, and the ledger says so
    store.load_day(day_load(D1, run_id="forced", files=1), force=True)
    assert store.daily_totals(D1, D1)[D1].requests == 6
    assert [(e.run_id, e.forced) for e in store.ledger(D1)][-1] == ("forced", True)


def _provisional(load: DayLoad, through: datetime) -> DayLoad:
    return replace(load, quality=replace(load.quality, provisional=True, through=through))


def test_a_provisional_day_is_replaced_by_the_final_one_and_never_the_other_way(store: UsageStore) -> None:
    noon = datetime(2026, 12, 1, 4, tzinfo=UTC)
    early = _provisional(day_load(D1, run_id="hourly-1"), noon)
    store.load_day(early)
    held = store.quality(D1)
    assert held is not None and (held.provisional, held.through) == (True, noon)
    later = _provisional(day_load(D1, scale=2, run_id="hourly-2"), noon + timedelta(hours=4))
    store.load_day(later)  # a later cut replaces an earlier one
    for older in (early, _provisional(day_load(D1, scale=5, run_id="hourly-1-again"), noon)):
        with pytest.raises(FinalDayError, match="later provisional cut"):
            store.load_day(older)  # an earlier cut run again never replaces a later one, more records or not
    held = store.quality(D1)
    assert held is not None and held.through == noon + timedelta(hours=4)
    final = day_load(D1, scale=3, run_id="daily")
    store.load_day(final)  # the daily run's final day replaces the provisional one
    assert store.quality(D1) == final.quality and not final.quality.provisional
    for late in (later, _provisional(day_load(D1, scale=4, run_id="hourly-3"), noon + timedelta(hours=8))):
        with pytest.raises(FinalDayError, match="already loaded as final"):
            store.load_day(late)  # not even with more records
        with pytest.raises(FinalDayError):
            store.load_day(late, force=True)  # nor forced
    assert store.quality(D1) == final.quality
    assert store.hourly_rows(D1) == sorted(final.hourly, key=lambda h: (h.hour, h.model))
    assert [e.run_id for e in store.ledger(D1)] == ["hourly-1", "hourly-2", "daily"]


def test_failed_check_leaves_the_old_day(store: UsageStore) -> None:
    good = day_load(D1)
    store.load_day(good)
    with pytest.raises(DataQualityError, match="prompt tokens"):
        store.load_day(broken(day_load(D1, scale=5)))
    lost = replace(good, quality=replace(good.quality, records=good.quality.records + 1))
    with pytest.raises(DataQualityError, match="records parsed"):
        store.load_day(lost)
    assert store.hourly_rows(D1) == sorted(good.hourly, key=lambda h: (h.hour, h.model))
    assert store.quality(D1) == good.quality
    assert len(store.ledger(D1)) == 1


def test_report_archive(store: UsageStore) -> None:
    assert store.archived_report(D1, "zh") is None
    store.archive_report(D1, "zh", "<html>旧</html>", {"day": "2026-11-20", "requests": 1})
    store.archive_report(D1, "zh", "<html>新</html>", {"day": "2026-11-20", "requests": 2})
    store.archive_report(D1, "en", "<html>en</html>", {"day": "2026-11-20"})
    assert store.archived_report(D1, "zh") == ("<html>新</html>", {"day": "2026-11-20", "requests": 2})


def test_purge_quarantine_keeps_recent_days_and_aggregates(store: UsageStore) -> None:
    store.load_day(day_load(D1))
    store.load_day(day_load(D2))
    n1, n2 = len(store.quarantine(D1)), len(store.quarantine(D2))
    assert n1 > 0 and n2 > 0
    assert store.purge_quarantine(D2) == n1
    assert store.quarantine(D1) == [] and len(store.quarantine(D2)) == n2
    assert store.hourly_rows(D1) != []  # aggregates are kept
    assert store.purge_quarantine(D2) == 0


def test_grouped_filters_on_key_columns(store: UsageStore) -> None:
    load = day_load(D1)
    failed = replace(load.hourly[2], status="error", http_status=429)  # model "mine", service "batch"
    store.load_day(replace(load, hourly=[*load.hourly[:2], failed]))

    def requests(keys: list[str], where: Where | None = None) -> dict[tuple[Any, ...], int]:
        return {k: t.requests for k, t in fold(store.grouped(keys, D1, D1, where)).items()}

    assert requests(["model"], {"service": "api"}) == {("gpt-4o-mini",): 3, ("qwen-plus",): 2}
    assert requests(["status", "http_status"], {"model": ["qwen-plus", "mine"]}) == {
        ("ok", 0): 2,
        ("error", 429): 1,
    }
    assert requests(["day"], {"http_status": 429, "status": ("error", "timeout")}) == {(D1,): 1}
    assert requests(["day"], {"feature": "", "tenant": ""}) == {(D1,): 1}
    assert requests(["model"], {"status": "error", "model": "gpt-4o-mini"}) == {}
    assert requests(["model"], {"model": []}) == {}
    assert requests(["model"]) == {("gpt-4o-mini",): 3, ("qwen-plus",): 2, ("mine",): 1}
    hours = {k[0] for k in fold(store.grouped(["hour"], D1, D1))}
    assert hours == {h.hour for h in load.hourly}  # the stored local-hour instants
    bad: list[Any] = [{"prompt": "x"}, {"http_status": "429"}, {"model": 3}, {"http_status": [True]}]
    for where in bad:
        with pytest.raises(ConfigError):
            store.grouped(["model"], D1, D1, where)
    with pytest.raises(ConfigError, match="cannot group by"):
        store.grouped(["prompt"], D1, D1)


def test_reconciliation_between(store: UsageStore) -> None:
    first = day_load(D1)
    counted = replace(first.reconciliation[0], completion_missing=1, uncertain=1, not_billed=0,
                      prompt_reported=3, completion_reported=2)  # fmt: skip
    store.load_day(replace(first, reconciliation=[counted, *first.reconciliation[1:]]))
    store.load_day(day_load(D2, scale=2))
    rows = store.reconciliation_between(D1 - timedelta(days=7), D2)
    assert rows == store.reconciliation(D1) + store.reconciliation(D2)
    assert [(r.day, r.model) for r in rows] == sorted((r.day, r.model) for r in rows)
    assert counted in rows
    assert store.reconciliation_between(D2 + timedelta(days=1), D2 + timedelta(days=9)) == []


def test_snapshot_reads_one_state(store: UsageStore, writer: UsageStore) -> None:
    store.load_day(day_load(D1))
    with store.snapshot():
        assert store.daily_totals(D1, D2)[D1].requests == 6
        writer.load_day(day_load(D1, scale=3, run_id="again"))  # committed meanwhile
        writer.load_day(day_load(D2))
        assert store.daily_totals(D1, D2) == {D1: store.daily_totals(D1, D1)[D1]}
        assert store.daily_totals(D1, D1)[D1].requests == 6
        assert store.hourly_rows(D1) == sorted(day_load(D1).hourly, key=lambda h: (h.hour, h.model))
        assert store.loaded_days(D1, D2) == [D1] and store.quality(D2) is None
        assert store.reconciliation(D1)[0].records == 3
        with store.snapshot():  # nested: the same state
            assert store.daily_totals(D1, D1)[D1].requests == 6
    assert store.daily_totals(D1, D1)[D1].requests == 12
    assert store.loaded_days(D1, D2) == [D1, D2]


def test_folds_round_trip_and_a_reload_replaces_them(store: UsageStore) -> None:
    folds = [
        FoldEntry(D1, "api", "tenant", 50, 60, 10, requests=12, tokens=3400),
        FoldEntry(D1, "api", "user_id", 100_000, 250_000, 150_000, requests=150_001, tokens=9_876_543_210),
    ]
    load = replace(day_load(D1), folds=folds)
    store.load_day(load)
    assert store.folds(D1) == folds and store.folds(D2) == []
    store.load_day(replace(day_load(D1, run_id="again"), folds=[]))
    assert store.folds(D1) == []
    with pytest.raises(StorageError, match="another day"):
        store.load_day(replace(day_load(D2), folds=[replace(folds[0], day=D1)]))
    assert store.folds(D2) == []
