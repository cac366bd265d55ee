"""The chargeback export: usage of a date range by chosen dimensions, as CSV or Parquet.

``llmtally export`` writes :func:`usage_export`; the page's ranked tables are the same table
(:func:`~llmtally.web._tables.usage_table`, same order: most billed tokens first), so the CLI and a
CSV downloaded from the page give the same numbers, byte for byte for one dimension.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from .._exceptions import ConfigError, InputError
from ..store import DIMENSIONS, UsageStore, Where
from ._data import read_usage
from ._i18n import words
from ._query import MAX_DAYS
from ._tables import Column, Table, usage_table

__all__ = ["EXPORT_BY", "parquet_bytes", "usage_export"]

EXPORT_BY = ("day", *DIMENSIONS, "http_status")
"""What an export can be broken down by (``user`` is accepted for ``user_id``)."""

_ALIASES = {"user": "user_id"}


def export_keys(by: Sequence[str]) -> list[str]:
    """``by`` checked against :data:`EXPORT_BY` (aliases resolved, no repeats)."""
    keys = [_ALIASES.get(k.strip(), k.strip()) for k in by if k.strip()]
    bad = [k for k in keys if k not in EXPORT_BY]
    if bad or not keys:
        raise InputError(
            f"cannot break usage down by {', '.join(bad) or 'nothing'}; use {', '.join(EXPORT_BY)}"
        )
    if len(set(keys)) != len(keys):
        raise InputError(f"{', '.join(keys)}: a dimension is named twice")
    return keys


def usage_export(
    store: UsageStore,
    start: date,
    end: date,
    by: Sequence[str],
    where: Where | None = None,
    *,
    lang: str = "en",
) -> Table:
    """Usage of the days ``[start, end]`` (matching ``where``) per combination of ``by``, most
    billed tokens first, with each group's share of the tokens and its cost per currency."""
    keys = export_keys(by)
    if start > end or (end - start).days + 1 > MAX_DAYS:
        raise InputError(f"{start} to {end}: give a range of 1 to {MAX_DAYS} days, start first")
    w = words(lang)
    with store.snapshot():
        usage = read_usage(store, keys, start, end, dict(where or {}))
    groups = sorted(usage.items(), key=lambda kv: (-kv[1].total_tokens, tuple(map(str, kv[0]))))
    total = sum(u.total_tokens for _, u in groups)
    kinds = {"day": "date", "http_status": "int"}
    cols = [Column(k, w.get(k, k), kinds.get(k, "text")) for k in keys]
    return usage_table("export", "export", cols, groups, w, total_tokens=total)


def parquet_bytes(table: Table) -> bytes:
    """``table`` as a Parquet file: typed columns (money as ``decimal128(38, 12)``, exact)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ConfigError("Parquet output needs pyarrow: pip install 'llmtally[export]'") from exc
    types: dict[str, Any] = {
        "text": pa.string(),
        "date": pa.date32(),
        "int": pa.int64(),
        "share": pa.float64(),
        "money": pa.decimal128(38, 12),
        "pct": pa.float64(),
        "change": pa.float64(),
        "float": pa.float64(),
        "time": pa.string(),
    }
    cent = Decimal("1e-12")

    def values(i: int, kind: str) -> list[Any]:
        col = [r[i] for r in table.rows]
        return [None if v is None else v.quantize(cent) for v in col] if kind == "money" else col

    arrays = {c.key: pa.array(values(i, c.kind), type=types[c.kind]) for i, c in enumerate(table.columns)}
    buf = io.BytesIO()
    pq.write_table(pa.table(arrays), buf)
    return buf.getvalue()
