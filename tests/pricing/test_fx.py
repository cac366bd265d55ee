"""Exchange rates: the rate in force on each day, several currencies, inverse pairs, missing rates
(never a silent 0) and the ``[currency]`` table of llmtally.toml."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from llmtally import ConfigError
from llmtally._config import load_config
from llmtally.pricing import ExchangeRate, ExchangeRates, format_money, load_exchange_rates

TOML = """
[currency]
report = "CNY"

[[currency.rates]]
from = "USD"
to = "CNY"
rate = "7.1"
date = 2026-11-01

[[currency.rates]]
from = "USD"
to = "CNY"
rate = "7.25"
date = 2026-11-15

[[currency.rates]]
from = "CNY"
to = "HKD"
rate = "1.08"
date = "2026-10-01"
"""


@pytest.fixture
def fx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ExchangeRates:
    monkeypatch.delenv("LLMTALLY_REPORT_CURRENCY", raising=False)
    path = tmp_path / "llmtally.toml"
    path.write_text(TOML, encoding="utf-8")
    return load_exchange_rates(load_config(path))


def test_the_rate_in_force_is_the_latest_dated_on_or_before_the_day(fx: ExchangeRates) -> None:
    assert fx.report == "CNY"
    assert fx.rate("USD", "CNY", date(2026, 10, 31)) is None  # before the first rate
    assert fx.rate("USD", "CNY", date(2026, 11, 1)) == Decimal("7.1")  # from its own day
    assert fx.rate("USD", "CNY", date(2026, 11, 14)) == Decimal("7.1")
    assert fx.rate("USD", "CNY", date(2026, 11, 15)) == Decimal("7.25")
    assert fx.rate("USD", "CNY", date(2030, 1, 1)) == Decimal("7.25")  # until the next dated rate
    assert fx.rate("CNY", "CNY", date(2000, 1, 1)) == 1


def test_several_currencies_convert_exactly_into_one_total(fx: ExchangeRates) -> None:
    c = fx.convert(
        {"CNY": Decimal("1000"), "USD": Decimal("32.5"), "HKD": Decimal("108")}, date(2026, 11, 20)
    )
    # USD at 7.25 (the 15 November rate); HKD through the inverse of CNY→HKD 1.08
    assert c.amount == Decimal("1000") + Decimal("32.5") * Decimal("7.25") + Decimal("100")
    assert c.complete and c.priced and c.currency == "CNY"
    assert c.parts == {"CNY": Decimal("1000"), "USD": Decimal("32.5"), "HKD": Decimal("108")}
    assert [(r.base, r.quote, r.day) for r in c.rates] == [
        ("CNY", "HKD", date(2026, 10, 1)),
        ("USD", "CNY", date(2026, 11, 15)),
    ]
    assert c.as_dict()["amount"] == 1335.625
    # the same amounts on an earlier day use that day's USD rate
    assert fx.convert({"USD": 10}, date(2026, 11, 2)).amount == Decimal("71.0")
    # into another currency on request
    assert fx.convert({"CNY": 100}, date(2026, 11, 2), to="HKD").amount == Decimal("108.00")


def test_a_direct_rate_wins_over_an_older_inverse_and_a_newer_inverse_wins() -> None:
    fx = ExchangeRates(
        "CNY",
        (
            ExchangeRate(date(2026, 1, 1), "USD", "CNY", Decimal("7")),
            ExchangeRate(date(2026, 6, 1), "CNY", "USD", Decimal("0.125")),  # 1 USD = 8 CNY
            ExchangeRate(date(2026, 6, 1), "USD", "CNY", Decimal("7.5")),  # same day: direct wins
        ),
    )
    assert fx.rate("USD", "CNY", date(2026, 5, 31)) == Decimal("7")
    assert fx.rate("USD", "CNY", date(2026, 6, 1)) == Decimal("7.5")
    only_inverse = ExchangeRates("CNY", fx.rates[:2])
    assert only_inverse.rate("USD", "CNY", date(2026, 6, 2)) == Decimal("8")


def test_a_missing_rate_is_an_unconverted_part_never_zero(fx: ExchangeRates) -> None:
    c = fx.convert({"CNY": Decimal("5"), "EUR": Decimal("3.2"), "USD": Decimal("1")}, date(2026, 10, 20))
    assert c.amount == Decimal("5")  # only CNY: USD has no rate yet on 20 October, EUR none at all
    assert not c.complete and c.priced
    assert c.unconverted == {"EUR": Decimal("3.2"), "USD": Decimal("1")}
    d = c.as_dict()
    assert d["complete"] is False and d["unconverted"] == {"EUR": 3.2, "USD": 1.0}
    nothing = fx.convert({"EUR": Decimal("3")}, date(2026, 11, 20))
    assert not nothing.priced and nothing.as_dict()["amount"] is None  # not 0.0
    assert fx.convert({}, date(2026, 11, 20)).as_dict()["amount"] is None
    with pytest.raises(
        ConfigError, match=r"no EUR→CNY exchange rate in force on 2026-11-20.*currency\.rates"
    ):
        fx.convert({"EUR": Decimal("3")}, date(2026, 11, 20), strict=True)
    assert "[[currency.rates]]" in fx.missing_hint("EUR", date(2026, 11, 20))


def test_days_convert_each_at_their_own_rate(fx: ExchangeRates) -> None:
    total = fx.convert_days(
        {date(2026, 11, 14): {"USD": Decimal("10")}, date(2026, 11, 15): {"USD": Decimal("10"), "CNY": 1}}
    )
    assert total.amount == Decimal("71.0") + Decimal("72.50") + 1
    assert total.parts == {"USD": Decimal("20"), "CNY": Decimal("1")}
    assert len(total.rates) == 2
    with pytest.raises(ConfigError):
        _ = total + fx.convert({"CNY": 1}, date(2026, 11, 15), to="HKD")


def test_reporting_currency_from_env_and_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMTALLY_REPORT_CURRENCY", raising=False)
    empty = tmp_path / "empty.toml"
    empty.write_text("", encoding="utf-8")
    assert load_exchange_rates(load_config(empty)) == ExchangeRates("CNY", (), str(empty))
    monkeypatch.setenv("LLMTALLY_REPORT_CURRENCY", "usd")
    assert load_exchange_rates(load_config(empty)).report == "USD"
    assert load_exchange_rates(load_config(empty), report="EUR").report == "EUR"
    monkeypatch.setenv("LLMTALLY_REPORT_CURRENCY", "dollars")
    with pytest.raises(ConfigError, match="LLMTALLY_REPORT_CURRENCY"):
        load_exchange_rates(load_config(empty))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('from = "USD"\nto = "CNY"\nrate = 0\ndate = 2026-11-01', "> 0"),
        ('from = "USD"\nto = "CNY"\nrate = "seven"\ndate = 2026-11-01', "not a decimal"),
        ('from = "USD"\nto = "CNY"\nrate = 7.1', "missing: \\['date'\\]"),
        ('from = "USD"\nto = "CNY"\nrate = 7.1\ndate = "November"', "date must be a day"),
        ('from = "USD"\nto = "CNY"\nrate = 7.1\ndate = 2026-11-01\nvalid_until = 2027-01-01', "unknown"),
        ('from = "US Dollar"\nto = "CNY"\nrate = 7.1\ndate = 2026-11-01', "currency code"),
        ('from = "CNY"\nto = "cny"\nrate = 1\ndate = 2026-11-01', "both CNY"),
    ],
)
def test_bad_rate_entries_are_config_errors(tmp_path: Path, entry: str, message: str) -> None:
    path = tmp_path / "llmtally.toml"
    path.write_text(f"[[currency.rates]]\n{entry}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_exchange_rates(load_config(path))


def test_the_same_pair_and_day_twice_with_different_rates_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "llmtally.toml"
    twice = '[[currency.rates]]\nfrom = "USD"\nto = "CNY"\nrate = "{r}"\ndate = 2026-11-01\n'
    path.write_text(twice.format(r="7.1") + twice.format(r="7.2"), encoding="utf-8")
    with pytest.raises(ConfigError, match="twice"):
        load_exchange_rates(load_config(path))
    path.write_text(twice.format(r="7.1") + twice.format(r="7.10"), encoding="utf-8")
    assert len(load_exchange_rates(load_config(path)).rates) == 1  # the same rate twice is harmless
    path.write_text('[currency]\nreport = "CNY"\nrate = 7\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown keys"):
        load_exchange_rates(load_config(path))


def test_format_money() -> None:
    assert format_money(Decimal("1234.564"), "CNY") == "¥1,234.56"
    assert format_money(0.0042, "USD") == "$0.0042"
    assert format_money(12, "SGD") == "12.00 SGD"
