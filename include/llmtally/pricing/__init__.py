"""Model prices and request costs, in exact decimals.

The shipped table (``prices.toml``, with a dated source note) covers common OpenAI, Qwen/DashScope and
DeepSeek models; ``[models."NAME".price]`` in llmtally.toml adds or replaces entries::

    [models."qwen3-8b-selfhosted".price]
    currency = "CNY"
    input = "0.2"          # per 1M tokens (``unit``), decimal strings keep the rates exact
    output = "0.6"
    cached_input = "0.05"  # optional; reasoning, thinking_output likewise
    # tiers = [{ up_to = 32768, input = "...", output = "..." }, { input = "...", output = "..." }]
    # prices = [{ effective_from = 2026-01-01, input = "...", output = "..." }, ...]

A model found in neither place costs ``None``: never a guess.

Costs stay in their own currency; :func:`load_exchange_rates` reads ``[currency]`` (the reporting
currency and a dated ``[[currency.rates]]`` table) and :meth:`ExchangeRates.convert` turns
``{currency: amount}`` of a day into one :class:`Converted` total with its parts (see ``_fx``).
"""

from ._fx import (
    DEFAULT_REPORT_CURRENCY,
    Converted,
    ExchangeRate,
    ExchangeRates,
    format_money,
    load_exchange_rates,
)
from ._table import Cost, ModelPrice, Price, PriceBook, Rates, load_prices, model_price

__all__ = [
    "DEFAULT_REPORT_CURRENCY",
    "Converted",
    "Cost",
    "ExchangeRate",
    "ExchangeRates",
    "ModelPrice",
    "Price",
    "PriceBook",
    "Rates",
    "format_money",
    "load_exchange_rates",
    "load_prices",
    "model_price",
]
