"""Bad input is a clear 4xx: no route takes SQL, a table or a column name from the request."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from llmtally import InputError
from llmtally.web import parse_query
from llmtally.web._query import MAX_NAME

TODAY = date(2026, 11, 27)


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("?start=2026-13-01", 400, "start='2026-13-01' is not a date in YYYY-MM-DD form"),
        ("?end=yesterday", 400, "end='yesterday' is not a date"),
        ("?day=2026-11-26;DROP TABLE x", 400, "is not a date"),
        ("?start=2026-11-20&end=2026-11-01", 400, "start 2026-11-20 is after end 2026-11-01"),
        ("?start=2024-01-01&end=2026-01-01", 400, "more than 366 days"),
        ("?day=2026-11-26&start=2026-11-01", 400, "either day or start/end"),
        ("?table=usage_hourly", 400, "unknown parameter 'table'"),
        ("?sql=SELECT+1", 400, "unknown parameter 'sql'"),
        ("?prompt_tokens=1", 400, "unknown parameter 'prompt_tokens'"),
        ("?feature=a&feature=b", 400, "more than once"),
        ("?feature=%00x", 400, "control characters"),
        ("?user_id=" + "x" * (MAX_NAME + 1), 400, f"longer than {MAX_NAME}"),
        ("?lang=fr", 400, "lang='fr' is not supported"),
    ],
)
def test_bad_page_requests(client: Any, query: str, status: int, message: str) -> None:
    for path in ("/", "/csv/daily"):
        r = client.get(path + query)
        assert r.status_code == status, (path, r.text)
        assert message in r.json()["detail"], r.text


def test_unknown_tables_and_routes(client: Any) -> None:
    assert client.get("/csv/usage_hourly").status_code == 404
    assert "tables: daily" in client.get("/csv/pg_user").json()["detail"]
    assert client.get("/reports/2026-11-26/fr").status_code == 400
    assert client.get("/reports/26-11-2026/zh").status_code == 400
    assert client.get("/runs/llm_usage_daily/x").status_code == 404  # no run source in this app
    for docs in ("/docs", "/redoc", "/openapi.json"):
        assert client.get(docs).status_code == 404, "no API docs: they load assets from a CDN"


def test_a_filter_value_is_data_not_sql(client: Any) -> None:
    r = client.get("/", params={"feature": "' OR 1=1 --"})
    assert r.status_code == 200
    assert 'data-value="0"' in r.text and "data-total" in r.text


def test_parse_query_defaults_and_filters() -> None:
    q = parse_query({}, today=TODAY, default_lang="zh")
    assert (q.start, q.end, q.lang, q.days, q.filters) == (
        date(2026, 10, 29),
        date(2026, 11, 26),
        "zh",
        29,
        (),
    )
    q = parse_query({"end": "2026-11-10", "model": "m", "feature": "f"}, today=TODAY, default_lang="en")
    assert (q.start, q.end) == (date(2026, 10, 13), date(2026, 11, 10))
    assert q.filters == (("feature", "f"), ("model", "m"))
    assert q.with_filter("feature", "g").where == {"feature": "g", "model": "m"}
    assert q.without("model").where == {"feature": "f"}
    with pytest.raises(InputError):
        parse_query({"status": "ok", "http_status": "500"}, today=TODAY, default_lang="en")


def test_both_languages_have_every_word() -> None:
    from llmtally.web._i18n import _PAGE, words

    assert set(_PAGE["en"]) == set(_PAGE["zh"])
    assert set(words("en")) == set(words("zh"))
    with pytest.raises(ValueError):
        words("fr")
