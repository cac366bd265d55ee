"""OpenAI accounting: equal to the API's published totals; tools never under-counted.

Every published tool case is in test_openai_tools.py."""

from __future__ import annotations

import json

import pytest

from llmtally import tokens
from llmtally.tokens import load_tiktoken

# The OpenAI cookbook's "How to count tokens with tiktoken" examples and the prompt_tokens the API
# reported for them (published in the notebook's output).
JARGON = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English.",
    },
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    },
]
WEATHER_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {
                        "type": "string",
                        "description": "The city and state, e.g. San Francisco, CA",
                    },
                    "unit": {
                        "type": "string",
                        "description": "The unit of temperature to return",
                        "enum": ["celsius", "fahrenheit"],
                    },
                },
                "required": ["location"],
            },
        },
    }
]
WEATHER_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful assistant that can answer to questions about the weather.",
    },
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


@pytest.mark.parametrize(
    ("model", "api_prompt_tokens"),
    [("gpt-3.5-turbo", 129), ("gpt-4-0613", 129), ("gpt-4", 129), ("gpt-4o", 124), ("gpt-4o-mini", 124)],
)
def test_messages_equal_api_reported(model: str, api_prompt_tokens: int) -> None:
    assert tokens.load_tokenizer(model).count_messages(JARGON) == api_prompt_tokens


@pytest.mark.parametrize(
    ("model", "api_prompt_tokens"),
    [("gpt-3.5-turbo", 105), ("gpt-4", 105), ("gpt-4o", 101), ("gpt-4o-mini", 101)],
)
def test_tools_equal_api_reported(model: str, api_prompt_tokens: int) -> None:
    counter = tokens.load_tokenizer(model)
    assert counter.count_messages(WEATHER_MESSAGES, tools=WEATHER_TOOLS) == api_prompt_tokens


def test_unmodelled_schema_parts_are_over_counted_never_dropped() -> None:
    counter = load_tiktoken("gpt-4o")
    plain = json.loads(json.dumps(WEATHER_TOOLS))
    formatted = json.loads(json.dumps(WEATHER_TOOLS))
    formatted[0]["function"]["parameters"]["properties"]["location"]["format"] = "city"
    # no published count covers "format": it costs at least the tokens of a "// format: ..." line
    assert counter.count_tools(formatted) - counter.count_tools(plain) >= counter.count('// format: "city"')


def test_tool_choice_adds_tokens() -> None:
    counter = load_tiktoken("gpt-4o")
    auto = counter.count_messages(WEATHER_MESSAGES, tools=WEATHER_TOOLS, tool_choice="auto")
    assert auto == counter.count_messages(WEATHER_MESSAGES, tools=WEATHER_TOOLS)
    forced = counter.count_messages(
        WEATHER_MESSAGES,
        tools=WEATHER_TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_current_weather"}},
    )
    assert forced == auto + 7 + counter.count("get_current_weather")
    assert counter.count_messages(WEATHER_MESSAGES, tools=WEATHER_TOOLS, tool_choice="none") == auto + 1


def test_special_token_look_alikes_are_plain_text_for_openai() -> None:
    counter = load_tiktoken("gpt-4o")
    assert counter.count("<|endoftext|>") > 1


def test_batch_matches_single() -> None:
    counter = load_tiktoken("gpt-4")
    items: list[tokens.BatchItem] = [
        "你好，世界",
        {"messages": JARGON},
        "",
        {"messages": WEATHER_MESSAGES, "tools": WEATHER_TOOLS},
    ]
    assert counter.count_batch(items) == [
        counter.count("你好，世界"),
        129,
        0,
        105,
    ]
