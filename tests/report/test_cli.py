"""``llmtally report`` and ``llmtally compare`` through click's CliRunner."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner

from llmtally.cli import main
from tests.report import gen


def test_report_command(pg_dsn: str, steady_schema: str, use_schema: Any, tmp_path: Any) -> None:
    use_schema(steady_schema)
    res = CliRunner().invoke(
        main,
        [
            "report",
            "--day",
            "2026-11-26",
            "--lang",
            "en",
            "--dsn",
            pg_dsn,
            "--out",
            str(tmp_path),
            "--no-archive",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "tokens" in res.output and (tmp_path / "report-2026-11-26.html").is_file()
    res = CliRunner().invoke(
        main,
        ["report", "--day", "2026-11-26", "--dsn", pg_dsn, "--out", str(tmp_path), "--json", "--no-archive"],
    )
    assert json.loads(res.output)["day"] == "2026-11-26"


def test_report_errors_are_click_errors(pg_dsn: str, use_schema: Any) -> None:
    use_schema("no_such_schema")
    res = CliRunner().invoke(main, ["report", "--day", "2026-11-26", "--dsn", pg_dsn])
    assert res.exit_code == 1 and "Error:" in res.output and "no_such_schema" in res.output
    res = CliRunner().invoke(main, ["report", "--day", "26.11.2026", "--dsn", pg_dsn])
    assert res.exit_code == 2
    res = CliRunner().invoke(main, ["report", "--send", "--dsn", pg_dsn])
    assert res.exit_code == 2 and "--to" in res.output


def test_compare_command(
    pg_dsn: str, steady_schema: str, use_schema: Any, tmp_path: Any, steady_data: gen.Dataset
) -> None:
    use_schema(steady_schema)
    texts = tmp_path / "texts.jsonl"
    texts.write_text(
        json.dumps({"text": "请写一篇关于大模型成本的文章。"}, ensure_ascii=False) + "\n"
        + json.dumps({"messages": [{"role": "user", "content": "Summarise the token bill for me."}]}) + "\n",
        encoding="utf-8",
    )  # fmt: skip
    args = [
        "compare",
        "--feature",
        "写作",
        "--model",
        "gpt-4o",
        "--model",
        "gpt-4",
        "--day",
        "2026-11-26",
        "--days",
        "7",
        "--dsn",
        pg_dsn,
    ]
    res = CliRunner().invoke(main, [*args, "--texts", str(texts), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    rows = [r for r in steady_data.rows if r.feature == "写作" and 0 <= (gen.DAY - gen.local_day(r)).days < 7]
    stats = out["models"]["gpt-4o"]
    assert stats["requests"] == sum(r.requests for r in rows)
    tokens = sum(r.total_tokens for r in rows)
    assert stats["tokens_per_request"] == round(tokens / stats["requests"], 2)
    assert stats["completion_prompt_ratio"] == round(
        sum(r.completion_tokens for r in rows) / sum(r.prompt_tokens for r in rows), 4
    )
    assert out["models"]["gpt-4"]["requests"] == 0
    eff = out["tokenizer_efficiency"]
    assert eff["gpt-4o"]["chars"] == eff["gpt-4"]["chars"] > 0
    assert (
        eff["gpt-4o"]["tokens_per_1k_chars"] < eff["gpt-4"]["tokens_per_1k_chars"]
    )  # o200k packs Chinese tighter
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0 and "tokens/req" in res.output
