"""The shipped price table, tiers, effective dates, overrides and unknown models."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from llmtally import ConfigError
from llmtally._config import load_config
from llmtally.pricing import load_prices

NOW = datetime(2026, 11, 20, tzinfo=UTC)
M = Decimal(10**6)


def test_shipped_table_covers_the_common_models_with_a_dated_note() -> None:
    book = load_prices()
    for model in [
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "o3",
        "o4-mini",
        "gpt-3.5-turbo",
        "gpt-4",
        "qwen-plus",
        "qwen-max",
        "qwen-turbo",
        "qwen3-8b",
        "qwen3-235b-a22b",
        "deepseek-chat",
        "deepseek-reasoner",
    ]:
        entry = book.lookup(model)
        assert entry is not None and entry.at(NOW) is not None, model
    assert book.lookup("qwen-plus").currency == "CNY" and book.lookup("gpt-4o").currency == "USD"  # type: ignore[union-attr]
    assert book.compiled == date(2026, 11, 27)
    assert "verify" in book.note and "2026-11-27" in book.note


def test_exact_costs_with_cache_and_reasoning() -> None:
    book = load_prices()
    c = book.cost("gpt-4o", NOW, 1_000_000, 1_000_000, cached_tokens=500_000)
    assert (
        c is not None
        and c.amount == Decimal("1.25") + Decimal("0.625") + Decimal("10")
        and c.currency == "USD"
    )
    c = book.cost("o4-mini", NOW, 100, 300, reasoning_tokens=200)  # reasoning billed as output
    assert c is not None and c.amount == (100 * Decimal("1.10") + 300 * Decimal("4.40")) / M
    c = book.cost("gpt-4o-2024-08-06", NOW, 10, 10)  # a listed alias
    assert c is not None and c.amount == (10 * Decimal("2.50") + 10 * Decimal("10.00")) / M


def test_dashscope_tiers_by_request_input_tokens() -> None:
    book = load_prices()
    low = book.cost("qwen-plus", NOW, 131072, 1000)
    high = book.cost("qwen-plus", NOW, 131073, 1000)
    assert low is not None and low.amount == (131072 * Decimal("0.8") + 1000 * Decimal("2")) / M
    assert high is not None and high.amount == (131073 * Decimal("2.4") + 1000 * Decimal("20")) / M
    thinking = book.cost("qwen-plus", NOW, 1000, 1000, reasoning_tokens=600)  # whole answer at thinking rate
    assert thinking is not None and thinking.amount == (1000 * Decimal("0.8") + 1000 * Decimal("8")) / M
    assert book.cost("qwen3-max", NOW, 300_000, 10) is None  # beyond the last tier: no price, no guess


def test_effective_from_dates() -> None:
    book = load_prices()
    before = book.cost("o3", datetime(2025, 6, 9, 23, tzinfo=UTC), 1_000_000, 0)
    after = book.cost("o3", datetime(2025, 6, 10, tzinfo=UTC), 1_000_000, 0)
    assert (
        before is not None
        and after is not None
        and (before.amount, after.amount) == (Decimal("10.00"), Decimal("2.00"))
    )
    edge = datetime(2025, 9, 5, 16, tzinfo=UTC)  # 2025-09-06 00:00 Beijing time
    assert book.cost("deepseek-chat", edge.replace(second=0, minute=59, hour=15), 1_000_000, 0).amount == 2  # type: ignore[union-attr]
    assert book.cost("deepseek-chat", edge, 1_000_000, 0).amount == 4  # type: ignore[union-attr]
    assert book.cost("gpt-4.1", datetime(2024, 1, 1, tzinfo=UTC), 10, 10) is None  # before its first price


def test_unknown_models_cost_none() -> None:
    book = load_prices()
    for model in ["Qwen/Qwen3-8B", "gpt-4o-2099-01-01", "GPT-4O", "", None, "my-finetune"]:
        assert book.cost(model, NOW, 10, 10) is None


def test_llmtally_toml_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "llmtally.toml"
    cfg.write_text(
        '[models."qwen3-8b-local"]\ntokenizer = "qwen3"\n'
        '[models."qwen3-8b-local".price]\ncurrency = "CNY"\ninput = "0.1"\noutput = 0.3\n'
        '[models."gpt-4o"]\ntokenizer = "gpt-4o"\n'
        '[models."gpt-4o".price]\ncurrency = "USD"\n'
        'tiers = [{ up_to = 1000, input = "1", output = "2" }, { input = "3", output = "4" }]\n',
        encoding="utf-8",
    )
    book = load_prices(load_config(cfg))
    assert book.cost("qwen3-8b-local", NOW, 1000, 1000).amount == Decimal("0.0004")  # type: ignore[union-attr]
    assert book.cost("gpt-4o", NOW, 1001, 0).amount == Decimal("3003") / M  # type: ignore[union-attr]
    assert (
        book.cost("gpt-4o-2024-08-06", NOW, 1, 0) is None
    )  # the override replaced the entry and its aliases
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[models."x"]\ntokenizer = "gpt-4o"\n[models."x".price]\ncurrency = "CNY"\ninput = "-1"\noutput = "1"\n'
    )
    with pytest.raises(ConfigError, match="rate"):
        load_prices(load_config(bad))
    bad.write_text(
        '[models."x"]\ntokenizer = "gpt-4o"\n[models."x".price]\ncurrency = "BTC"\ninput = "1"\noutput = "1"\n'
    )
    with pytest.raises(ConfigError, match="currency"):
        load_prices(load_config(bad))


def test_price_only_override_without_tokenizer(tmp_path: Path) -> None:
    cfg = tmp_path / "llmtally.toml"
    cfg.write_text(
        '[models."deepseek-chat".price]\ncurrency = "CNY"\ninput = "2"\noutput = "8"\n', encoding="utf-8"
    )
    book = load_prices(load_config(cfg))
    assert book.cost("deepseek-chat", NOW, 1_000_000, 500_000).amount == Decimal("6")  # type: ignore[union-attr]
