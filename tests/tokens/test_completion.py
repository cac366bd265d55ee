"""A reply split into content, reasoning and tool calls is counted as the model generated it: the
chat template's own rendering of the assistant turn, checked against transformers' token ids."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from llmtally import TemplateError
from llmtally.pipeline import UsageRecord, recount
from llmtally.tokens import load_hf_folder
from llmtally.tokens._hf import HFCounter
from tests.support import SHARED

transformers = pytest.importorskip("transformers")

TEMPLATES = Path(__file__).parent / "data" / "templates"
# family -> (shared tokenizer folder, template file or None for the folder's own, template kwargs)
FAMILIES: dict[str, tuple[str, str | None, dict[str, Any]]] = {
    "qwen3": ("qwen3", None, {}),
    "llama3_1": ("llama3_1", "llama3_1_json_tools.jinja", {"date_string": "26 Jul 2024"}),
    "deepseek_r1": ("deepseek_v3", "deepseek_r1_distill.jinja", {}),
}
# The oracle hands transformers tool-call arguments as objects, as vLLM does (and transformers'
# docs ask), except to the R1 template, which concatenates them as strings.
STRING_ARGUMENTS = {"deepseek_r1"}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "查询城市天气",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
                "required": ["city"],
            },
        },
    }
]
MSGS = [
    {"role": "system", "content": "你是天气助手。"},
    {"role": "user", "content": "北京和上海今天天气怎样？"},
]


def _call(city: str, i: int = 0) -> dict[str, Any]:
    args = json.dumps({"city": city, "unit": "c"}, ensure_ascii=False)
    return {"id": f"call_{i}", "type": "function", "function": {"name": "get_weather", "arguments": args}}


REASONING = "用户问两个城市。先查北京，再查上海。\nThen answer briefly.\n"
REPLIES: dict[str, dict[str, Any]] = {
    "reasoning": {"content": "北京晴，上海多云。", "reasoning": REASONING},
    "reasoning_leading_newlines": {"content": "\n\n北京晴。", "reasoning": "Let me check.\n"},
    "one_call": {"content": None, "tool_calls": [_call("北京")]},
    "two_calls": {"content": None, "tool_calls": [_call("北京", 0), _call("上海", 1)]},
    "reasoning_and_call": {"content": "", "reasoning": REASONING, "tool_calls": [_call("北京")]},
    "content_and_call": {"content": "我来查一下。", "tool_calls": [_call("上海")]},
}
# what each template can show; the rest must refuse rather than guess
SUPPORTED = {
    "qwen3": set(REPLIES),
    "llama3_1": {"one_call"},  # one JSON call per turn, no reasoning
    "deepseek_r1": {"reasoning", "reasoning_leading_newlines", "one_call", "two_calls", "reasoning_and_call"},
}


def _folder(root: Path, family: str) -> Path:
    src, template, _ = FAMILIES[family]
    out = root / family
    out.mkdir()
    shutil.copy(SHARED / "tokenizers" / src / "tokenizer.json", out)
    config = json.loads((SHARED / "tokenizers" / src / "tokenizer_config.json").read_text(encoding="utf-8"))
    if template is not None:
        config["chat_template"] = (TEMPLATES / template).read_text(encoding="utf-8")
    (out / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    return out


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, HFCounter, Any]:
    folder = _folder(tmp_path_factory.mktemp("tok"), request.param)
    return request.param, load_hf_folder(folder), transformers.AutoTokenizer.from_pretrained(str(folder))


def _ids(out: Any) -> list[int]:
    return list(out["input_ids"] if isinstance(out, Mapping) else out)


def _message(reply: Mapping[str, Any], string_arguments: bool) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": reply.get("content")}
    if reply.get("reasoning"):
        msg["reasoning_content"] = reply["reasoning"]
    if reply.get("tool_calls"):
        msg["tool_calls"] = [
            c
            if string_arguments
            else {**c, "function": {**c["function"], "arguments": json.loads(c["function"]["arguments"])}}
            for c in reply["tool_calls"]
        ]
    return msg


def _oracle(ref: Any, family: str, reply: Mapping[str, Any]) -> tuple[str, int]:
    """transformers' own rendering: the generated text and its tokens with the end-of-turn token."""
    kw = FAMILIES[family][2]
    prompt = ref.apply_chat_template(MSGS, tools=TOOLS, add_generation_prompt=True, tokenize=False, **kw)
    msg = _message(reply, family in STRING_ARGUMENTS)
    if msg["content"] is None:
        msg["content"] = ""  # transformers drops a null content; these templates then need a string
    full = ref.apply_chat_template([*MSGS, msg], tools=TOOLS, tokenize=False, **kw)
    eos = ref.eos_token
    if family == "deepseek_r1":
        # history hides the thinking: transformers shows the turn without it; the model wrote it
        # after the prompt's forced "<think>\n", closed by "</think>"
        head = prompt.removesuffix("<think>\n")
        assert full.startswith(head)
        rest = full[len(head) :].split(eos)[0]
        generated = (reply["reasoning"] + "</think>" if reply.get("reasoning") else "") + rest
    else:
        assert full.startswith(prompt)
        generated = full[len(prompt) :].split(eos)[0]
    alone = len(_ids(ref(generated + eos, add_special_tokens=False)))
    if family != "deepseek_r1":  # their prompts end on a token boundary: in context, the same tokens
        ids_prompt = _ids(ref.apply_chat_template(MSGS, tools=TOOLS, add_generation_prompt=True, **kw))
        ids_all = _ids(ref(prompt + generated + eos, add_special_tokens=False))
        assert ids_all[: len(ids_prompt)] == ids_prompt and len(ids_all) - len(ids_prompt) == alone
    return generated, alone


@pytest.mark.parametrize("name", sorted(REPLIES))
def test_generated_text_equals_transformers_rendering(family: tuple[str, HFCounter, Any], name: str) -> None:
    fam, counter, ref = family
    reply = REPLIES[name]
    kw = FAMILIES[fam][2]
    if name not in SUPPORTED[fam]:
        with pytest.raises(TemplateError, match="cannot be rebuilt"):
            counter.generated_text(MSGS, tools=TOOLS, **reply, **kw)
        return
    got = counter.generated_text(MSGS, tools=TOOLS, **reply, **kw)
    want, tokens_with_stop = _oracle(ref, fam, reply)
    assert got == want
    assert counter.count(got) + 1 == tokens_with_stop


def test_the_end_of_turn_token_is_left_to_the_stop_rule(family: tuple[str, HFCounter, Any]) -> None:
    fam, counter, ref = family
    got = counter.generated_text(MSGS, tools=TOOLS, **REPLIES["one_call"], **FAMILIES[fam][2])
    assert ref.eos_token not in got and got.rstrip() == got


def test_r1_reasoning_is_opened_only_when_the_prompt_did_not(tmp_path: Path) -> None:
    template = (TEMPLATES / "deepseek_r1_distill.jinja").read_text(encoding="utf-8")
    folder = _folder(tmp_path, "deepseek_r1")
    forced = load_hf_folder(folder)
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["chat_template"] = template.replace("<｜Assistant｜><think>\\n", "<｜Assistant｜>")
    (folder / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    unforced = load_hf_folder(folder)
    reply = REPLIES["reasoning"]
    assert forced.generated_text(MSGS, **reply) == REASONING + "</think>" + "北京晴，上海多云。"
    assert unforced.generated_text(MSGS, **reply) == "<think>" + REASONING + "</think>" + "北京晴，上海多云。"


TS = datetime(2026, 11, 20, 3, tzinfo=UTC)


def test_recount_bills_every_choice_as_generated(family: tuple[str, HFCounter, Any]) -> None:
    fam, counter, ref = family
    kw = FAMILIES[fam][2]
    names = sorted(SUPPORTED[fam])
    choices = [
        {"index": i, "completion": REPLIES[n].get("content"), "reasoning": REPLIES[n].get("reasoning"),
         "tool_calls": REPLIES[n].get("tool_calls"), "finish_reason": "tool_calls" if "call" in n else "stop"}
        for i, n in enumerate(names)
    ]  # fmt: skip
    rec = UsageRecord(
        "n", TS, model="m", messages=MSGS, tools=TOOLS, template_kwargs=kw or None, choices=choices
    )
    (got,) = recount([rec], lambda _m: counter).values()
    assert got.status == "ok"
    assert got.completion_tokens == sum(_oracle(ref, fam, REPLIES[n])[1] for n in names)


def test_a_reply_the_template_cannot_show_is_not_recounted(tmp_path: Path) -> None:
    counter = load_hf_folder(_folder(tmp_path, "llama3_1"))  # no reasoning in Llama 3.1's template
    kw = FAMILIES["llama3_1"][2]
    r = REPLIES["reasoning"]
    rec = UsageRecord(
        "r",
        TS,
        model="m",
        messages=MSGS,
        template_kwargs=kw,
        completion=r["content"],
        reasoning=r["reasoning"],
    )
    (got,) = recount([rec], lambda _m: counter).values()
    assert got.status == "ok" and got.prompt_tokens == counter.count_messages(MSGS, **kw)
    assert got.completion_tokens is None
