"""OpenAI tool definitions: llmtally against public implementations on API-reported prompt_tokens.

Every case of ``tests/tokens/data/openai_tools_fixtures.json`` (published ``prompt_tokens`` of chat
requests, each with its source) is counted in one run by

* llmtally: ``load_tokenizer(model).count_messages(messages, tools=..., tool_choice=...)``;
* llmtally before issue 12 (the OpenAI cookbook's per-function constants), loaded from git;
* npm ``openai-chat-tokens`` (hmarr), driven by a node script written to a temporary folder;
* PyPI ``openai-function-tokens`` (a Python port of the former);
* PyPI ``openai-messages-token-helper`` (pamelafox): ``count_tokens_for_system_and_tools`` for the
  first system message and the tools, ``count_tokens_for_message`` for the other messages.

The baselines are installed from the registries at bench time into a temporary folder (pinned
versions below); nothing is added to the project.  hmarr's package and its port know only
``functions`` / ``function_call`` and cl100k_base: tools are handed over as their functions and
``tool_choice`` as the matching ``function_call``.  A case an implementation rejects counts as
``error``.  Prints exact / over / under / error per implementation, for tool cases (the target)
and for message-only cases (the per-message overhead), exact tool cases per source, then every
case that is not exact for llmtally (``--cases``: every case).

    LLMTALLY_SHARED=/work/shared TIKTOKEN_CACHE_DIR=/work/shared/tiktoken .venv/bin/python bench/bench_tools.py
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from llmtally import tokens

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "tokens" / "data" / "openai_tools_fixtures.json"
NPM_PACKAGE = "openai-chat-tokens@0.2.8"
PYPI_PACKAGES = ("openai-function-tokens==0.1.2", "openai-messages-token-helper==0.1.13")
BEFORE_COMMIT = "7339f2df62afb83ff280db0176f38a150597ad3d"  # last commit with the cookbook constants
BEFORE_PATH = "include/llmtally/tokens/_openai.py"

NODE_DRIVER = """
const { promptTokensEstimate } = require("openai-chat-tokens");
const cases = JSON.parse(require("fs").readFileSync(0, "utf8"));
const out = cases.map((c) => {
  try { return promptTokensEstimate(c); } catch (e) { return null; }
});
console.log(JSON.stringify(out));
"""

PY_DRIVER = """
import json, sys
from openai_function_tokens import estimate_tokens
from openai_messages_token_helper import count_tokens_for_message, count_tokens_for_system_and_tools

def ruben(c):
    return estimate_tokens(c["messages"], functions=c["functions"], function_call=c["function_call"])

def pamela(c):
    msgs = c["messages"]
    first = next((m for m in msgs if m["role"] == "system"), None)
    rest = [m for m in msgs if m is not first]
    total = count_tokens_for_system_and_tools(c["model"], first, c["tools"], c["tool_choice"], default_to_cl100k=True)
    total += sum(count_tokens_for_message(c["model"], m, default_to_cl100k=True) - 3 for m in rest)
    return total + (0 if first is not None else 3)  # reply priming comes with the system message

def safe(f, c):
    try:
        return f(c)
    except Exception:
        return None

cases = json.load(sys.stdin)
print(json.dumps({"ruben": [safe(ruben, c) for c in cases], "pamela": [safe(pamela, c) for c in cases]}))
"""


def _request(case: dict[str, Any]) -> dict[str, Any]:
    """The case in both API shapes: tools / tool_choice and functions / function_call."""
    tools = case.get("tools")
    functions = case.get("functions")
    if functions is None and tools is not None:
        functions = [t["function"] for t in tools]
    if tools is None and functions is not None:
        tools = [{"type": "function", "function": f} for f in functions]
    choice, call = case.get("tool_choice"), case.get("function_call")
    if call is None and isinstance(choice, dict):
        call = {"name": choice["function"]["name"]}
    elif call is None:
        call = choice
    if choice is None and isinstance(call, dict):
        choice = {"type": "function", "function": {"name": call["name"]}}
    elif choice is None:
        choice = call
    return {
        "model": case["model"],
        "messages": case["messages"],
        "tools": tools,
        "tool_choice": choice,
        "functions": functions,
        "function_call": call,
    }


def count_llmtally(cases: list[dict[str, Any]]) -> list[int | None]:
    out: list[int | None] = []
    for c in cases:
        counter = tokens.load_tokenizer(c["model"])
        kw = {k: c[k] for k in ("functions", "function_call") if k in c}  # the legacy parameters
        out.append(
            counter.count_messages(
                c["messages"], tools=c.get("tools"), tool_choice=c.get("tool_choice"), **kw
            )
        )
    return out


def count_before(cases: list[dict[str, Any]]) -> list[int | None] | None:
    try:
        source = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{BEFORE_COMMIT}:{BEFORE_PATH}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    spec = importlib.util.spec_from_loader("llmtally.tokens._openai_before", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "llmtally.tokens"
    sys.modules[spec.name] = module  # dataclasses look their module up
    exec(compile(source, "_openai_before.py", "exec"), module.__dict__)
    out: list[int | None] = []
    for c in cases:
        counter = module.load_tiktoken(tokens.load_tokenizer(c["model"]).encoding_name)
        req = _request(c)
        try:
            out.append(
                counter.count_messages(req["messages"], tools=req["tools"], tool_choice=req["tool_choice"])
            )
        except Exception:
            out.append(None)
    return out


def count_npm(cases: list[dict[str, Any]], tmp: Path) -> list[int | None] | None:
    folder = tmp / "node"
    folder.mkdir()
    install = subprocess.run(
        ["npm", "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(folder), NPM_PACKAGE],
        capture_output=True,
        text=True,
    )
    if install.returncode:
        print(f"npm install {NPM_PACKAGE} failed: {install.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    (folder / "driver.js").write_text(NODE_DRIVER, encoding="utf-8")
    reqs = [{k: _request(c)[k] for k in ("messages", "functions", "function_call")} for c in cases]
    run = subprocess.run(
        ["node", str(folder / "driver.js")],
        input=json.dumps(reqs),
        capture_output=True,
        text=True,
        cwd=folder,
    )
    if run.returncode:
        print(f"node driver failed: {run.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return list(json.loads(run.stdout))


def count_pypi(cases: list[dict[str, Any]], tmp: Path) -> dict[str, list[int | None]] | None:
    target = tmp / "pypi"
    pip = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--target",
        str(target),
    ]
    # the packages' own dependencies (tiktoken, openai, pillow) come from this environment when present
    for deps in (["--no-deps"], []):
        install = subprocess.run([*pip, *deps, *PYPI_PACKAGES], capture_output=True, text=True)
        if install.returncode:
            print(
                f"pip install {' '.join(PYPI_PACKAGES)} failed: {install.stderr.strip()[-300:]}",
                file=sys.stderr,
            )
            return None
        (tmp / "driver.py").write_text(PY_DRIVER, encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": str(target)}
        run = subprocess.run(
            [sys.executable, str(tmp / "driver.py")],
            input=json.dumps([_request(c) for c in cases]),
            capture_output=True,
            text=True,
            env=env,
        )
        if run.returncode == 0:
            return dict(json.loads(run.stdout))
    print(f"python driver failed: {run.stderr.strip()[-300:]}", file=sys.stderr)
    return None


def tally(counts: list[int | None], cases: list[dict[str, Any]], kind: str) -> tuple[int, int, int, int, int]:
    exact = over = under = error = 0
    for n, c in zip(counts, cases, strict=True):
        if c["kind"] != kind:
            continue
        if n is None:
            error += 1
        elif n == c["api_prompt_tokens"]:
            exact += 1
        elif n > c["api_prompt_tokens"]:
            over += 1
        else:
            under += 1
    return exact, over, under, error, exact + over + under + error


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--no-baselines", action="store_true", help="count with llmtally only (no registry access)"
    )
    ap.add_argument("--cases", action="store_true", help="print every case's counts")
    args = ap.parse_args()
    cases = json.loads(FIXTURES.read_text(encoding="utf-8"))
    results: dict[str, list[int | None] | None] = {"llmtally": count_llmtally(cases)}
    if not args.no_baselines:
        results["llmtally before issue 12 (cookbook constants)"] = count_before(cases)
        with tempfile.TemporaryDirectory(prefix="bench-tools-") as tmp:
            results[f"npm {NPM_PACKAGE} (hmarr)"] = count_npm(cases, Path(tmp))
            pypi = count_pypi(cases, Path(tmp))
        results[f"PyPI {PYPI_PACKAGES[0]}"] = pypi["ruben"] if pypi else None
        results[f"PyPI {PYPI_PACKAGES[1]}"] = pypi["pamela"] if pypi else None
    n_tools = sum(c["kind"] == "tools" for c in cases)
    print(
        f"{len(cases)} API-reported cases: {n_tools} with tool definitions, {len(cases) - n_tools} messages only"
    )
    print(
        "| implementation | tools: exact | over | under | error | messages only: exact | over | under | error |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, counts in results.items():
        if counts is None:
            print(f"| {name} | not run | | | | | | | |")
            continue
        t, m = tally(counts, cases, "tools"), tally(counts, cases, "messages")
        print(
            f"| {name} | {t[0]}/{t[4]} | {t[1]} | {t[2]} | {t[3]} | {m[0]}/{m[4]} | {m[1]} | {m[2]} | {m[3]} |"
        )
    sources = sorted({c["source"]["repo"] for c in cases if c["kind"] == "tools"})
    print("\nExact tool cases per source:\n")
    print("| implementation | " + " | ".join(sources) + " |")
    print("|---|" + "---|" * len(sources))
    for name, counts in results.items():
        if counts is not None:
            cells = []
            for repo in sources:
                mine = [(n, c) for n, c in zip(counts, cases, strict=True) if c["source"]["repo"] == repo]
                mine = [(n, c) for n, c in mine if c["kind"] == "tools"]
                cells.append(f"{sum(n == c['api_prompt_tokens'] for n, c in mine)}/{len(mine)}")
            print(f"| {name} | " + " | ".join(cells) + " |")
    ours = results["llmtally"]
    assert ours is not None
    rows = [i for i in range(len(cases)) if args.cases or ours[i] != cases[i]["api_prompt_tokens"]]
    if rows:
        print("\nCases llmtally does not count exactly (count minus the API's):\n")
        print("| case | API | " + " | ".join(results) + " |")
        print("|---|---|" + "---|" * len(results))
        for i in rows:
            cells = [
                "–" if r is None or r[i] is None else f"{r[i] - cases[i]['api_prompt_tokens']:+d}"
                for r in results.values()
            ]
            print(f"| {cases[i]['id']} | {cases[i]['api_prompt_tokens']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
