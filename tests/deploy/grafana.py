"""What Grafana does to a PostgreSQL panel's SQL before the database sees it, for the macros and
variable forms grafana/dashboards/llmtally.json uses — and nothing else: anything else is an error,
so a dashboard edit that needs more makes the test say so instead of passing untested SQL.

Two passes, in Grafana's order:

1. **Template variables** (the browser, ``templateSrv.replace`` with the SQL data sources'
   ``interpolateVariable``): ``$name`` and ``${name}``.  A multi-value or include-all variable
   becomes its selected values, each quoted as an SQL literal (``'`` doubled), joined by ``,``;
   "All" (no custom all value) selects every option.  A single-value variable is inserted with
   ``'`` doubled and no quotes.  Formats (``${name:csv}``), ``[[name]]``, built-ins such as
   ``$__interval`` and unknown names are refused here.
2. **Macros** (the server, ``pkg/tsdb/grafana-postgresql-datasource/macros.go``): matched as
   ``$name(args)`` with no ``)`` inside the arguments, which are split on ``,`` and trimmed;
   ``$__time(c)`` → ``c AS "time"``, ``$__timeFilter(c)`` → ``c BETWEEN 'from' AND 'to'``,
   ``$__timeFrom()`` → ``'from'``, ``$__timeTo()`` → ``'to'``, the range's ends as RFC 3339 UTC
   (whole seconds here).  Any other macro is refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MACROS = ("__time", "__timeFilter", "__timeFrom", "__timeTo")
"""The macros this expander knows (the ones the dashboard uses)."""

_MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^)]*)\)")  # as the PostgreSQL data source matches them
_VARIABLE = re.compile(r"\$\{([^}]*)\}|\[\[([^\]]*)\]\]|\$(\w+)")


class ExpansionError(ValueError):
    """The SQL uses a macro or variable form this expander (and so the test) does not cover."""


@dataclass(frozen=True)
class Variable:
    """A dashboard variable's selected values; ``multi`` for multi-value or include-all variables."""

    values: tuple[str, ...]
    multi: bool


@dataclass(frozen=True)
class TimeRange:
    """The dashboard's time range (aware instants; sent to the server in UTC)."""

    start: datetime
    end: datetime

    def iso(self, when: datetime) -> str:
        if when.tzinfo is None or when.microsecond:
            raise ExpansionError("use aware instants in whole seconds")
        return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def interpolate(sql: str, variables: Mapping[str, Variable]) -> str:
    """Pass 1: template variables, as the browser replaces them for an SQL data source."""

    def one(m: re.Match[str]) -> str:
        braced, legacy, plain = m.group(1), m.group(2), m.group(3)
        if legacy is not None:
            raise ExpansionError(f"[[{legacy}]] is not covered: write ${legacy}")
        name = braced if braced is not None else plain
        if braced is not None and (":" in braced or "." in braced):
            raise ExpansionError(f"${{{braced}}}: variable formats and fields are not covered")
        if name.startswith("__"):
            if plain is not None and sql[m.end() : m.end() + 1] == "(":
                return m.group(0)  # a macro: the server expands it
            raise ExpansionError(f"built-in variable ${name} is not covered")
        if name not in variables:
            raise ExpansionError(f"${name} is not a variable of the dashboard")
        var = variables[name]
        if var.multi:
            return ",".join(_quote(v) for v in var.values)
        if len(var.values) != 1:
            raise ExpansionError(f"single-value variable ${name} has {len(var.values)} values")
        return var.values[0].replace("'", "''")

    return _VARIABLE.sub(one, sql)


def expand_macros(sql: str, time_range: TimeRange) -> str:
    """Pass 2: the PostgreSQL data source's macros, as the Grafana server expands them."""
    start, end = time_range.iso(time_range.start), time_range.iso(time_range.end)

    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        args = [a.strip() for a in m.group(2).split(",")]
        if name not in MACROS:
            raise ExpansionError(f"macro ${name}() is not covered (known: {', '.join(MACROS)})")
        if name in ("__time", "__timeFilter") and not args[0]:
            raise ExpansionError(f"${name}() needs a column")
        if name == "__time":
            return f'{args[0]} AS "time"'
        if name == "__timeFilter":
            return f"{args[0]} BETWEEN '{start}' AND '{end}'"
        return f"'{start}'" if name == "__timeFrom" else f"'{end}'"

    out = _MACRO.sub(one, sql)
    if "$" in out:
        raise ExpansionError(f"something was left unexpanded: {out[out.index('$') :][:40]!r}")
    return out


def expand(sql: str, variables: Mapping[str, Variable], time_range: TimeRange) -> str:
    """What the database receives for ``sql``."""
    return expand_macros(interpolate(sql, variables), time_range)


# ---------------------------------------------------------------- walking the dashboard


@dataclass(frozen=True)
class Query:
    """One SQL query of the dashboard: where it is, its format, and what it must satisfy."""

    where: str
    sql: str
    format: str
    panel: Mapping[str, Any] = field(default_factory=dict)
    repeat: str | None = None
    """The variable the panel (or its row) repeats by: it runs once per value."""


def load(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def all_panels(dashboard: Mapping[str, Any]) -> Iterator[tuple[dict[str, Any], str | None]]:
    """Every panel (rows and those inside collapsed rows too) with the variable it repeats by."""
    row_repeat: str | None = None
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            row_repeat = panel.get("repeat") or None
            yield panel, None
            for inner in panel.get("panels", []):
                yield inner, inner.get("repeat") or row_repeat
            continue
        yield panel, panel.get("repeat") or row_repeat


def panel_queries(dashboard: Mapping[str, Any]) -> list[Query]:
    """Every panel target's SQL (rows have none)."""
    out: list[Query] = []
    for panel, repeat in all_panels(dashboard):
        for target in panel.get("targets", []):
            where = f"panel {panel.get('id')} {panel.get('title')!r} target {target.get('refId')}"
            out.append(Query(where, target["rawSql"], target.get("format", "table"), panel, repeat))
    return out


def annotation_queries(dashboard: Mapping[str, Any], datasource_type: str) -> list[Query]:
    """The SQL annotations (Grafana's built-in annotation entry has no SQL)."""
    out: list[Query] = []
    for anno in dashboard.get("annotations", {}).get("list", []):
        if anno.get("datasource", {}).get("type") != datasource_type:
            continue
        out.append(Query(f"annotation {anno.get('name')!r}", anno["target"]["rawSql"], "table"))
    return out


def resolve_variables(
    dashboard: Mapping[str, Any], run: Any, time_range: TimeRange
) -> tuple[dict[str, Variable], dict[str, list[str]]]:
    """Run the templating queries in order, each expanded with the variables before it, and select
    their defaults ("All" for include-all variables).  ``run(where, sql)`` returns ``(columns,
    rows)``.  Returns the variables and each query variable's options."""
    variables: dict[str, Variable] = {}
    options: dict[str, list[str]] = {}
    for var in dashboard.get("templating", {}).get("list", []):
        name = var["name"]
        if var.get("type") != "query":
            raise ExpansionError(f"variable {name}: only query variables are covered")
        sql = var["query"] if isinstance(var["query"], str) else var["query"]["rawSql"]
        columns, rows = run(f"variable {name!r}", expand(sql, variables, time_range))
        # __text/__value pairs, else every column's values are options (Grafana's metric find)
        if "__value" in columns:
            values = [row[columns.index("__value")] for row in rows]
        else:
            values = [cell for row in rows for cell in row]
        options[name] = [str(v) for v in dict.fromkeys(values)]
        multi = bool(var.get("multi") or var.get("includeAll"))
        if not multi:
            variables[name] = Variable((options[name][0],) if options[name] else (), False)
        else:
            variables[name] = Variable(tuple(options[name]), True)
    return variables, options


def each_run(query: Query, variables: Mapping[str, Variable]) -> Iterator[dict[str, Variable]]:
    """The variable sets a query runs with: once, or once per value of the variable it repeats by
    (Grafana repeats the panel or row with that variable set to one value)."""
    if query.repeat is None:
        yield dict(variables)
        return
    for value in variables[query.repeat].values:
        yield {**variables, query.repeat: Variable((value,), True)}


def datasource_refs(dashboard: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every data source reference: panels, their targets, variables, SQL annotations."""
    for panel, _ in all_panels(dashboard):
        if "datasource" in panel:
            yield f"panel {panel.get('id')}", panel["datasource"]
        for target in panel.get("targets", []):
            yield f"panel {panel.get('id')} target {target.get('refId')}", target.get("datasource", {})
    for var in dashboard.get("templating", {}).get("list", []):
        yield f"variable {var['name']}", var.get("datasource", {})
    for anno in dashboard.get("annotations", {}).get("list", []):
        if not anno.get("builtIn"):
            yield f"annotation {anno.get('name')}", anno.get("datasource", {})
            yield f"annotation {anno.get('name')} target", anno.get("target", {}).get("datasource", {})


def overlaps(boxes: Sequence[tuple[str, Mapping[str, int]]]) -> list[tuple[str, str]]:
    """Pairs of panels whose grid positions overlap (Grafana would move one of them)."""
    out = []
    for i, (a, ga) in enumerate(boxes):
        for b, gb in boxes[i + 1 :]:
            if (ga["x"] < gb["x"] + gb["w"] and gb["x"] < ga["x"] + ga["w"]
                    and ga["y"] < gb["y"] + gb["h"] and gb["y"] < ga["y"] + ga["h"]):  # fmt: skip
                out.append((a, b))
    return out
