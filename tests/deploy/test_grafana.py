"""Grafana on the aggregates: every panel's, variable's and annotation's SQL in
grafana/dashboards/llmtally.json, expanded as Grafana expands it (:mod:`tests.deploy.grafana`), runs
as the data source's read-only login (made by docker/grafana-reader.sql, as docker/init-db.sh makes
it) against a database loaded by real ``dag.test()`` runs — three final days and one provisional day
of the sample traffic with failed calls, drift, estimates, quarantined lines and a loss marker — and
returns rows with the columns its panel uses.  Grafana itself is not installed here."""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
import yaml
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.deploy.grafana import (
    ExpansionError,
    Query,
    TimeRange,
    Variable,
    all_panels,
    annotation_queries,
    datasource_refs,
    each_run,
    expand,
    load,
    overlaps,
    panel_queries,
    resolve_variables,
)
from tests.e2e.expected import pipeline_env
from tests.support import REPO_ROOT, SHARED, environment

TZ = "Asia/Shanghai"
LAST = date(2026, 11, 20)
DAYS = [LAST - timedelta(days=n) for n in (2, 1, 0)]  # loaded by llm_usage_daily: final
TODAY = LAST + timedelta(days=1)  # loaded by llm_usage_hourly at 12:00: provisional
SCHEMA = "llmtally_grafana"
DASHBOARD = REPO_ROOT / "grafana" / "dashboards" / "llmtally.json"
DATASOURCES = REPO_ROOT / "grafana" / "provisioning" / "datasources" / "llmtally.yaml"
READER_SQL = REPO_ROOT / "docker" / "grafana-reader.sql"
LOST = 37  # records in the loss marker written into the sample logs
TIMESTAMPTZ, TEXT = 1184, 25
NUMBERS = {20, 21, 23, 700, 701, 1700}  # int8 int2 int4 float4 float8 numeric


def local(day: date, hour: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=ZoneInfo(TZ))


RANGE = TimeRange(local(DAYS[0]), local(TODAY + timedelta(days=1)) - timedelta(seconds=1))
"""The dashboard's time range in the test: the four loaded days, local midnight to midnight."""


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load(DASHBOARD)


@pytest.fixture(scope="module")
def datasource() -> dict[str, Any]:
    data = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))
    (ds,) = data["datasources"]
    assert isinstance(ds, dict)
    return ds


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample traffic (the real logger) for the four days, plus a loss marker on the middle day
    as a service's logger writes it after dropping records."""
    from llmtally.logging._build import loss_line

    sys.path.insert(0, str(REPO_ROOT / "examples"))
    from sample_traffic import generate

    root = tmp_path_factory.mktemp("service-logs")
    generate(root, days=len(DAYS) + 1, per_day=60, shared=SHARED, end=TODAY)
    first = local(DAYS[1], 10).timestamp()
    marker = loss_line(rid=secrets.token_hex(16), at=first, service="support-bot", host="app-1", pid=4242,
                       records=LOST, first=first, last=first + 90, reason="queue full")  # fmt: skip
    (root / "support-bot" / "usage-support-bot-app-1-4242-20261119T020000-1.jsonl").write_text(marker + "\n")
    return root


@pytest.fixture(scope="module")
def loaded(
    airflow_db: str, logs: Path, pg_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The session database with SCHEMA loaded by real runs of llm_usage_daily (each day of DAYS) and
    llm_usage_hourly (TODAY until 12:00)."""
    from airflow.dag_processing.dagbag import DagBag

    values = {
        **pipeline_env(tmp_path_factory.mktemp("run"), logs, pg_dsn, SHARED),
        "LLMTALLY_DB_SCHEMA": SCHEMA,
    }
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
    with environment(values):
        dags = DagBag(str(REPO_ROOT / "dags")).dags
        for day in DAYS:
            assert dags["llm_usage_daily"].test(run_conf={"day": day.isoformat()}).state == "success"
        intraday = dags["llm_usage_hourly"].test(logical_date=local(TODAY, 12), run_conf={"alerts": False})
        assert intraday.state == "success"
        yield pg_dsn


@pytest.fixture(scope="module")
def reader(loaded: str) -> Iterator[str]:
    """DSN of a login made by docker/grafana-reader.sql, run with psql as docker/init-db.sh runs it."""
    psql = shutil.which("psql")
    if psql is None:
        pytest.fail("psql (the PostgreSQL client) is needed to run docker/grafana-reader.sql")
    name, password = f"grafana_{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    params = conninfo_to_dict(loaded)
    done = subprocess.run(
        [psql, "-X", "-q", make_conninfo("", **params), "-v", f"reader={name}", "-v", f"password={password}",
         "-v", f"schema={SCHEMA}", "-f", str(READER_SQL)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    try:
        yield make_conninfo("", **{**params, "user": name, "password": password})
    finally:
        with psycopg.connect(loaded, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture
def db(reader: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    with psycopg.connect(reader, autocommit=True) as conn:
        yield conn


class Reader:
    """Runs expanded SQL on the read-only login; keeps each result's column types by where."""

    def __init__(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        self.conn = conn
        self.types: dict[str, list[int]] = {}

    def __call__(self, where: str, text: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        try:
            cur = self.conn.execute(text.encode())  # bytes: the SQL goes out exactly as Grafana sends it
        except psycopg.Error as exc:
            raise AssertionError(f"{type(exc).__name__}: {exc}\n{text}") from exc
        assert cur.description is not None, where
        self.types[where] = [c.type_code for c in cur.description]
        return [c.name for c in cur.description], cur.fetchall()


def _field_names(panel: dict[str, Any]) -> set[str]:
    """Columns the panel's field config names (overrides matched by name)."""
    return {
        o["matcher"]["options"]
        for o in panel.get("fieldConfig", {}).get("overrides", [])
        if o["matcher"]["id"] == "byName"
    }


def _problems(query: Query, columns: list[str], types: list[int], rows: list[tuple[Any, ...]]) -> list[str]:
    """What is wrong with one query's result for its panel (empty: nothing)."""
    out: list[str] = []
    if not rows:
        out.append("returned no rows")
    if len(set(columns)) != len(columns):
        out.append(f"duplicate columns {columns}")
    missing = _field_names(dict(query.panel)) - set(columns)
    if missing:
        out.append(f"its field config names columns the query does not return: {sorted(missing)}")
    reduce = query.panel.get("options", {}).get("reduceOptions", {})
    if reduce.get("fields") and not any(re.search(reduce["fields"].strip("/"), c) for c in columns):
        out.append(f"the stat's fields {reduce['fields']!r} match no column of {columns}")
    for sort in query.panel.get("options", {}).get("sortBy", []):
        if sort["displayName"] not in columns:
            out.append(f"sorted by {sort['displayName']!r}, not a column of {columns}")
    if "cost" in columns and "currency" not in columns and query.repeat != "currency":
        out.append(
            "sums cost without keeping currencies apart (no currency column, not repeated by currency)"
        )
    if query.format == "time_series":
        if "time" not in columns:
            return [*out, f"a time series without a time column: {columns}"]
        if types[columns.index("time")] != TIMESTAMPTZ:
            out.append("its time column is not a timestamptz")
        times = [r[columns.index("time")] for r in rows]
        if times != sorted(times):
            out.append("rows are not ordered by time")
        values = [i for i, c in enumerate(columns) if c not in ("time", "metric")]
        # Grafana names each series by a metric column when there are exactly 3 columns
        if "metric" in columns and (len(columns) != 3 or types[columns.index("metric")] != TEXT):
            out.append(f"a metric series must be (time, metric text, value): {columns}")
        if not values or any(types[i] not in NUMBERS for i in values):
            out.append(f"value columns must be numbers: {columns} {types}")
    return out


def _results(
    dashboard: dict[str, Any], run: Reader, variables: dict[str, Variable]
) -> tuple[dict[str, list[tuple[Any, ...]]], list[str]]:
    """Every panel and annotation query, once per repeat value: rows by where, and the problems."""
    rows_of: dict[str, list[tuple[Any, ...]]] = {}
    problems: list[str] = []
    queries = [*panel_queries(dashboard), *annotation_queries(dashboard, "grafana-postgresql-datasource")]
    for query in queries:
        for bound in each_run(query, variables):
            where = query.where + (
                f" ({query.repeat}={bound[query.repeat].values[0]})" if query.repeat else ""
            )
            try:
                columns, rows = run(where, expand(query.sql, bound, RANGE))
            except (AssertionError, ExpansionError) as exc:
                problems.append(f"{where}: {exc}")
                continue
            rows_of[where] = rows
            problems += [f"{where}: {p}" for p in _problems(query, columns, run.types[where], rows)]
            if query.where.startswith("annotation") and not {"time", "timeend", "text", "tags"} <= set(
                columns
            ):
                problems.append(f"{where}: an annotation needs time, timeend, text and tags: {columns}")
    return rows_of, problems


def _by_title(rows_of: dict[str, list[tuple[Any, ...]]], title: str) -> list[tuple[Any, ...]]:
    found = [rows for where, rows in rows_of.items() if f"{title!r}" in where]
    assert found, f"no panel titled {title!r}"
    return [r for rows in found for r in rows]


def test_every_query_returns_rows_with_its_columns_as_the_read_only_login(
    dashboard: dict[str, Any], db: psycopg.Connection[tuple[Any, ...]]
) -> None:
    run = Reader(db)
    variables, options = resolve_variables(dashboard, run, RANGE)
    assert variables["timezone"] == Variable((TZ,), False)  # the days' zone, from quality
    for name in ("service", "model", "feature", "tenant", "currency"):
        assert options[name] and variables[name].multi, name
    assert {"chat-api", "support-bot", "rag-worker"} <= set(options["service"])
    assert set(options["currency"]) == {"CNY", "USD"}
    rows_of, problems = _results(dashboard, run, variables)
    assert not problems, "\n".join(problems)

    # the loaded days exercise what the panels are for
    ran = {where.split(" target")[0] for where in rows_of if where.startswith("panel")}
    assert ran == {f"panel {p['id']} {p['title']!r}" for p, _ in all_panels(dashboard) if p.get("targets")}
    (failed,) = _by_title(rows_of, "Failed calls")
    assert 0 < failed[0] < 1
    assert (
        sum(r[2] for r in _by_title(rows_of, "Records whose reported usage differs from the exact recount"))
        > 0
    )
    assert any(r[2] is not None for r in _by_title(rows_of, "Services' estimate error (MAPE, %)"))
    assert _by_title(rows_of, "Quarantined lines by reason")
    assert [r[4] for r in _by_title(rows_of, "Records lost by the services' loggers")] == [LOST]
    states = {r[0]: r[1] for r in _by_title(rows_of, "Days loaded")}
    assert states == {**dict.fromkeys(DAYS, "final"), TODAY: "provisional until 12:00"}
    (provisional,) = next(rows for where, rows in rows_of.items() if where.startswith("annotation"))
    assert provisional[0] == local(TODAY) and provisional[1] == local(TODAY, 12)
    costs = {w for w in rows_of if "Cost per day by model" in w}
    assert len(costs) == 2, costs  # the row repeats once per currency


def test_a_panel_querying_a_column_that_does_not_exist_fails(
    dashboard: dict[str, Any], db: psycopg.Connection[tuple[Any, ...]]
) -> None:
    run = Reader(db)
    variables, _ = resolve_variables(dashboard, run, RANGE)
    (tokens,) = [p for p, _ in all_panels(dashboard) if p.get("title") == "Billed tokens per day by model"]
    assert "sum(total_tokens)" in tokens["targets"][0]["rawSql"]
    broken = {**tokens, "targets": [{**tokens["targets"][0],
                                     "rawSql": tokens["targets"][0]["rawSql"].replace("total_tokens", "all_tokens")}]}  # fmt: skip
    rows_of, problems = _results({"panels": [broken]}, run, variables)
    assert rows_of == {} and len(problems) == 1
    assert "UndefinedColumn" in problems[0] and "all_tokens" in problems[0]
    with pytest.raises(errors.UndefinedColumn):
        db.execute(expand(broken["targets"][0]["rawSql"], variables, RANGE).encode())
    # a column the panel's field config names but the query does not return fails too
    named = {**tokens, "fieldConfig": {"defaults": {}, "overrides": [
        {"matcher": {"id": "byName", "options": "cached_tokens"}, "properties": []}]}}  # fmt: skip
    _, problems = _results({"panels": [named]}, run, variables)
    assert problems and "cached_tokens" in problems[0]


def test_the_expander_covers_exactly_the_macros_and_variables_in_use() -> None:
    variables = {"model": Variable(("qwen3-8b", "it's"), True), "timezone": Variable((TZ,), False)}
    got = expand(
        "SELECT $__time(hour), x FROM t WHERE $__timeFilter( hour ) AND m = ANY(ARRAY[$model]::text[])"
        " AND d >= ($__timeFrom()::timestamptz AT TIME ZONE '${timezone}')::date AND e <= $__timeTo()",
        variables,
        RANGE,
    )
    assert got == (
        "SELECT hour AS \"time\", x FROM t WHERE hour BETWEEN '2026-11-17T16:00:00Z' AND '2026-11-21T15:59:59Z'"
        " AND m = ANY(ARRAY['qwen3-8b','it''s']::text[])"
        " AND d >= ('2026-11-17T16:00:00Z'::timestamptz AT TIME ZONE 'Asia/Shanghai')::date"
        " AND e <= '2026-11-21T15:59:59Z'"
    )
    for unknown in ("$__timeGroupAlias(hour, '1h')", "$__unixEpochFilter(ts)", "$__interval", "${model:csv}",
                    "[[model]]", "$tenant", "$__timeFilter()"):  # fmt: skip
        with pytest.raises(ExpansionError):
            expand(f"SELECT 1 WHERE {unknown}", variables, RANGE)


def test_the_dashboard_is_well_formed_for_the_provisioned_data_source(
    dashboard: dict[str, Any], datasource: dict[str, Any]
) -> None:
    assert datasource["type"] == "grafana-postgresql-datasource" and datasource["uid"]
    assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    panels = [p for p, _ in all_panels(dashboard)]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids), "panel ids must be unique"
    boxes = []
    for p in panels:
        grid = p["gridPos"]
        assert {"x", "y", "w", "h"} <= set(grid) and all(isinstance(grid[k], int) for k in "xywh"), p["id"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, p["id"]
        assert p["type"] in {"row", "stat", "timeseries", "table"}, p["type"]
        boxes.append((f"{p['id']} {p.get('title')!r}", grid))
        for t in p.get("targets", []):
            assert t["rawQuery"] is True and t["editorMode"] == "code", p["id"]
            assert t["format"] in ("time_series", "table") and t["rawSql"].strip(), p["id"]
        if p["type"] != "row":
            assert p["targets"] and p.get("description"), f"panel {p['id']} needs a query and a description"
    assert overlaps(boxes) == []
    refs = list(datasource_refs(dashboard))
    assert len(refs) > len(panels)
    for where, ref in refs:
        assert ref == {"type": datasource["type"], "uid": datasource["uid"]}, where
    names = [v["name"] for v in dashboard["templating"]["list"]]
    assert len(names) == len(set(names))
    for p, repeat in all_panels(dashboard):
        assert repeat is None or repeat in names, p["id"]


def test_the_login_reads_the_schema_and_cannot_change_anything(reader: str) -> None:
    with psycopg.connect(reader, autocommit=True) as conn:
        assert conn.execute("SHOW search_path").fetchone() == (SCHEMA,)
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        assert conn.execute("SHOW statement_timeout").fetchone() == ("1min",)
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", (SCHEMA,)).fetchall()]  # fmt: skip
        assert {"usage_daily", "usage_hourly", "reconciliation", "quality", "quarantine", "losses"} <= set(
            tables
        )
        for table in tables:
            conn.execute(sql.SQL("SELECT * FROM {} LIMIT 1").format(sql.Identifier(table)))
        writes = ["DELETE FROM usage_daily", "UPDATE quality SET records = 0", "CREATE TABLE mine (x int)",
                  "INSERT INTO losses (day, service, host, records, first_ts, last_ts, reason)"
                  " VALUES ('2026-11-20', 's', 'h', 1, now(), now(), 'r')", "TRUNCATE quarantine"]  # fmt: skip
        for statement in writes:
            with pytest.raises(errors.ReadOnlySqlTransaction):
                conn.execute(statement.encode())
        conn.execute("SET default_transaction_read_only = off")  # a user may lift that: privileges hold
        for statement in writes:
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(statement.encode())
