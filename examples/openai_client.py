"""Call an OpenAI-compatible endpoint through a ``wrap_openai``-instrumented client.

Works against OpenAI, vLLM, SGLang, DashScope or DeepSeek (``--base-url``, ``OPENAI_API_KEY``).
Each call (plain, streamed, and a tool call) is logged with the usage the server reported into
``--log-dir`` (default ``var/service-logs/openai-client``, a folder the pipeline collects from).

    python examples/openai_client.py --base-url http://127.0.0.1:8001/v1 --model Qwen/Qwen3-8B
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import openai

import llmtally

REPO = Path(__file__).resolve().parent.parent
WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Current weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@llmtally.track(feature="demo")
def run(client: openai.OpenAI, model: str) -> None:
    """One plain chat, one streamed chat and one tool call."""
    messages = [{"role": "user", "content": "用一句话介绍一下你自己。"}]
    reply = client.chat.completions.create(model=model, messages=messages)  # type: ignore[arg-type]
    print("plain:", reply.choices[0].message.content)
    print("stream: ", end="")
    for chunk in client.chat.completions.create(model=model, messages=messages, stream=True):  # type: ignore[arg-type]
        if chunk.choices:
            print(chunk.choices[0].delta.content or "", end="", flush=True)
    print()
    with llmtally.tags(user="u-demo"):
        tool = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "What's the weather in Paris?"}],
            tools=[WEATHER],  # type: ignore[list-item]
        )
    print("tool calls:", tool.choices[0].message.tool_calls)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL"))
    ap.add_argument("--model", default="gpt-4o-mini")
    ap.add_argument("--log-dir", type=Path, default=REPO / "var" / "service-logs" / "openai-client")
    ap.add_argument("--service", default="openai-client")
    args = ap.parse_args()
    with llmtally.UsageLogger(args.log_dir, service=args.service) as logger:
        client = llmtally.wrap_openai(openai.OpenAI(base_url=args.base_url), logger, app="example")
        try:
            run(client, args.model)
        finally:
            client.close()
        logger.flush()
        print(f"logged: {logger.stats()} -> {args.log_dir}")


if __name__ == "__main__":
    main()
