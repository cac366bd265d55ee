"""What a request to the usage page asks for, checked: a day range, filters, a language.

Every parameter comes from a fixed allow-list (:data:`PARAMS`); a filter names a dimension of
``usage_hourly`` (:data:`FILTERS`), never a column or table of the caller's choosing, and its value is
compared as data by the store.  Anything else is refused with an :class:`InputError` saying what is
allowed (the app answers 400).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, timedelta
from urllib.parse import urlencode

from .._exceptions import InputError
from ..report._i18n import LANGS

__all__ = [
    "DEFAULT_DAYS",
    "FILTERS",
    "MAX_DAYS",
    "MAX_NAME",
    "PARAMS",
    "TOP_DIMENSIONS",
    "PageQuery",
    "parse_date",
    "parse_query",
]

TOP_DIMENSIONS = ("feature", "user_id", "tenant", "model", "service")
"""The dimensions the page ranks (each a table with drill-down links)."""

FILTERS = (*TOP_DIMENSIONS, "status")
"""Dimensions a request may filter on (``?feature=写作&model=qwen-plus``)."""

PARAMS = frozenset({"start", "end", "day", "lang", *FILTERS})
"""Every query parameter the page and its CSV downloads accept."""

DEFAULT_DAYS = 29
"""The default range: yesterday and the 28 days before."""

MAX_DAYS = 366
"""The longest range one request may ask for (a year, leap years included)."""

MAX_NAME = 200
"""The longest filter value accepted (names in ``usage_hourly`` are tags, not documents)."""


def parse_date(name: str, value: str) -> date:
    """``value`` as a ``YYYY-MM-DD`` date, or an :class:`InputError` naming the parameter."""
    try:
        if len(value) != 10:
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise InputError(f"{name}={value[:40]!r} is not a date in YYYY-MM-DD form") from None


def _name(dimension: str, value: str) -> str:
    if len(value) > MAX_NAME:
        raise InputError(f"{dimension} is longer than {MAX_NAME} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in value):
        raise InputError(f"{dimension} contains control characters")
    return value


@dataclass(frozen=True)
class PageQuery:
    """A checked request: the days ``[start, end]``, filters ``(dimension, value)``, a language."""

    start: date
    end: date
    lang: str
    filters: tuple[tuple[str, str], ...] = ()

    @property
    def days(self) -> int:
        """Days in the range."""
        return (self.end - self.start).days + 1

    @property
    def where(self) -> dict[str, str]:
        """The filters as the store's ``where``."""
        return dict(self.filters)

    def with_filter(self, dimension: str, value: str) -> PageQuery:
        """This query narrowed to ``dimension = value`` (a drill-down link)."""
        kept = {d: v for d, v in self.filters if d != dimension}
        kept[dimension] = value
        return replace(self, filters=tuple(sorted(kept.items())))

    def without(self, dimension: str) -> PageQuery:
        """This query without the filter on ``dimension``."""
        return replace(self, filters=tuple((d, v) for d, v in self.filters if d != dimension))

    def with_days(self, start: date, end: date) -> PageQuery:
        """The same filters and language over other days."""
        return replace(self, start=start, end=end)

    def query_string(self, **extra: str) -> str:
        """``start=…&end=…&lang=…&feature=…`` for links and forms."""
        pairs: list[tuple[str, str]] = [
            ("start", self.start.isoformat()),
            ("end", self.end.isoformat()),
            ("lang", self.lang),
            *self.filters,
            *extra.items(),
        ]
        return urlencode(pairs)


def _single(params: Iterable[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in params:
        if key not in PARAMS:
            allowed = ", ".join(sorted(PARAMS))
            raise InputError(f"unknown parameter {key[:40]!r}; the page takes {allowed}")
        if key in out:
            raise InputError(f"parameter {key} is given more than once")
        out[key] = value
    return out


def parse_query(
    params: Iterable[tuple[str, str]] | Mapping[str, str], *, today: date, default_lang: str
) -> PageQuery:
    """Check a request's parameters; ``today`` is the local date (the default range ends yesterday).

    ``day=D`` asks for one day; ``start``/``end`` for a range (either alone: the other end is the
    default's); neither: yesterday and the 28 days before.
    """
    given = _single(params.items() if isinstance(params, Mapping) else params)
    lang = given.get("lang") or default_lang
    if lang not in LANGS:
        raise InputError(f"lang={lang[:20]!r} is not supported; use one of {', '.join(LANGS)}")
    if "day" in given and ("start" in given or "end" in given):
        raise InputError("give either day or start/end, not both")
    if "day" in given:
        start = end = parse_date("day", given["day"])
    else:
        end = parse_date("end", given["end"]) if given.get("end") else today - timedelta(days=1)
        start = (
            parse_date("start", given["start"])
            if given.get("start")
            else end - timedelta(days=DEFAULT_DAYS - 1)
        )
    if start > end:
        raise InputError(f"start {start} is after end {end}")
    if (end - start).days + 1 > MAX_DAYS:
        raise InputError(f"{start} to {end} is more than {MAX_DAYS} days; ask for a year at most")
    filters = tuple(sorted((d, _name(d, given[d])) for d in FILTERS if d in given))
    return PageQuery(start, end, lang, filters)
