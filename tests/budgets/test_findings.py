"""Budget alerts: every threshold reached is claimed once per period (in PostgreSQL: across
re-runs, restarts and overlapping runs), one finding per budget and run, in zh and en."""

from __future__ import annotations

import json
import threading
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from llmtally._time import zone
from llmtally.alerts import Finding, SentLog
from llmtally.budgets import Budget, BudgetState, budget_findings, evaluate, severity_of
from llmtally.store import FiredThreshold, MemoryStore, PostgresStore
from tests.budgets.days import Use, load

TZ = "Asia/Shanghai"
CHAT = Budget("chat", Decimal(1000), "tokens", match=(("feature", ("chat",)),), channels=("alerts_slack",))


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=zone(TZ))  # type: ignore[misc]


def check(store: Any, now: datetime) -> dict[Budget, list[Finding]]:
    return budget_findings(evaluate(store, [CHAT], now=now, tz=TZ), store, now=now)


def test_both_stores_are_budget_states_and_sent_logs(store: Any) -> None:
    assert isinstance(store, BudgetState) and isinstance(store, SentLog)


def test_each_threshold_fires_once_per_period(store: Any) -> None:
    load(store, TZ, {date(2026, 12, 1): [Use(900, 60), Use(5000, 0, feature="search")]})
    first = check(store, at(2026, 12, 1, 18))
    assert list(first) == [CHAT]
    (finding,) = first[CHAT]
    assert finding.kind == "budget" and finding.key == "budget:chat:2026-12-01:95%"
    assert finding.severity == "warning" and finding.data["claimed"] == [0.8, 0.95]
    assert (
        finding.data["threshold"] == 0.95 and finding.data["spend"] == 960 and finding.data["share"] == 0.96
    )
    assert finding.title == {"zh": "预算 chat 已达 95%", "en": "Budget chat reached 95%"}
    assert finding.text["en"].startswith("960 tokens of 1,000 tokens spent this month (96.0%); at this rate")
    assert finding.text["zh"].startswith("本月已用 960 tokens / 1,000 tokens（96.0%）；按当前速度，本月")
    assert "runs out on 1 December" in finding.text["en"]
    json.dumps(dict(finding.data))
    assert check(store, at(2026, 12, 1, 19)) == {}, "a re-run fires nothing new"
    load(store, TZ, {date(2026, 12, 2): [Use(50, 0)]})
    (again,) = check(store, at(2026, 12, 2, 12))[CHAT]
    assert again.severity == "critical" and again.data["claimed"] == [1.0]
    assert "used up" in again.text["en"]
    assert check(store, at(2026, 12, 3)) == {}
    fired = store.fired_in("chat", date(2026, 12, 1))
    assert [f.threshold for f in fired] == [0.8, 0.95, 1.0]
    assert all(isinstance(f, FiredThreshold) and f.unit == "tokens" for f in fired)
    assert (fired[0].spend, fired[0].share, fired[0].fired_at) == (960, 0.96, at(2026, 12, 1, 18))
    assert fired[2].spend == 1010 and fired[2].fired_at == at(2026, 12, 2, 12)


def test_a_new_period_fires_again(store: Any) -> None:
    load(store, TZ, {date(2026, 12, 31): [Use(1200, 0)], date(2027, 1, 1): [Use(850, 0)]})
    (december,) = check(store, at(2026, 12, 31, 23))[CHAT]
    assert december.data["claimed"] == [0.8, 0.95, 1.0] and december.data["period_start"] == "2026-12-01"
    (january,) = check(store, at(2027, 1, 1, 20))[CHAT]
    assert january.key == "budget:chat:2027-01-01:80%" and january.severity == "info"
    assert january.data["claimed"] == [0.8]
    assert check(store, at(2027, 1, 1, 21)) == {}


def test_below_every_threshold_nothing_is_claimed(store: Any) -> None:
    load(store, TZ, {date(2026, 12, 1): [Use(100, 0)]})
    assert check(store, at(2026, 12, 2)) == {}
    assert store.fired_in("chat", date(2026, 12, 1)) == []


def test_severity_by_threshold() -> None:
    assert [severity_of(t) for t in (0.5, 0.8, 0.949, 0.95, 0.99, 1.0, 1.5)] == [
        "info", "info", "info", "warning", "warning", "critical", "critical",
    ]  # fmt: skip


def test_claims_survive_a_restart(pg_dsn: str, pg_schema: str) -> None:
    with PostgresStore(pg_dsn, schema=pg_schema) as first:
        load(first, TZ, {date(2026, 12, 1): [Use(990, 0)]})
        assert check(first, at(2026, 12, 1, 12))
    with PostgresStore(pg_dsn, schema=pg_schema) as second:  # a new process, a new connection
        assert check(second, at(2026, 12, 1, 13)) == {}
        assert [f.threshold for f in second.fired_in("chat", date(2026, 12, 1))] == [0.8, 0.95]
        assert (
            second.fired_in("chat", date(2026, 11, 1)) == []
            and second.fired_in("other", date(2026, 12, 1)) == []
        )


def _race(stores: list[Any], work: Any) -> list[Any]:
    gate = threading.Barrier(len(stores))
    results: list[Any] = [None] * len(stores)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            gate.wait(timeout=10)
            results[i] = work(stores[i])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    return results


def _claims(store: Any) -> list[bool]:
    now = datetime(2026, 12, 5, tzinfo=UTC)
    return [
        store.claim("race", date(2026, 12, 1), t / 100, at=now, spend=Decimal(7), unit="CNY", share=t / 100)
        for t in range(1, 201)
    ]


def test_two_connections_claiming_at_once_one_wins_each_threshold(pg_dsn: str, pg_schema: str) -> None:
    with PostgresStore(pg_dsn, schema=pg_schema) as a, PostgresStore(pg_dsn, schema=pg_schema) as b:
        won_a, won_b = _race([a, b], _claims)
        assert all(x != y for x, y in zip(won_a, won_b, strict=True)), "exactly one claimer wins each"
        assert len(a.fired_in("race", date(2026, 12, 1))) == 200


def test_two_threads_claiming_a_memory_store_one_wins_each_threshold() -> None:
    with MemoryStore() as store:
        won_a, won_b = _race([store, store], _claims)
        assert all(x != y for x, y in zip(won_a, won_b, strict=True))


def test_overlapping_runs_send_one_finding(pg_dsn: str, pg_schema: str) -> None:
    with PostgresStore(pg_dsn, schema=pg_schema) as a, PostgresStore(pg_dsn, schema=pg_schema) as b:
        load(a, TZ, {date(2026, 12, 1): [Use(1000, 0)]})
        got = _race([a, b], lambda s: check(s, at(2026, 12, 1, 20)))
        sent = [f for found in got for fs in found.values() for f in fs]
        assert len(sent) == 1 and sent[0].data["threshold"] == 1.0


def test_the_sent_log_counts_messages_per_channel(store: Any) -> None:
    t0 = datetime(2026, 12, 1, 10, tzinfo=UTC)
    store.record_sent("slack", t0, 3)
    store.record_sent("slack", t0.replace(minute=30), 1)
    store.record_sent("feishu", t0.replace(minute=40), 2)
    assert store.sent_since("slack", t0) == 2
    assert store.sent_since("slack", t0.replace(minute=1)) == 1
    assert store.sent_since("feishu", t0) == 1 and store.sent_since("email", t0) == 0


def test_the_sent_log_rate_limits_deliveries_across_restarts(pg_dsn: str, pg_schema: str) -> None:
    from llmtally.alerts import DeliveryPolicy, RunInfo, deliver

    class Quiet:
        name = "slack"
        sent = 0

        def send(self, batch: Any) -> None:
            Quiet.sent += 1

    load_at = datetime(2026, 12, 1, 10, tzinfo=UTC)
    policy = DeliveryPolicy(max_per_hour=2)
    with MemoryStore() as mem:
        load(mem, TZ, {date(2026, 12, 1): [Use(1000, 0)]})
        (finding,) = check(mem, at(2026, 12, 1, 20))[CHAT]
    for minute in (0, 1, 2):
        with PostgresStore(pg_dsn, schema=pg_schema) as store:
            (result,) = deliver([finding], [Quiet()], run=RunInfo(date(2026, 12, 1)), state=store,
                                now=load_at.replace(minute=minute), policy=policy)  # fmt: skip
    assert result.status == "rate_limited" and Quiet.sent == 2


def test_a_threshold_added_below_one_fired_is_claimed_silently(store: Any) -> None:
    load(store, TZ, {date(2026, 12, 1): [Use(850, 0)]})
    assert check(store, at(2026, 12, 1, 12))
    wider = Budget("chat", Decimal(1000), "tokens", match=CHAT.match, thresholds=(0.5, 0.8, 0.95, 1.0))
    now = at(2026, 12, 1, 13)
    assert budget_findings(evaluate(store, [wider], now=now, tz=TZ), store, now=now) == {}
    assert [f.threshold for f in store.fired_in("chat", date(2026, 12, 1))] == [0.5, 0.8]
