"""The budgets package's public surface is deliberate: pinned here."""

from __future__ import annotations

import llmtally.budgets as budgets


def test_public_names_are_pinned() -> None:
    assert budgets.__all__ == [
        "DEFAULT_THRESHOLDS",
        "MATCH_COLUMNS",
        "PERIODS",
        "TOKENS",
        "Budget",
        "BudgetState",
        "BudgetStatus",
        "Period",
        "budget_findings",
        "budget_rows",
        "budget_words",
        "evaluate",
        "load_budgets",
        "parse_budgets",
        "period_of",
        "projection",
        "severity_of",
        "spend_line",
    ]
    for name in budgets.__all__:
        assert getattr(budgets, name).__doc__, name
