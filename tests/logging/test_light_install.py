"""A service that only logs installs the base package alone: no tokenizers, tiktoken, jinja2, click,
Airflow or torch.  The wheel goes into a fresh virtual environment with nothing else but the real
``openai`` SDK (from the package registry, pinned by constraints.txt), and logs a chat completion
over real HTTP against the local OpenAI-compatible test server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.logging.conftest import read_records
from tests.logging.openai_server import Server
from tests.support import REPO_ROOT, build_wheel, fresh_venv

pytestmark = pytest.mark.slow

CHILD = r"""
import importlib.util, json, sys
from openai import OpenAI
import llmtally

absent = ["tokenizers", "tiktoken", "jinja2", "click", "airflow", "torch", "transformers", "psycopg",
          "pandas", "matplotlib"]
present = [m for m in absent if importlib.util.find_spec(m) is not None]
logger = llmtally.UsageLogger(sys.argv[2], service="light")
client = llmtally.wrap_openai(OpenAI(base_url=sys.argv[1], api_key="test", max_retries=0), logger)
reply = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "你好"}])
logger.close(timeout=10)
print(json.dumps({"present": present, "reply": reply.choices[0].message.content,
                  "llmtally": llmtally.__file__}))
"""


def test_the_base_package_logs_through_the_openai_sdk_alone(tmp_path: Path, openai_server: Server) -> None:
    wheel = build_wheel(REPO_ROOT, tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        requires = [ln for ln in zf.read(meta).decode().splitlines() if ln.startswith("Requires-Dist:")]
    assert requires and all("extra ==" in ln for ln in requires), requires  # nothing without an extra
    venv = tmp_path / "venv"
    python = fresh_venv(venv, wheel, share_deps=False)
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
    subprocess.run([*pip, "-c", str(REPO_ROOT / "constraints.txt"), "openai"], check=True, timeout=600)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONNOUSERSITE"] = "1"
    logs = tmp_path / "logs"
    run = subprocess.run(
        [python, "-c", CHILD, openai_server.url, str(logs)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["present"] == [], f"the base install pulled in {seen['present']}"
    assert Path(seen["llmtally"]).resolve().is_relative_to(venv.resolve())
    assert seen["reply"] == "Hello there!"
    (rec,) = read_records(logs)
    assert rec["model"] == "echo" and rec["service"] == "light" and rec["status"] == "ok"
    assert (rec["usage"]["prompt_tokens"], rec["usage"]["completion_tokens"]) == (17, 4)
    assert rec["messages"] == [{"role": "user", "content": "你好"}]
