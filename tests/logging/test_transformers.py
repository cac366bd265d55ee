"""The transformers helper logs generate()'s exact token counts (tiny random Qwen3, no download)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from llmtally.logging import MemorySink, UsageLogger
from tests.logging.conftest import memory_records
from tests.support import tokenizer_source

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

MESSAGES = [{"role": "user", "content": "你好，介绍一下你自己。"}]


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    source = tokenizer_source("qwen3")
    if not Path(source).is_dir():
        pytest.skip("needs the shared qwen3 tokenizer folder")
    return transformers.AutoTokenizer.from_pretrained(source)


@pytest.fixture(scope="module")
def model(tokenizer: Any) -> Any:
    torch.manual_seed(0)
    config = transformers.Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=256,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    return transformers.Qwen3ForCausalLM(config).eval()


def _prompt(tokenizer: Any) -> Any:
    return tokenizer.apply_chat_template(
        MESSAGES, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )


def test_generate_and_log_records_the_engines_counts(model: Any, tokenizer: Any) -> None:
    from llmtally.logging import generate_and_log

    sink = MemorySink()
    with UsageLogger(service="svc", sink=sink) as lg:
        inputs = _prompt(tokenizer)
        out = generate_and_log(
            model, inputs["input_ids"], attention_mask=inputs["attention_mask"], logger=lg, model_name="qwen3-tiny",
            messages=MESSAGES, tokenizer=tokenizer, max_new_tokens=12, do_sample=False, tags={"feature": "t"},
        )  # fmt: skip
    (rec,) = memory_records(sink)
    n_prompt = inputs["input_ids"].shape[-1]
    new = out[0, n_prompt:].tolist()
    eos = model.generation_config.eos_token_id
    n_new = new.index(eos) + 1 if eos in new else len(new)
    assert rec["usage"]["prompt_tokens"] == n_prompt and rec["usage"]["completion_tokens"] == n_new
    assert rec["endpoint"] == "generate" and rec["model"] == "qwen3-tiny" and rec["messages"] == MESSAGES
    assert rec["completion"] == tokenizer.decode(new[:n_new], skip_special_tokens=True)
    assert rec["tags"] == {"feature": "t"}


def test_batched_generate_ignores_padding(model: Any, tokenizer: Any) -> None:
    from llmtally.logging import generate_and_log

    tokenizer.padding_side = "left"
    texts = ["hi", "a much longer prompt that needs more tokens than the first one"]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    sink = MemorySink()
    with UsageLogger(service="svc", sink=sink) as lg:
        generate_and_log(
            model,
            batch["input_ids"],
            attention_mask=batch["attention_mask"],
            logger=lg,
            max_new_tokens=5,
            do_sample=False,
        )
    records = memory_records(sink)
    assert [r["usage"]["prompt_tokens"] for r in records] == [len(tokenizer(t)["input_ids"]) for t in texts]
    assert all(1 <= r["usage"]["completion_tokens"] <= 5 for r in records)


def test_usage_streamer_counts_what_generate_streams(model: Any, tokenizer: Any) -> None:
    from llmtally.logging import UsageStreamer

    sink = MemorySink()
    with UsageLogger(service="svc", sink=sink) as lg:
        inputs = _prompt(tokenizer)
        text = transformers.TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        streamer = UsageStreamer(
            lg, model_name="qwen3-tiny", messages=MESSAGES, tokenizer=tokenizer, inner=text
        )
        kwargs = dict(**inputs, max_new_tokens=10, do_sample=False, streamer=streamer)
        worker = threading.Thread(target=model.generate, kwargs=kwargs)
        worker.start()
        streamed = "".join(text)
        worker.join()
        out = model.generate(**inputs, max_new_tokens=10, do_sample=False)
    (rec,) = memory_records(sink)
    n_prompt = inputs["input_ids"].shape[-1]
    assert rec["usage"]["prompt_tokens"] == n_prompt
    assert rec["usage"]["completion_tokens"] == out.shape[-1] - n_prompt
    assert rec["completion"] == streamed and rec["status"] == "ok" and rec["ttft_ms"] <= rec["latency_ms"]


def test_completion_lengths_stop_at_the_first_eos() -> None:
    from llmtally.logging._transformers import completion_lengths

    generated = torch.tensor([[5, 6, 2, 0, 0], [5, 6, 7, 8, 9], [2, 0, 0, 0, 0]])
    assert completion_lengths(generated, {2}) == [3, 5, 1]
