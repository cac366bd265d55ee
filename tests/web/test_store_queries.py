"""The query methods the page added to the store, on every backend: the same answers as the
queries the report already used, and arguments checked."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from llmtally import ConfigError
from llmtally.store import SUM_COLUMNS, UsageStore, fold
from tests.store.days import day_load

D1, D2 = date(2026, 11, 20), date(2026, 11, 21)


@pytest.fixture
def store(any_store: UsageStore) -> UsageStore:
    any_store.load_day(day_load(D1))
    any_store.load_day(day_load(D2, scale=2, run_id="run-2"))
    any_store.archive_report(D2, "zh", "<html></html>", {})
    any_store.archive_report(D2, "en", "<html></html>", {})
    return any_store


def test_summed_agrees_with_grouped(store: UsageStore) -> None:
    for keys in (["model"], ["day", "feature"], ["hour"], ["service", "status"]):
        grouped = fold(((tuple(k), c, s, cost) for k, c, s, cost in store.grouped(keys, D1, D2)))
        summed = dict(store.summed(keys, D1, D2, columns=SUM_COLUMNS))
        assert set(summed) == set(grouped)
        for k, sums in summed.items():
            t = grouped[k]
            assert list(sums) == [getattr(t, c) for c in SUM_COLUMNS]
    with_cost = {k: v for k, v in store.summed(["model", "currency"], D1, D2, columns=["requests", "cost"])}
    assert with_cost[("gpt-4o-mini", "USD")] == (9, Decimal("0.000297"))
    assert with_cost[("mine", None)] == (2, None)


def test_summed_filters_and_checks(store: UsageStore) -> None:
    rows = store.summed(["feature"], D1, D2, {"model": ["qwen-plus", "mine"]}, columns=["requests"])
    assert sorted(rows) == [(("",), (2,)), (("search",), (4,))]
    assert store.summed(["feature"], D1, D2, {"model": []}, columns=["requests"]) == []
    for bad in (
        dict(keys=["model"], columns=["cost"]),
        dict(keys=["model"], columns=["prompt"]),
        dict(keys=["model"], columns=[]),
        dict(keys=["users"], columns=["requests"]),
        dict(keys=["model", "model"], columns=["requests"]),
    ):
        with pytest.raises(ConfigError):
            store.summed(bad["keys"], D1, D2, columns=bad["columns"])


def test_range_reads(store: UsageStore) -> None:
    assert [q.day for q in store.quality_between(D1, D2)] == [D1, D2]
    assert store.quality_between(D2, D2)[0] == store.quality(D2)
    assert store.losses_between(D1, D2) == [*store.losses(D1), *store.losses(D2)]
    assert store.quarantine_reasons(D1, D2) == [(D1, "invalid JSON", 1), (D2, "invalid JSON", 1)]
    assert store.archived_days(D1, D2) == [(D2, "en"), (D2, "zh")]
    assert store.archived_days(D1, D1) == []
