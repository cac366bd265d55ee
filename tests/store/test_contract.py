"""One contract, every store backend: in-memory and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

import pytest

from llmtally import ConfigError, DataQualityError
from llmtally.store import MemoryStore, PostgresStore, UsageStore
from tests.store.days import broken, day_load

D1, D2 = date(2026, 11, 20), date(2026, 11, 21)


@pytest.fixture(params=["memory", "postgres"])
def store(request: pytest.FixtureRequest) -> Iterator[UsageStore]:
    if request.param == "memory":
        with MemoryStore() as mem:
            yield mem
    else:
        dsn = request.getfixturevalue("pg_dsn")
        schema = request.getfixturevalue("pg_schema")
        with PostgresStore(dsn, schema=schema) as pg:
            yield pg


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
    store.load_day(day_load(D1, run_id="same"))
    assert store.hourly_rows(D1) == sorted(day_load(D1).hourly, key=lambda h: (h.hour, h.model))


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
