"""Budgets: limits on tokens or money per tenant, feature, user, model, service or any combination.

``[[budgets]]`` tables in llmtally.toml (:func:`load_budgets`; the shape is in ``_config``) are
evaluated on every intraday load and in the daily report::

    from llmtally.budgets import budget_findings, evaluate, load_budgets

    statuses = evaluate(store, load_budgets(), now=cut, tz="Asia/Shanghai", rates=load_exchange_rates())
    for budget, findings in budget_findings(statuses, store, now=cut).items():
        ...  # deliver findings to budget.channels (llmtally.alerts.deliver)

:func:`evaluate` gives each budget's :class:`BudgetStatus` (spend so far in its period, share,
linear projection and the day the limit runs out); :func:`budget_findings` fires each threshold
once per period through a :class:`BudgetState` (both stores are one) and words the alerts in
Chinese and English; :func:`budget_rows` is what the report and the usage page show.
"""

from ._config import DEFAULT_THRESHOLDS, MATCH_COLUMNS, PERIODS, TOKENS, Budget, load_budgets, parse_budgets
from ._evaluate import BudgetStatus, evaluate
from ._findings import BudgetState, budget_findings, severity_of
from ._period import Period, period_of
from ._words import budget_rows, budget_words, projection, spend_line

__all__ = [
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
