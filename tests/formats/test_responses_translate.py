"""The Responses translators alone: request → chat/IR, IR answer → Response, IR events → Responses stream.

Shapes are validated against the installed ``openai`` SDK's own pydantic types (``Response``,
``ResponseStreamEvent``), so a field name or type the SDK does not know fails here.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from omnirelay.formats.ir import (
    Choice,
    Finish,
    FinishReason,
    InvalidRequest,
    IRResponse,
    StreamEnd,
    StreamError,
    StreamEvent,
    StreamStart,
    TextDelta,
    ThinkingDelta,
    ThinkingPart,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolResultPart,
    UnsupportedField,
    UsageUpdate,
)
from omnirelay.formats.openai_responses import (
    ir_to_responses_response,
    response_echo,
    responses_request_to_ir,
    responses_to_chat_request,
    responses_usage_to_ir,
)
from omnirelay.formats.responses_stream import ResponsesPassthroughStream, ResponsesStreamEncoder
from omnirelay.formats.sse import SSEParser
from omnirelay.formats.translate import translate_responses_request
from omnirelay.formats.usage import Usage

EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)


def decode(stream: bytes) -> list[dict[str, Any]]:
    parsed = SSEParser().feed(stream)
    events = [orjson.loads(e.data) for e in parsed]
    for sse, event in zip(parsed, events, strict=True):
        assert sse.event == event["type"]
        EVENTS.validate_python(event)  # the SDK's own model of every event type
    return events


# --- requests -----------------------------------------------------------------------------------------------


def test_string_input_and_instructions() -> None:
    chat = responses_to_chat_request({"model": "m", "input": "hi", "instructions": "be brief", "max_output_tokens": 50})
    assert chat["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert chat["max_completion_tokens"] == 50


def test_items_become_chat_messages_with_tool_calls_merged() -> None:
    body = {
        "model": "m",
        "input": [
            {"role": "developer", "content": "rules"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
            {"type": "function_call", "call_id": "c1", "name": "w", "arguments": '{"city":"A"}'},
            {"type": "function_call", "call_id": "c2", "name": "w", "arguments": '{"city":"B"}'},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "rain"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
        ],
    }
    request = responses_request_to_ir(body)
    assert request.system == ["rules"]
    assert [m.role for m in request.messages] == ["user", "assistant", "user"]
    calls = request.messages[1].parts
    assert [c.id for c in calls if isinstance(c, ToolCallPart)] == ["c1", "c2"]
    results = [p for p in request.messages[2].parts if isinstance(p, ToolResultPart)]
    assert [(r.call_id, r.name) for r in results] == [("c1", "w"), ("c2", "w")]


def test_function_tools_tool_choice_and_json_schema() -> None:
    body = {
        "model": "m",
        "input": "x",
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True}],
        "tool_choice": {"type": "function", "name": "f"},
        "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True}},
        "reasoning": {"effort": "high", "summary": "auto"},
    }
    request = responses_request_to_ir(body)
    assert [t.name for t in request.tools] == ["f"] and request.tools[0].strict is True
    assert request.tool_choice is not None and request.tool_choice.names == ("f",)
    assert request.response_format is not None and request.response_format.name == "out"
    assert request.reasoning is not None and request.reasoning.effort == "high"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"conversation": {"id": "conv_1"}}, "conversation"),
        ({"background": True}, "background"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"tools": [{"type": "web_search_preview"}]}, "tools[0].type"),
        ({"tool_choice": {"type": "file_search"}}, "tool_choice.type"),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]},
            "input[0].content[0].file_id",
        ),
    ],
)
def test_what_needs_openai_servers_is_refused_by_name(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        responses_to_chat_request({"model": "m", "input": "x", **extra})
    assert caught.value.param == param


def test_openai_only_fields_refused_for_other_vendors_but_kept_for_chat_openai() -> None:
    body = {"model": "m", "input": "x", "text": {"verbosity": "low"}}
    with pytest.raises(UnsupportedField) as caught:
        translate_responses_request("anthropic", body)
    assert caught.value.field == "verbosity"
    upstream = translate_responses_request("openai", body)
    assert orjson.loads(upstream.body)["verbosity"] == "low"


def test_translated_request_to_gemini_and_anthropic() -> None:
    body = {"model": "m", "input": "hello", "instructions": "sys", "max_output_tokens": 77, "stream": True}
    gemini = orjson.loads(translate_responses_request("gemini", body, upstream_model="gemini-2.5-flash").body)
    assert gemini["systemInstruction"]["parts"][0]["text"] == "sys"
    assert gemini["generationConfig"]["maxOutputTokens"] == 77
    anthropic = translate_responses_request("anthropic", body, upstream_model="claude-x")
    sent = orjson.loads(anthropic.body)
    assert (sent["model"], sent["system"], sent["max_tokens"], sent["stream"]) == ("claude-x", "sys", 77, True)
    assert anthropic.context.responses is not None


# --- usage and whole answers --------------------------------------------------------------------------------


def test_usage_both_ways() -> None:
    usage = responses_usage_to_ir(
        {
            "input_tokens": 100,
            "input_tokens_details": {"cached_tokens": 40},
            "output_tokens": 30,
            "output_tokens_details": {"reasoning_tokens": 12},
            "total_tokens": 130,
        }
    )
    assert usage == Usage(input_tokens=100, output_tokens=30, cached_input_tokens=40, reasoning_tokens=12)


@pytest.mark.parametrize(
    ("finish", "status", "reason"),
    [
        (FinishReason.END_TURN, "completed", None),
        (FinishReason.TOOL_USE, "completed", None),
        (FinishReason.MAX_TOKENS, "incomplete", "max_output_tokens"),
        (FinishReason.CONTENT_FILTER, "incomplete", "content_filter"),
    ],
)
def test_answer_becomes_a_valid_response(finish: FinishReason, status: str, reason: str | None) -> None:
    answer = IRResponse(
        id="msg_01",
        model="claude-x",
        choices=[
            Choice(
                0,
                [ThinkingPart("hmm", "sig", "anthropic"), ToolCallPart("toolu_1", "f", '{"a":1}')],
                finish=finish,
            )
        ],
        usage=Usage(input_tokens=5, output_tokens=7),
    )
    body = ir_to_responses_response(answer, created=123, echo=response_echo({"instructions": "x"}))
    response = Response.model_validate(body)
    assert response.status == status
    assert (response.incomplete_details.reason if response.incomplete_details else None) == reason
    assert [item.type for item in response.output] == ["reasoning", "function_call"]
    assert response.usage is not None and response.usage.total_tokens == 12
    assert response.instructions == "x" and response.created_at == 123


# --- streams ------------------------------------------------------------------------------------------------


@st.composite
def turns(draw: st.DrawFn) -> tuple[list[str], list[str], list[tuple[str, list[str]]], FinishReason]:
    thinking = draw(st.lists(st.text(min_size=1, max_size=8), max_size=4))
    text = draw(st.lists(st.text(min_size=1, max_size=8), max_size=6))
    calls = draw(
        st.lists(
            st.tuples(st.from_regex(r"[a-z_]{1,10}", fullmatch=True), st.lists(st.text(max_size=6), max_size=4)),
            max_size=3,
        )
    )
    finish = draw(st.sampled_from([FinishReason.END_TURN, FinishReason.MAX_TOKENS, FinishReason.TOOL_USE]))
    return thinking, text, calls, finish


@settings(max_examples=80, deadline=None)
@given(turns(), st.integers(min_value=1, max_value=64))
def test_stream_events_validate_and_add_up(
    turn: tuple[list[str], list[str], list[tuple[str, list[str]]], FinishReason], split: int
) -> None:
    thinking, text, calls, finish = turn
    events: list[StreamEvent] = [StreamStart("up-1", "model-x")]
    events += [ThinkingDelta(t) for t in thinking]
    events += [TextDelta(t) for t in text]
    for i, (name, fragments) in enumerate(calls):
        events.append(ToolCallStart(i, f"call_{i}", name))
        events += [ToolCallDelta(i, f) for f in fragments]
    events += [TextDelta("ignored", choice=1), Finish(finish), UsageUpdate(Usage(3, 4)), StreamEnd()]
    encoder = ResponsesStreamEncoder(model="public", created=9)
    wire = b"".join(encoder.encode(e) for e in events)
    # Any split of the bytes must parse the same (the SSE parser is the client's).
    parser = SSEParser()
    pieces = [wire[i : i + split] for i in range(0, len(wire), split)]
    assert [e.data for p in pieces for e in parser.feed(p)] == [e.data for e in SSEParser().feed(wire)]
    out = decode(wire)
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    assert out[0]["type"] == "response.created" and out[1]["type"] == "response.in_progress"
    final = out[-1]
    expected_status = "incomplete" if finish == FinishReason.MAX_TOKENS else "completed"
    assert final["type"] == f"response.{expected_status}"
    response = Response.model_validate(final["response"])
    assert response.id == out[0]["response"]["id"] and response.model == "public"
    assert response.output_text == "".join(text)
    assert "".join(e["delta"] for e in out if e["type"] == "response.output_text.delta") == "".join(text)
    summary = [item for item in response.output if item.type == "reasoning"]
    assert ("".join(thinking) and summary[0].summary[0].text) == ("".join(thinking) or "")
    got_calls = [(item.name, item.arguments) for item in response.output if item.type == "function_call"]
    assert got_calls == [(name, "".join(fragments)) for name, fragments in calls]
    # Each item is announced before its deltas and closed with output_item.done at its own index.
    added = [e["output_index"] for e in out if e["type"] == "response.output_item.added"]
    done = [e["output_index"] for e in out if e["type"] == "response.output_item.done"]
    assert added == done == list(range(len(response.output)))
    assert response.usage is not None and response.usage.total_tokens == 7


def test_stream_error_and_cut_end_with_an_error_event() -> None:
    encoder = ResponsesStreamEncoder()
    wire = encoder.encode(StreamStart("x", "m")) + encoder.encode(TextDelta("hi"))
    wire += encoder.encode(StreamError("overloaded upstream", "overloaded", 503))
    assert encoder.encode(StreamEnd()) == b""
    out = decode(wire)
    assert out[-1] == {
        "type": "error",
        "code": "overloaded",
        "message": "overloaded upstream",
        "param": None,
        "sequence_number": len(out) - 1,
    }
    cut = ResponsesStreamEncoder()
    wire = cut.encode(StreamStart("x", "m")) + cut.encode(StreamEnd(complete=False))
    assert decode(wire)[-1]["type"] == "error"


def test_passthrough_tap_reads_usage_and_forwards_bytes_unchanged() -> None:
    encoder = ResponsesStreamEncoder(model="m")
    wire = b"".join(
        encoder.encode(e)
        for e in [
            StreamStart("a", "m"),
            TextDelta("hello"),
            UsageUpdate(Usage(11, 2, cached_input_tokens=3)),
            StreamEnd(),
        ]
    )
    tap = ResponsesPassthroughStream()
    relayed = b"".join(tap.feed(wire[i : i + 7]) for i in range(0, len(wire), 7)) + tap.finish()
    assert relayed == wire
    assert tap.finished and tap.error is None
    assert tap.usage == Usage(input_tokens=11, output_tokens=2, cached_input_tokens=3)
    assert tap.produced == ["hello"]


def test_passthrough_tap_adds_an_error_event_when_the_upstream_stops_early() -> None:
    encoder = ResponsesStreamEncoder(model="m")
    wire = encoder.encode(StreamStart("a", "m")) + encoder.encode(TextDelta("hel"))
    tap = ResponsesPassthroughStream()
    assert tap.feed(wire) == wire
    tail = tap.finish()
    assert not tap.finished
    assert decode(wire + tail)[-1]["type"] == "error"
