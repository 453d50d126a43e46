"""Anthropic Messages ⇄ IR: requests, responses, recorded streams (A1-A5), encoder framing."""

from __future__ import annotations

import orjson
import pytest
from anthropic.types import Message as AnthropicMessage

from omnirelay.formats.anthropic_messages import (
    JSON_TOOL,
    anthropic_request_to_ir,
    anthropic_response_to_ir,
    anthropic_usage_to_ir,
    default_max_tokens,
    ir_to_anthropic_request,
    ir_to_anthropic_response,
    ir_usage_to_anthropic,
)
from omnirelay.formats.anthropic_stream import AnthropicStreamDecoder, AnthropicStreamEncoder
from omnirelay.formats.ir import (
    Choice,
    Finish,
    FinishReason,
    InvalidRequest,
    IRRequest,
    IRResponse,
    MediaPart,
    Message,
    Reasoning,
    RedactedThinking,
    ResponseFormat,
    StreamEnd,
    StreamError,
    StreamStart,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    ThinkingSignature,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolChoice,
    ToolDef,
    ToolResultPart,
    UnsupportedField,
    UsageUpdate,
)
from omnirelay.formats.openai_chat import ir_to_openai_request
from omnirelay.formats.sse import SSEParser
from omnirelay.formats.usage import Usage
from tests.formats.canned import PNG
from tests.formats.clients import anthropic_events, anthropic_stream
from tests.formats.wire import A1_BODY, A1_TOOL_BODY, A2_STREAM, A3_STREAM, A4_STREAM, A5_ERROR_EVENT


def decode(stream: bytes, json_tool: bool = False) -> list[object]:
    parser = SSEParser()
    decoder = AnthropicStreamDecoder(json_tool=json_tool)
    events: list[object] = []
    for event in parser.feed(stream) + parser.flush():
        events += decoder.feed(event.data)
    return events + decoder.close()


def user(text: str) -> Message:
    return Message("user", [TextPart(text)])


# --- requests -----------------------------------------------------------------------------------------------


def test_request_to_ir() -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 2000,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}},
                    {"type": "text", "text": "Look"},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "SIG"},
                    {"type": "redacted_thinking", "data": "OPAQUE"},
                    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "bad", "is_error": True},
                ],
            },
        ],
        "tools": [{"name": "f", "description": "F", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "stop_sequences": ["END"],
        "top_k": 40,
        "metadata": {"user_id": "u"},
    }
    ir = anthropic_request_to_ir(body)
    assert ir.system == ["Be brief."]
    assert ir.messages[0].parts == [
        MediaPart("image", "image/png", data=PNG),
        MediaPart("image", None, url="https://example.com/a.png"),
        TextPart("notes"),
        TextPart("Look"),
    ]
    assert ir.messages[1].parts == [
        ThinkingPart("hmm", "SIG", "anthropic"),
        ThinkingPart("OPAQUE", None, "anthropic", redacted=True),
        ToolCallPart("toolu_1", "f", '{"a":1}'),
    ]
    assert ir.messages[2].parts == [ToolResultPart("toolu_1", "f", [TextPart("bad")], is_error=True)]
    assert ir.tool_choice == ToolChoice("required") and ir.parallel_tool_calls is False
    assert ir.reasoning == Reasoning(budget_tokens=2048, include_thoughts=True)
    assert (ir.max_tokens, ir.stop, ir.top_k, ir.extras) == (2000, ["END"], 40, [])


def test_ir_to_request_defaults_and_thinking_budget() -> None:
    base = IRRequest(model="claude-3-5-haiku-latest", source="openai", messages=[user("hi")])
    assert ir_to_anthropic_request(base)["max_tokens"] == default_max_tokens("claude-3-5-haiku-latest") == 8192
    assert default_max_tokens("claude-3-haiku-20240307") == 4096
    assert default_max_tokens("some-other-model") == 4096
    thinking = IRRequest(model="claude-sonnet-4-5", source="openai", messages=[user("hi")])
    thinking.reasoning = Reasoning(effort="medium")
    body = ir_to_anthropic_request(thinking)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert body["max_tokens"] == 8192 + 8192
    thinking.max_tokens = 4000
    assert ir_to_anthropic_request(thinking)["thinking"]["budget_tokens"] == 3999
    thinking.max_tokens = 1000
    with pytest.raises(InvalidRequest):
        ir_to_anthropic_request(thinking)


def test_ir_to_request_messages_and_sampling() -> None:
    ir = IRRequest(
        model="claude-sonnet-4-5",
        source="openai",
        temperature=1.6,
        stop=["x"],
        parallel_tool_calls=False,
        tools=[ToolDef("f", "F", {"properties": {}})],
        messages=[
            user("hi"),
            Message(
                "assistant",
                [ThinkingPart("deepseek style"), TextPart(""), ToolCallPart("functions.f:0", "f", '{"a": 1}')],
            ),
            Message("user", [TextPart("also"), ToolResultPart("functions.f:0", "f", [TextPart("ok")])]),
        ],
    )
    body = ir_to_anthropic_request(ir)
    assert body["temperature"] == 1.0
    assert body["stop_sequences"] == ["x"]
    assert body["tools"] == [{"name": "f", "input_schema": {"type": "object", "properties": {}}, "description": "F"}]
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assistant = body["messages"][1]["content"]
    assert assistant == [{"type": "tool_use", "id": "functions_f_0", "name": "f", "input": {"a": 1}}]
    assert body["messages"][2]["content"][0] == {"type": "tool_result", "tool_use_id": "functions_f_0", "content": "ok"}
    assert body["messages"][2]["content"][1] == {"type": "text", "text": "also"}


def test_structured_output_rides_a_forced_tool_and_comes_back() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    ir = IRRequest(
        model="claude-sonnet-4-5",
        source="openai",
        messages=[user("count")],
        response_format=ResponseFormat("json_schema", schema=schema, name="out"),
    )
    body = ir_to_anthropic_request(ir)
    assert body["tool_choice"] == {"type": "tool", "name": JSON_TOOL}
    assert body["tools"][0]["name"] == JSON_TOOL and body["tools"][0]["input_schema"] == schema
    back = anthropic_request_to_ir(body)
    assert back.response_format is not None and back.response_format.schema == schema
    assert back.tools == [] and back.tool_choice is None
    answer = {
        "id": "msg",
        "type": "message",
        "role": "assistant",
        "model": "c",
        "content": [{"type": "tool_use", "id": "toolu_9", "name": JSON_TOOL, "input": {"n": 3}}],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 4},
    }
    response = anthropic_response_to_ir(answer, json_tool=True)
    assert response.choices[0].parts == [TextPart('{"n":3}')]
    assert response.choices[0].finish == FinishReason.END_TURN
    ir.reasoning = Reasoning(budget_tokens=2000)
    thinking_body = ir_to_anthropic_request(ir)
    assert thinking_body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "tool_choice" not in thinking_body


@pytest.mark.parametrize(
    ("field", "setting"),
    [("n", {"n": 2}), ("presence_penalty", {"presence_penalty": 1.0}), ("top_logprobs", {"top_logprobs": 2})],
)
def test_what_anthropic_cannot_express(field: str, setting: dict[str, object]) -> None:
    ir = IRRequest(model="c", source="openai", messages=[user("x")], **setting)  # type: ignore[arg-type]
    with pytest.raises(UnsupportedField) as info:
        ir_to_anthropic_request(ir)
    assert info.value.field == field


def test_audio_and_server_tools_are_refused() -> None:
    audio = IRRequest(model="c", source="openai", messages=[Message("user", [MediaPart("audio", "audio/wav", "AA")])])
    with pytest.raises(UnsupportedField) as info:
        ir_to_anthropic_request(audio)
    assert info.value.field == "input_audio"
    body = {
        "model": "c",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
        "container": "c1",
    }
    ir = anthropic_request_to_ir(body)
    with pytest.raises(UnsupportedField) as info:
        ir_to_openai_request(ir)
    assert info.value.field == "tools[0]"
    assert ir_to_anthropic_request(ir)["tools"] == body["tools"]


# --- responses and usage ------------------------------------------------------------------------------------


def test_recorded_responses() -> None:
    text = anthropic_response_to_ir(orjson.loads(A1_BODY))
    assert text.choices[0].finish == FinishReason.END_TURN
    assert text.usage == Usage(input_tokens=406, output_tokens=50)
    tool = anthropic_response_to_ir(orjson.loads(A1_TOOL_BODY))
    assert tool.choices[0].parts == [
        ToolCallPart("toolu_01GHndag5wQmbzNihYmV2UBj", "get_weather", '{"location":"San Francisco, CA","units":"c"}')
    ]
    assert tool.choices[0].finish == FinishReason.TOOL_USE
    again = AnthropicMessage.model_validate(ir_to_anthropic_response(tool))
    assert again.stop_reason == "tool_use" and again.usage.input_tokens == 659


def test_response_encoding_tags_foreign_signatures() -> None:
    response = IRResponse(
        id="r",
        model="gemini",
        choices=[
            Choice(
                0,
                [ThinkingPart("why", "GSIG", "gemini"), TextPart("answer")],
                FinishReason.STOP_SEQUENCE,
                stop_sequence="END",
            )
        ],
        usage=Usage(input_tokens=100, output_tokens=9, cached_input_tokens=60, cache_write_tokens=10),
    )
    body = ir_to_anthropic_response(response)
    message = AnthropicMessage.model_validate(body)
    assert message.content[0].type == "thinking" and message.content[0].signature == "omr1.gemini.GSIG"
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "END"
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (30, 60)
    request = {"model": "c", "max_tokens": 5, "messages": [{"role": "assistant", "content": body["content"]}]}
    assert anthropic_request_to_ir(request).messages[0].parts[0] == ThinkingPart("why", "GSIG", "gemini")


def test_usage_adds_cache_reads_and_writes() -> None:
    raw = {
        "input_tokens": 21,
        "cache_creation_input_tokens": 188086,
        "cache_read_input_tokens": 5,
        "output_tokens": 393,
    }
    usage = anthropic_usage_to_ir(raw)
    assert usage == Usage(188112, 393, cached_input_tokens=5, cache_write_tokens=188086)
    assert anthropic_usage_to_ir(ir_usage_to_anthropic(usage)) == usage


# --- streams ------------------------------------------------------------------------------------------------


def test_decode_a2_padded_text_stream() -> None:
    events = decode(A2_STREAM)
    assert events[0] == StreamStart(
        "msg_013nnniYDrJDocdy5nrMU7cH", "claude-sonnet-4-5-20250929", Usage(input_tokens=135, output_tokens=1)
    )
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "[12345,67890]"
    assert events[-3:] == [
        UsageUpdate(Usage(input_tokens=135, output_tokens=10)),
        Finish(FinishReason.END_TURN),
        StreamEnd(complete=True),
    ]


def test_decode_a3_text_then_tool() -> None:
    events = decode(A3_STREAM)
    assert ToolCallStart(0, "toolu_01NRLabsLyVHZPKxbKvkfSMn", "get_weather") in events
    args = "".join(e.arguments for e in events if isinstance(e, ToolCallDelta))
    assert orjson.loads(args) == {"location": "Paris"}
    assert events[-3] == UsageUpdate(Usage(input_tokens=377, output_tokens=65))
    assert events[-2] == Finish(FinishReason.TOOL_USE)


def test_decode_a4_thinking_and_signature() -> None:
    events = decode(A4_STREAM)
    thinking = "".join(e.text for e in events if isinstance(e, ThinkingDelta))
    assert thinking.startswith("Let me solve this step by step")
    assert ThinkingSignature("EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds...", "anthropic") in events
    assert TextDelta("27 * 453 = 12,231") in events


def test_decode_error_event_and_cut() -> None:
    events = decode(A2_STREAM.split(b"event: content_block_stop")[0] + A5_ERROR_EVENT)
    assert events[-1] == StreamError("Overloaded", "overloaded")
    cut = decode(A2_STREAM.split(b"event: message_delta")[0])
    assert cut[-1] == StreamEnd(complete=False)


def test_decode_json_tool_as_text() -> None:
    stream = A3_STREAM.replace(b'"name":"get_weather"', b'"name":"json_output"')
    events = decode(stream, json_tool=True)
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text.endswith('{"location": "Paris"}')
    assert not any(isinstance(e, ToolCallStart) for e in events)
    assert Finish(FinishReason.END_TURN) in events


def _encode(events: list[object], **options: object) -> bytes:
    encoder = AnthropicStreamEncoder(**options)  # type: ignore[arg-type]
    return b"".join(encoder.encode(e) for e in events)  # type: ignore[arg-type]


def test_encoder_framing_and_late_usage() -> None:
    events = [
        StreamStart("chatcmpl-1", "gpt-4o"),
        ThinkingDelta("plan"),
        ThinkingSignature("GSIG", "gemini"),
        RedactedThinking("OPAQUE"),
        TextDelta("Hi"),
        TextDelta(" there"),
        ToolCallStart(0, "call_1", "f"),
        ToolCallDelta(0, '{"a"'),
        ToolCallDelta(0, ":1}"),
        ToolCallStart(1, "call_2", "g"),
        Finish(FinishReason.TOOL_USE),
        UsageUpdate(Usage(12, 7, cached_input_tokens=2)),
        StreamEnd(),
    ]
    stream = _encode(events, model="claude-x", input_tokens_estimate=9)
    parsed = anthropic_events(stream)
    names = [name for name, _ in parsed]
    assert names[:2] == ["message_start", "ping"]
    assert parsed[0][1]["message"]["usage"]["input_tokens"] == 9
    starts = [data for name, data in parsed if name == "content_block_start"]
    assert [s["index"] for s in starts] == [0, 1, 2, 3, 4, 5]
    assert [s["content_block"]["type"] for s in starts] == [
        "thinking",
        "thinking",  # a Gemini signature gets its own block: it belongs to what follows
        "redacted_thinking",
        "text",
        "tool_use",
        "tool_use",
    ]
    stops = [data["index"] for name, data in parsed if name == "content_block_stop"]
    assert stops == [0, 1, 2, 3, 4, 5]
    assert names[-2:] == ["message_delta", "message_stop"]
    seen = anthropic_stream(stream)
    assert seen.text == "Hi there" and seen.thinking == "plan"
    assert seen.calls == [("f", {"a": 1}), ("g", {})]
    assert (seen.finish, seen.input_tokens, seen.output_tokens, seen.cached_tokens) == ("tool_use", 12, 7, 2)


def test_encoder_errors() -> None:
    cut = anthropic_events(_encode([StreamStart("m", "c"), TextDelta("x"), StreamEnd(complete=False)]))
    assert [n for n, _ in cut][-2:] == ["content_block_stop", "error"]
    assert cut[-1][1]["error"]["type"] == "api_error"
    error = anthropic_events(_encode([StreamStart("m", "c"), StreamError("slow down", "rate_limited")]))
    assert error[-1][1] == {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
