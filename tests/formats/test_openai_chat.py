"""OpenAI Chat Completions ⇄ IR: requests, responses, recorded streams (O1-O4), encoder framing."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import astuple

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from omnirelay.formats.anthropic_messages import ir_to_anthropic_request
from omnirelay.formats.gemini import ir_to_gemini_request
from omnirelay.formats.ir import (
    Choice,
    Finish,
    FinishReason,
    IRRequest,
    IRResponse,
    MediaPart,
    Message,
    OpaquePart,
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
    ToolResultPart,
    UnsupportedField,
    UsageUpdate,
)
from omnirelay.formats.openai_chat import (
    _lenient_openai_usage,
    ir_to_openai_request,
    ir_to_openai_response,
    ir_usage_to_openai,
    openai_request_to_ir,
    openai_response_to_ir,
    openai_usage_to_ir,
)
from omnirelay.formats.openai_stream import OpenAIStreamDecoder, OpenAIStreamEncoder
from omnirelay.formats.sse import SSEParser
from omnirelay.formats.usage import Usage
from tests.formats.canned import PNG
from tests.formats.clients import openai_chunks, openai_stream
from tests.formats.wire import O1_BODY, O2_STREAM, O3_STREAM, O4_STREAM


def decode(stream: bytes) -> list[object]:
    parser = SSEParser()
    decoder = OpenAIStreamDecoder()
    events: list[object] = []
    for event in parser.feed(stream) + parser.flush():
        events += decoder.feed(event.data)
    return events + decoder.close()


# --- requests -----------------------------------------------------------------------------------------------


def test_request_to_ir_carries_messages_tools_and_options() -> None:
    body = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                    {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "reasoning_content": "thinking...",
                "tool_calls": [
                    {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}},
                    {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_a", "content": "one"},
            {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "two"}]},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}, "strict": True}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "max_completion_tokens": 50,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": "END",
        "response_format": {"type": "json_schema", "json_schema": {"name": "out", "schema": {"type": "object"}}},
        "reasoning_effort": "low",
        "n": 2,
        "seed": 7,
        "user": "u1",
        "store": False,
        "metadata": {"a": "b"},
        "stream_options": {"include_usage": True},
        "stream": True,
    }
    ir = openai_request_to_ir(body)
    assert ir.system == ["Be brief.", "Use metric."]
    user, assistant, results = ir.messages
    assert user.parts == [
        TextPart("Look"),
        MediaPart("image", "image/png", data=PNG),
        MediaPart("image", None, url="https://example.com/cat.jpg"),
        MediaPart("audio", "audio/wav", data="UklGRg=="),
        MediaPart("document", "application/pdf", data="JVBE", filename="a.pdf"),
    ]
    assert assistant.parts == [
        ThinkingPart("thinking..."),
        ToolCallPart("call_a", "f", '{"x":1}'),
        ToolCallPart("call_b", "g", "{}"),
    ]
    assert results.role == "user"
    assert results.parts == [
        ToolResultPart("call_a", "f", [TextPart("one")]),
        ToolResultPart("call_b", "g", [TextPart("two")]),
    ]
    assert ir.tools[0].strict is True and ir.tool_choice is not None and ir.tool_choice.names == ("f",)
    assert (ir.max_tokens, ir.temperature, ir.top_p, ir.stop) == (50, 0.2, 0.9, ["END"])
    assert ir.response_format is not None and ir.response_format.name == "out"
    assert ir.reasoning is not None and ir.reasoning.effort == "low"
    assert (ir.n, ir.seed, ir.stream, ir.include_usage, ir.extras) == (2, 7, True, True, [])


def test_openai_only_fields_raise_for_other_targets_naming_the_field() -> None:
    for field, value in [("logit_bias", {"50256": -100}), ("web_search_options", {}), ("verbosity", "low")]:
        ir = openai_request_to_ir({"model": "m", "messages": [{"role": "user", "content": "x"}], field: value})
        with pytest.raises(UnsupportedField) as info:
            ir_to_anthropic_request(ir)
        assert info.value.field == field
        assert ir_to_openai_request(ir)[field] == value  # an OpenAI upstream still gets it


@pytest.mark.parametrize(
    ("field", "value", "target"),
    [
        ("n", 2, "anthropic"),
        ("presence_penalty", 0.5, "anthropic"),
        ("frequency_penalty", 0.5, "anthropic"),
        ("logprobs", True, "anthropic"),
        ("parallel_tool_calls", False, "gemini"),
    ],
)
def test_inexpressible_fields_raise(field: str, value: object, target: str) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], field: value}
    body["tools"] = [{"type": "function", "function": {"name": "f"}}]
    ir = openai_request_to_ir(body)
    encode = ir_to_anthropic_request if target == "anthropic" else ir_to_gemini_request
    with pytest.raises(UnsupportedField) as info:
        encode(ir)
    assert info.value.field == field and info.value.target == target


def test_file_id_is_openai_only() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "f-1"}}]}]}
    ir = openai_request_to_ir(body)
    assert isinstance(ir.messages[0].parts[0], OpaquePart)
    assert ir_to_openai_request(ir)["messages"][0]["content"] == [{"type": "file", "file": {"file_id": "f-1"}}]
    with pytest.raises(UnsupportedField, match="file_id"):
        ir_to_gemini_request(ir)


def test_ir_to_request_splits_tool_results_and_moves_their_images() -> None:
    ir = IRRequest(
        model="o3-mini",
        source="anthropic",
        max_tokens=10,
        stream=True,
        messages=[
            Message("user", [TextPart("hi")]),
            Message("assistant", [ThinkingPart("hmm", "sig", "anthropic"), ToolCallPart("t1", "shot", "{}")]),
            Message(
                "user",
                [
                    ToolResultPart("t1", "shot", [TextPart("done"), MediaPart("image", "image/png", data=PNG)]),
                    TextPart("and now?"),
                ],
            ),
        ],
    )
    body = ir_to_openai_request(ir)
    assert body["max_completion_tokens"] == 10 and "max_tokens" not in body
    assert body["stream_options"] == {"include_usage": True}
    messages = body["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "shot", "arguments": "{}"}}],
    }
    assert messages[2] == {"role": "tool", "tool_call_id": "t1", "content": "done"}
    assert messages[3]["role"] == "user"
    assert messages[3]["content"][0]["image_url"]["url"] == f"data:image/png;base64,{PNG}"
    assert messages[3]["content"][1] == {"type": "text", "text": "and now?"}


def test_top_k_cannot_reach_openai() -> None:
    ir = IRRequest(model="m", source="anthropic", messages=[Message("user", [TextPart("x")])], top_k=5)
    with pytest.raises(UnsupportedField) as info:
        ir_to_openai_request(ir)
    assert info.value.field == "top_k"


# --- responses and usage ------------------------------------------------------------------------------------


def test_recorded_response_to_ir_and_back() -> None:
    ir = openai_response_to_ir(orjson.loads(O1_BODY))
    assert ir.id == "chatcmpl-ABfvaueLEMLNYbT8YzpJxsmiQ6HSY" and ir.model == "gpt-4o-2024-08-06"
    assert ir.choices[0].parts == [TextPart("I'm unable to provide real-time weather updates. ...")]
    assert ir.choices[0].finish == FinishReason.END_TURN
    assert ir.usage == Usage(input_tokens=14, output_tokens=37)
    again = ChatCompletion.model_validate(ir_to_openai_response(ir))
    assert again.choices[0].message.content == "I'm unable to provide real-time weather updates. ..."
    assert again.usage is not None and again.usage.total_tokens == 51


def test_response_with_tools_reasoning_and_gemini_signature() -> None:
    response = IRResponse(
        id="r",
        model="m",
        choices=[
            Choice(
                0,
                [
                    ThinkingPart("why", None, "gemini"),
                    ThinkingPart("", "SIG", "gemini"),
                    ToolCallPart("c1", "f", '{"a":1}'),
                ],
                FinishReason.TOOL_USE,
            )
        ],
        usage=Usage(input_tokens=10, output_tokens=5, cached_input_tokens=4, reasoning_tokens=2),
    )
    body = ir_to_openai_response(response, created=5)
    parsed = ChatCompletion.model_validate(body)
    message = parsed.choices[0].message
    assert parsed.created == 5 and parsed.choices[0].finish_reason == "tool_calls"
    assert (message.model_extra or {})["reasoning_content"] == "why"
    call = body["choices"][0]["message"]["tool_calls"][0]
    assert call["extra_content"] == {"google": {"thought_signature": "SIG"}}
    back = openai_response_to_ir(body)
    assert back.choices[0].parts == [
        ThinkingPart("why"),
        ThinkingPart("", "SIG", "gemini"),
        ToolCallPart("c1", "f", '{"a":1}'),
    ]


def test_usage_mapping() -> None:
    raw = {
        "prompt_tokens": 100,
        "completion_tokens": 40,
        "prompt_tokens_details": {"cached_tokens": 30, "cache_write_tokens": 5},
        "completion_tokens_details": {"reasoning_tokens": 12},
    }
    usage = openai_usage_to_ir(raw)
    assert usage == Usage(100, 40, cached_input_tokens=30, cache_write_tokens=5, reasoning_tokens=12)
    assert openai_usage_to_ir(ir_usage_to_openai(usage)) == usage


# Counts as upstreams send them, and as confused ones do: ints (negative too), bools, floats, digit strings, nulls.
usage_counts = (
    st.integers(min_value=-3, max_value=10**7)
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["12", "", None, [], {}, [3]])
)
DETAIL_KEYS = ("cached_tokens", "cache_write_tokens", "audio_tokens", "reasoning_tokens", "image_tokens", "text_tokens")


def optional_fields(keys: tuple[str, ...], values: st.SearchStrategy[object]) -> st.SearchStrategy[dict[str, object]]:
    return st.fixed_dictionaries({}, optional=dict.fromkeys(keys, values))


usage_details = (
    optional_fields(DETAIL_KEYS, usage_counts)
    | optional_fields(DETAIL_KEYS, usage_counts).map(OrderedDict)
    | st.sampled_from([None, 0, "", [], "x", [1], 5, True])
)
usage_objects = st.fixed_dictionaries(
    {},
    optional={
        "prompt_tokens": usage_counts,
        "completion_tokens": usage_counts,
        "total_tokens": usage_counts,
        "prompt_tokens_details": usage_details,
        "completion_tokens_details": usage_details,
    },
)


@settings(max_examples=2000)
@given(usage_objects | usage_objects.map(OrderedDict))
def test_usage_read_fast_is_the_lenient_read(raw: dict[str, object]) -> None:
    fast, lenient = openai_usage_to_ir(raw), _lenient_openai_usage(raw)
    assert [(type(v), v) for v in astuple(fast)] == [(type(v), v) for v in astuple(lenient)]


# --- streams ------------------------------------------------------------------------------------------------


def test_decode_o2_text_cut_by_length_with_usage() -> None:
    events = decode(O2_STREAM)
    assert events == [
        StreamStart("chatcmpl-ABfw3Oqj8RD0z6aJiiX37oTjV2HFh", "gpt-4o-2024-08-06"),
        TextDelta('{"'),
        Finish(FinishReason.MAX_TOKENS),
        UsageUpdate(Usage(input_tokens=79, output_tokens=1)),
        StreamEnd(complete=True),
    ]


def test_decode_o3_parallel_tool_calls() -> None:
    events = decode(O3_STREAM)
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    assert [(s.index, s.id, s.name) for s in starts] == [
        (0, "call_JMW1whyEaYG438VE1OIflxA2", "GetWeatherArgs"),
        (1, "call_DNYTawLBoN8fj3KN6qU9N1Ou", "get_stock_price"),
    ]
    args = ["".join(e.arguments for e in events if isinstance(e, ToolCallDelta) and e.index == i) for i in (0, 1)]
    assert orjson.loads(args[0]) == {"city": "Edinburgh", "country": "GB", "units": "c"}
    assert orjson.loads(args[1]) == {"ticker": "AAPL", "exchange": "NASDAQ"}
    assert Finish(FinishReason.TOOL_USE) in events and events[-1] == StreamEnd(complete=True)


def test_decode_o4_interleaved_choices() -> None:
    events = decode(O4_STREAM)
    finishes = [e for e in events if isinstance(e, Finish)]
    assert [f.choice for f in finishes] == [0, 1, 2]
    assert {e.choice for e in events if isinstance(e, TextDelta)} == {0, 1, 2}


def test_decode_errors_and_cuts() -> None:
    decoder = OpenAIStreamDecoder()
    error = b'{"error":{"message":"boom","type":"server_error","param":null,"code":null}}'
    assert decoder.feed(error.decode()) == [StreamError("boom", "upstream_error")]
    assert decoder.close() == []
    cut = OpenAIStreamDecoder()
    cut.feed(O2_STREAM.split(b"\n\n")[0][6:].decode())
    assert cut.close() == [StreamEnd(complete=False)]
    assert OpenAIStreamDecoder().feed("{not json") == [StreamError("the upstream sent a malformed stream event")]


def _encode(events: list[object], **options: object) -> bytes:
    encoder = OpenAIStreamEncoder(**options)  # type: ignore[arg-type]
    return b"".join(encoder.encode(e) for e in events)  # type: ignore[arg-type]


EVENTS = [
    StreamStart("msg_1", "claude"),
    ThinkingDelta("plan"),
    TextDelta("Hi"),
    ThinkingSignature("GSIG", "gemini"),
    ToolCallStart(0, "toolu_1", "f"),
    ToolCallDelta(0, '{"a":'),
    ToolCallDelta(0, "1}"),
    ToolCallStart(1, "toolu_2", "g"),
    ToolCallDelta(1, "{}"),
    Finish(FinishReason.TOOL_USE),
    UsageUpdate(Usage(10, 5, cached_input_tokens=2)),
    StreamEnd(),
]


def test_encoder_framing() -> None:
    stream = _encode(EVENTS, model="gpt-x", created=9, include_usage=True)
    chunks = openai_chunks(stream)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    for chunk in chunks[:-1]:
        ChatCompletionChunk.model_validate(chunk)
        assert chunk["model"] == "gpt-x" and chunk["created"] == 9 and chunk["id"] == "msg_1"
    first_call = chunks[3]["choices"][0]["delta"]["tool_calls"][0]
    assert first_call == {
        "index": 0,
        "id": "toolu_1",
        "type": "function",
        "function": {"name": "f", "arguments": ""},
        "extra_content": {"google": {"thought_signature": "GSIG"}},
    }
    assert chunks[4]["choices"][0]["delta"]["tool_calls"] == [{"index": 0, "function": {"arguments": '{"a":'}}]
    finish = chunks[-3]["choices"][0]
    assert finish["delta"] == {} and finish["finish_reason"] == "tool_calls"
    assert chunks[-2]["choices"] == [] and chunks[-2]["usage"]["prompt_tokens"] == 10
    assert chunks[-1] == {"[DONE]": True}
    seen = openai_stream(stream)
    assert seen.text == "Hi" and seen.thinking == "plan"
    assert seen.calls == [("f", {"a": 1}), ("g", {})]
    assert (seen.finish, seen.input_tokens, seen.cached_tokens) == ("tool_calls", 10, 2)


def test_encoder_hides_usage_unless_asked_and_reports_cuts() -> None:
    chunks = openai_chunks(_encode(EVENTS))
    assert all("usage" not in c for c in chunks)
    cut = openai_chunks(_encode([StreamStart("a", "m"), TextDelta("x"), StreamEnd(complete=False)]))
    assert cut[-1]["error"]["type"] == "server_error"
    error = openai_chunks(_encode([StreamStart("a", "m"), StreamError("Overloaded", "overloaded"), TextDelta("x")]))
    assert error[-1] == {
        "error": {"message": "Overloaded", "type": "server_error", "param": None, "code": "overloaded"}
    }
