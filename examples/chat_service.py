"""The common recipe's chat service, with llmtally's usage logger instead of the recipe's logging.

``POST /chat`` takes ``{"input": "..."}`` and returns ``{"response": "..."}``, generating with a
transformers model: ``--model DIR`` (any Hugging Face causal LM folder), or by default a tiny
random-weight Qwen3-shaped model built from a config, with the Qwen3 tokenizer from
``$LLMTALLY_SHARED/tokenizers/qwen3`` (``LLMTALLY_SHARED`` defaults to ``../shared`` next to the
repository).  Each request is logged with the engine's exact token counts, the chat messages, route
and the ``x-user-id`` / ``x-tenant-id`` headers, into ``--log-dir`` (default
``var/service-logs/chat-service``, a folder the pipeline collects from).

    python examples/chat_service.py --port 8000
    curl -s localhost:8000/chat -H 'content-type: application/json' -H 'x-user-id: u1' -d '{"input": "你好"}'
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import torch
import transformers
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

import llmtally
from llmtally.logging import generate_and_log

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("LLMTALLY_SHARED", REPO.parent / "shared"))


class ChatIn(BaseModel):
    input: str


class ChatOut(BaseModel):
    response: str


def load_model(folder: str | None, dtype: str = "float32", device: str = "cpu") -> tuple[Any, Any, str]:
    """A model folder, or a tiny random Qwen3-shaped model (no download); returns (model, tokenizer, name)."""
    torch_dtype = getattr(torch, dtype)
    if folder:
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype)
        name = Path(folder).name
    else:
        tokenizer = transformers.AutoTokenizer.from_pretrained(SHARED / "tokenizers" / "qwen3")
        torch.manual_seed(0)
        config = transformers.Qwen3Config(
            vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=4096,
            eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tokenizer.pad_token_id,
        )  # fmt: skip
        model = transformers.Qwen3ForCausalLM(config).to(torch_dtype)
        name = "qwen3-tiny-random"
    return model.to(device).eval(), tokenizer, name


def create_app(
    model: Any,
    tokenizer: Any,
    model_name: str,
    logger: llmtally.UsageLogger | None,
    max_new_tokens: int = 64,
) -> FastAPI:
    """The service; with ``logger=None`` it runs without usage logging (for overhead comparisons)."""
    app = FastAPI(title="chat-service")
    if logger is not None:
        # user/tenant come from the app's auth (request.state.user / .tenant) by default; this demo
        # has no auth and stands behind a gateway that sets x-user-id, so it trusts that header
        app.add_middleware(
            llmtally.UsageMiddleware, trusted_headers={"x-user-id": "user", "x-tenant-id": "tenant"}
        )

    @app.post("/chat")
    @llmtally.track(feature="chat")
    def chat(body: ChatIn) -> ChatOut:  # sync: FastAPI runs it in a worker thread
        messages = [{"role": "user", "content": body.input}]
        inputs = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        ).to(model.device)
        width = inputs["input_ids"].shape[-1]
        kwargs = dict(attention_mask=inputs["attention_mask"], max_new_tokens=max_new_tokens, do_sample=False)
        with torch.inference_mode():
            if logger is None:
                out = model.generate(inputs["input_ids"], **kwargs)
            else:
                out = generate_and_log(
                    model, inputs["input_ids"], logger=logger, model_name=model_name, messages=messages,
                    tokenizer=tokenizer, **kwargs,
                )  # fmt: skip
        return ChatOut(response=tokenizer.decode(out[0, width:], skip_special_tokens=True))

    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="a Hugging Face model folder (default: tiny random Qwen3)")
    ap.add_argument("--log-dir", type=Path, default=REPO / "var" / "service-logs" / "chat-service")
    ap.add_argument("--service", default="chat-service")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    args = ap.parse_args()
    model, tokenizer, name = load_model(args.model, args.dtype, args.device)
    with llmtally.UsageLogger(args.log_dir, service=args.service) as logger:
        app = create_app(model, tokenizer, name, logger, args.max_new_tokens)
        uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
