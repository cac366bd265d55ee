"""``[[budgets]]`` in llmtally.toml: the documented shape parses, defaults apply, mistakes name the
budget and the key."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from llmtally import ConfigError
from llmtally._config import load_config
from llmtally.budgets import DEFAULT_THRESHOLDS, Budget, load_budgets, parse_budgets

EXAMPLE = """
timezone = "Asia/Shanghai"

[[budgets]]
name = "chat-monthly"
match = { feature = "chat", tenant = ["acme", "globex"], user = "u1" }
limit = 50000
unit = "cny"
period = "month"
thresholds = [0.95, 0.8, 1.0]
channels = ["alerts_slack", "alerts_feishu"]

[[budgets]]
name = "everything-daily"
limit = 2_000_000
unit = "tokens"
period = "day"
"""


def test_the_documented_shape_parses(tmp_path: Path) -> None:
    path = tmp_path / "llmtally.toml"
    path.write_text(EXAMPLE, encoding="utf-8")
    chat, everything = load_budgets(load_config(path))
    assert chat == Budget(
        name="chat-monthly",
        limit=Decimal(50000),
        unit="CNY",
        period="month",
        match=(("feature", ("chat",)), ("tenant", ("acme", "globex")), ("user_id", ("u1",))),
        thresholds=(0.8, 0.95, 1.0),
        channels=("alerts_slack", "alerts_feishu"),
    )
    assert chat.where == {"feature": ["chat"], "tenant": ["acme", "globex"], "user_id": ["u1"]}
    assert chat.is_money and chat.covers() == "feature=chat, tenant=acme|globex, user_id=u1"
    assert everything.unit == "tokens" and everything.limit == 2_000_000 and not everything.is_money
    assert everything.match == () and everything.where == {} and everything.covers() == "*"
    assert everything.thresholds == DEFAULT_THRESHOLDS == (0.8, 0.95, 1.0)
    assert everything.channels == ()


def test_no_budgets_is_an_empty_tuple(tmp_path: Path) -> None:
    path = tmp_path / "llmtally.toml"
    path.write_text('timezone = "UTC"\n', encoding="utf-8")
    assert load_budgets(load_config(path)) == ()
    assert parse_budgets([]) == ()


def test_a_period_defaults_to_month_and_a_decimal_string_limit_is_exact() -> None:
    (b,) = parse_budgets([{"name": "b", "limit": "1234.56", "unit": "USD"}])
    assert b.period == "month" and b.limit == Decimal("1234.56")


def test_budgets_must_be_an_array_of_tables(tmp_path: Path) -> None:
    path = tmp_path / "llmtally.toml"
    path.write_text('[budgets]\nname = "x"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[\[budgets\]\]"):
        load_budgets(load_config(path))


GOOD: dict[str, Any] = {"name": "b1", "limit": 100, "unit": "tokens"}


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"name": ""}, r"budgets\[0\] needs name"),
        ({"name": 7}, r"budgets\[0\] needs name"),
        ({"limits": 5}, r"'b1'.*unknown key\(s\) limits"),
        ({"limit": None}, r"'b1'.*limit must be a number"),
        ({"limit": -5}, r"'b1'.*limit .* must be a number > 0"),
        ({"limit": 0}, r"'b1'.*limit"),
        ({"limit": "lots"}, r"'b1'.*limit 'lots' is not a number"),
        ({"limit": True}, r"'b1'.*limit must be a number"),
        ({"limit": 10.5}, r"'b1'.*whole number of tokens"),
        ({"unit": "dollars"}, r"'b1'.*unit 'DOLLARS' must be \"tokens\" or a currency code"),
        ({"unit": 3}, r"'b1'.*unit must be"),
        ({"period": "year"}, r"'b1'.*period 'year' must be one of day, week, month"),
        ({"match": {"region": "eu"}}, r"'b1'.*match cannot use 'region'"),
        ({"match": {"feature": []}}, r"'b1'.*match.feature must be a name or a non-empty list"),
        ({"match": {"feature": [1]}}, r"'b1'.*match.feature"),
        ({"match": {"user": "a", "user_id": "b"}}, r"'b1'.*user_id twice"),
        ({"match": "chat"}, r"'b1'.*match must be a table"),
        ({"thresholds": []}, r"'b1'.*thresholds must be a non-empty list"),
        ({"thresholds": [0.8, 0.8]}, r"'b1'.*thresholds .* each given once"),
        ({"thresholds": [0, 1.0]}, r"'b1'.*thresholds must be a non-empty list of shares > 0"),
        ({"thresholds": ["80%"]}, r"'b1'.*thresholds must be a list of shares"),
        ({"thresholds": 0.8}, r"'b1'.*thresholds must be a list"),
        ({"channels": [""]}, r"'b1'.*channels must be a list of Airflow connection ids"),
        ({"channels": {"a": 1}}, r"'b1'.*channels must be a list"),
        ({"lang": "zh"}, r"'b1'.*lang"),  # a message's language is its channel's (extra.lang) or the run's
    ],
)
def test_mistakes_name_the_budget_and_the_key(change: dict[str, Any], words: str) -> None:
    table = {**GOOD, **change}
    if change.get("limit", 1) is None:
        table["limit"] = {}
    with pytest.raises(ConfigError, match=words):
        parse_budgets([table], "conf/llmtally.toml")


def test_limit_and_unit_are_required() -> None:
    with pytest.raises(ConfigError, match=r"'b1': needs limit and unit"):
        parse_budgets([{"name": "b1", "limit": 5}])


def test_names_are_unique() -> None:
    with pytest.raises(ConfigError, match=r"'b1' is given twice"):
        parse_budgets([GOOD, {**GOOD, "unit": "CNY"}])


def test_errors_name_the_file() -> None:
    with pytest.raises(ConfigError, match=r"^conf/llmtally.toml: \[\[budgets\]\] budget 'b1': period"):
        parse_budgets([{**GOOD, "period": "hour"}], "conf/llmtally.toml")


def test_a_budget_built_in_code_is_checked_too() -> None:
    with pytest.raises(ConfigError, match="budget 'x': period 'fortnight'"):
        Budget("x", Decimal(5), "tokens", period="fortnight")
    with pytest.raises(ConfigError, match="match cannot use 'user'"):
        Budget("x", Decimal(5), "tokens", match=(("user", ("u",)),))


def _commented_block(text: str) -> str:
    lines = text.splitlines()
    start = lines.index("# [[budgets]]")
    block = []
    for line in lines[start:]:
        if not line.startswith("# "):
            break
        block.append(line[2:])
    return "\n".join(block)


def _fenced_budgets(text: str) -> str:
    start = text.index("```toml\n[[budgets]]")
    return text[start + len("```toml\n") : text.index("```", start + 7)]


def test_the_examples_in_llmtally_toml_and_the_readme_parse() -> None:
    import tomllib

    from tests.support import REPO_ROOT

    toml = tomllib.loads(_commented_block((REPO_ROOT / "llmtally.toml").read_text(encoding="utf-8")))
    readme = tomllib.loads(_fenced_budgets((REPO_ROOT / "README.md").read_text(encoding="utf-8")))
    for raw in (toml, readme):
        (b,) = parse_budgets(raw["budgets"])
        assert (b.name, b.unit, b.period, b.limit) == ("chat-monthly", "CNY", "month", 50000)
        assert b.where == {"feature": ["chat"], "tenant": ["acme", "globex"]}
        assert b.thresholds == (0.8, 0.95, 1.0) and b.channels == ("alerts_feishu",)
