"""Every table of the page downloads as CSV (UTF-8 with BOM) and parses back to the page's numbers;
spreadsheet formulas in names are neutralised; ``llmtally export`` gives the same numbers."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from llmtally.cli import main
from llmtally.store import PostgresStore, UsageStore
from llmtally.web._csv import FORMULA_PREFIXES, neutralise
from llmtally.web._sections import TABLE_IDS
from tests.report import gen
from tests.web import data
from tests.web.page import parse
from tests.web.test_page import START, between, by


def read_csv(body: bytes) -> list[dict[str, str]]:
    assert body.startswith(b"\xef\xbb\xbf"), "UTF-8 with a BOM"
    return list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"), newline="")))


@pytest.mark.parametrize("table", TABLE_IDS)
def test_every_table_downloads_as_the_page_shows_it(client: Any, table: str) -> None:
    query = f"?day={data.DAY}" if table == "hourly" else ""
    page = parse(client.get(f"/{query}").text)
    href = page.csv[table]
    r = client.get(href)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"].startswith(f'attachment; filename="llmtally-{table}-')
    rows = read_csv(r.content)
    shown = page.tables.get(table, [])
    assert len(rows) >= len(shown)
    for on_page, in_file in zip(shown, rows, strict=False):
        for key, value in on_page.items():
            cell = in_file[key]
            if value and cell.startswith("'") and neutralise(value) == cell:
                continue  # a name a spreadsheet would run: neutralised in the file only
            assert cell == value or Decimal(cell) == Decimal(value), (table, key, value, cell)


def test_the_csv_of_a_ranked_table_has_every_value(client: Any, rows: list[gen.Row]) -> None:
    users = read_csv(client.get("/csv/user_id").content)
    expected = by(between(rows, START, data.DAY), lambda r: r.user_id)
    assert len(users) == len(expected) > 10
    for u in users:
        name = u["user_id"].removeprefix("'") if u["user_id"].startswith("'") else u["user_id"]
        want = expected[name if name in expected else u["user_id"]]
        assert (int(u["requests"]), int(u["prompt_tokens"]), int(u["completion_tokens"])) == (
            want["requests"], want["prompt"], want["completion"],
        )  # fmt: skip
        assert {
            k.removeprefix("cost_"): Decimal(v) for k, v in u.items() if k.startswith("cost_") and v
        } == want["cost"]


def test_formula_names_are_neutralised_when_the_file_is_opened(client: Any) -> None:
    body = client.get(f"/csv/tenant?day={data.DAY}").content
    tenants = [row["tenant"] for row in read_csv(body)]
    for name in data.FORMULAS:
        assert "'" + name in tenants, name
    for cell in tenants:
        assert not cell.startswith(FORMULA_PREFIXES), f"{cell!r} would run as a formula"
    # numbers are numbers, also negative ones: drift is reported minus recount
    drift = read_csv(client.get("/csv/drift").content)
    assert any(row["prompt_drift_tokens"].startswith("-") for row in drift)
    # the same names are shown as they are on the page (escaped HTML, not neutralised)
    page = parse(client.get(f"/?day={data.DAY}&lang=en").text)
    shown = {row["tenant"] for row in page.tables["tenant"]}
    assert "+SUM(1,2)" in shown


def test_neutralise() -> None:
    assert [neutralise(s) for s in ("=1+1", "+1", "-1", "@A1", "\tx", "\rx", "ok", "a=b", "")] == [
        "'=1+1", "'+1", "'-1", "'@A1", "'\tx", "'\rx", "ok", "a=b", "",
    ]  # fmt: skip


# ------------------------------------------------------------------ llmtally export


@pytest.fixture
def cli_env(
    postgres_store: PostgresStore, pg_dsn: str, monkeypatch: pytest.MonkeyPatch, web_config: Path
) -> str:
    monkeypatch.setenv("LLMTALLY_DB_SCHEMA", postgres_store.schema)
    monkeypatch.setenv("AIRFLOW_CONN_LLM_USAGE_DB", pg_dsn)
    return pg_dsn


def test_export_by_tenant_is_the_pages_csv(cli_env: str, postgres_store: UsageStore) -> None:
    from fastapi.testclient import TestClient

    from llmtally.web import create_app
    from tests.web.conftest import opener

    app = create_app(opener(postgres_store), timezone=data.TZ, today=lambda: data.DAY + timedelta(days=1))
    page_csv = TestClient(app).get(f"/csv/tenant?start={START}&end={data.DAY}").content
    out = CliRunner().invoke(main, ["export", "--from", str(START), "--to", str(data.DAY), "--by", "tenant"])
    assert out.exit_code == 0, out.output
    assert out.stdout_bytes == page_csv


def test_export_by_tenant_and_feature_csv_and_parquet(
    cli_env: str, rows: list[gen.Row], tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    args = ["export", "--from", str(START), "--to", str(data.DAY), "--by", "tenant,feature"]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    got = read_csv(out.stdout_bytes)
    expected = by(between(rows, START, data.DAY), lambda r: (neutralise(r.tenant), neutralise(r.feature)))
    assert {(g["tenant"], g["feature"]) for g in got} == set(expected)
    for g in got:
        want = expected[(g["tenant"], g["feature"])]
        assert int(g["requests"]) == want["requests"]
        assert int(g["total_tokens"]) == want["prompt"] + want["completion"]
        assert {
            k.removeprefix("cost_"): Decimal(v) for k, v in g.items() if k.startswith("cost_") and v
        } == want["cost"]
    target = tmp_path / "chargeback.parquet"
    out = CliRunner().invoke(main, [*args, "--format", "parquet", "--out", str(target)])
    assert out.exit_code == 0, out.output
    table = pq.read_table(target).to_pylist()
    assert len(table) == len(got)
    for p, c in zip(table, got, strict=True):
        assert neutralise(p["tenant"]) == c["tenant"] and p["requests"] == int(c["requests"])
        assert p["total_tokens"] == int(c["total_tokens"])
        for cur in ("CNY", "USD"):
            assert (p[f"cost_{cur}"] or None) == (Decimal(c[f"cost_{cur}"]) if c[f"cost_{cur}"] else None)


def test_export_filters_and_errors(cli_env: str, rows: list[gen.Row]) -> None:
    out = CliRunner().invoke(
        main,
        [
            "export",
            "--from",
            str(data.DAY),
            "--to",
            str(data.DAY),
            "--by",
            "user",
            "--filter",
            "feature=写作",
        ],
    )
    assert out.exit_code == 0, out.output
    got = {r["user_id"]: int(r["requests"]) for r in read_csv(out.stdout_bytes)}
    want = {
        u: v["requests"]
        for u, v in by(between(rows, data.DAY, data.DAY, feature="写作"), lambda r: r.user_id).items()
    }
    assert got == want
    for bad, message in (
        (["--by", "prompt"], "cannot break usage down by prompt"),
        (["--by", "tenant,tenant"], "named twice"),
        (["--filter", "prompt=x"], "cannot filter on 'prompt'"),
        (["--from", "2026-02-30"], "not a date"),
        (["--to", "2024-01-01"], "start first"),
        (["--format", "xlsx"], "Invalid value"),
    ):
        args = {"--from": str(data.DAY), "--to": str(data.DAY), "--by": "tenant"}
        extra: list[str] = []
        for i in range(0, len(bad), 2):
            if bad[i] in args:
                args[bad[i]] = bad[i + 1]
            else:
                extra += bad[i : i + 2]
        out = CliRunner().invoke(main, ["export", *[x for kv in args.items() for x in kv], *extra])
        assert out.exit_code != 0 and message in out.output, (bad, out.output)
