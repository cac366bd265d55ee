"""Tables as CSV for spreadsheets: UTF-8 with a BOM (Excel then reads Chinese names correctly),
values as the store summed them, and text cells a spreadsheet would run as a formula neutralised.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is written with a
leading ``'`` (OWASP's advice against CSV injection): a feature named ``=HYPERLINK(…)`` shows as
text, not as a live formula.  Only text columns are neutralised; numbers (drift can be negative)
are written as numbers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from ._tables import Column, Table

__all__ = ["BOM", "FORMULA_PREFIXES", "csv_bytes", "neutralise", "plain_value", "table_csv"]

BOM = "\ufeff"
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a cell as a formula."""


def neutralise(text: str) -> str:
    """``text`` made inert for spreadsheets (a leading ``'`` when it could start a formula)."""
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def plain_value(col: Column, value: Any) -> Any:
    """A cell's exact value for a file: numbers as they are, money in full precision, dates ISO."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, date | datetime):
        return value.isoformat()
    if col.kind in ("text", "time"):
        return neutralise(str(value))
    return value


def csv_bytes(columns: Sequence[Column], rows: Iterable[Sequence[Any]]) -> bytes:
    """The CSV file of a table: a header of column keys, then every row (UTF-8 with BOM, CRLF)."""
    out = io.StringIO()
    out.write(BOM)
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([c.key for c in columns])
    for row in rows:
        writer.writerow([plain_value(c, v) for c, v in zip(columns, row, strict=True)])
    return out.getvalue().encode("utf-8")


def table_csv(table: Table) -> bytes:
    """:func:`csv_bytes` of every row of ``table`` (also those the page does not show)."""
    return csv_bytes(table.columns, table.rows)
