"""Gemini generateContent ⇄ IR: requests, responses, recorded streams (G1-G4), both stream framings."""

from __future__ import annotations

import orjson
import pytest
from google.genai import types as gtypes

from omnirelay.formats.gemini import (
    gemini_request_to_ir,
    gemini_response_to_ir,
    gemini_usage_to_ir,
    ir_to_gemini_request,
    ir_to_gemini_response,
    ir_usage_to_gemini,
    unwrap_signature,
    wrap_signature,
)
from omnirelay.formats.gemini_schema import gemini_schema_to_json_schema
from omnirelay.formats.gemini_stream import GeminiFrameReader, GeminiStreamDecoder, GeminiStreamEncoder
from omnirelay.formats.ir import (
    Choice,
    FetchedMedia,
    Finish,
    FinishReason,
    IRRequest,
    IRResponse,
    MediaPart,
    Message,
    NeedsFetch,
    Reasoning,
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
    ToolResultPart,
    UnsupportedField,
    UsageUpdate,
)
from omnirelay.formats.openai_chat import ir_to_openai_request
from omnirelay.formats.usage import Usage
from tests.formats.canned import PNG
from tests.formats.clients import gemini_chunks, gemini_stream
from tests.formats.wire import G1_BODY, G2_LAST, G2_STREAM, G3_STREAM, G4_STREAM


def decode(stream: bytes) -> list[object]:
    reader = GeminiFrameReader()
    decoder = GeminiStreamDecoder()
    events: list[object] = []
    for text in reader.feed(stream) + reader.flush():
        events += decoder.feed(text)
    return events + decoder.close()


# --- requests -----------------------------------------------------------------------------------------------


def test_request_to_ir_matches_results_to_calls_without_ids() -> None:
    body = {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Weather?"}, {"inlineData": {"mimeType": "image/png", "data": PNG}}]},
            {
                "role": "model",
                "parts": [
                    {"text": "thinking it over", "thought": True},
                    {"functionCall": {"name": "getWeather", "args": {"city": "Tokyo"}}, "thoughtSignature": "SIG"},
                    {"functionCall": {"name": "getWeather", "args": {"city": "Paris"}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "getWeather", "response": {"output": "22C"}}},
                    {"functionResponse": {"name": "getWeather", "response": {"temp": 18}}},
                ],
            },
        ],
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "getWeather",
                        "parameters": {
                            "type": "OBJECT",
                            "properties": {"city": {"type": "STRING", "nullable": True}},
                            "required": ["city"],
                            "propertyOrdering": ["city"],
                        },
                    }
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["getWeather"]}},
        "generationConfig": {
            "temperature": 0.3,
            "topK": 20,
            "candidateCount": 2,
            "maxOutputTokens": 300,
            "stopSequences": ["STOP!"],
            "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": True},
            "responseMimeType": "application/json",
            "responseSchema": {"type": "OBJECT", "properties": {"a": {"type": "INTEGER"}}},
        },
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
    }
    ir = gemini_request_to_ir(body, model="gemini-2.5-flash", stream=True)
    assert ir.system == ["Be brief."] and ir.stream and ir.model == "gemini-2.5-flash"
    assert ir.messages[0].parts == [TextPart("Weather?"), MediaPart("image", "image/png", data=PNG)]
    thought, signature, first, second = ir.messages[1].parts
    assert thought == ThinkingPart("thinking it over", None, "gemini")
    assert signature == ThinkingPart("", "SIG", "gemini")  # it signs the call it sat on
    assert isinstance(first, ToolCallPart) and isinstance(second, ToolCallPart)
    assert first.id != second.id and first.arguments == '{"city":"Tokyo"}'
    results = ir.messages[2].parts
    assert results == [
        ToolResultPart(first.id, "getWeather", [TextPart("22C")]),
        ToolResultPart(second.id, "getWeather", [TextPart('{"temp":18}')]),
    ]
    assert ir.tools[0].parameters == {
        "type": "object",
        "properties": {"city": {"type": ["string", "null"]}},
        "required": ["city"],
    }
    assert ir.tool_choice == ToolChoice("tool", ("getWeather",))
    assert (ir.temperature, ir.top_k, ir.n, ir.max_tokens, ir.stop) == (0.3, 20, 2, 300, ["STOP!"])
    assert ir.reasoning == Reasoning(budget_tokens=2048, include_thoughts=True)
    assert ir.response_format is not None
    assert ir.response_format.schema == {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert ir.extras == []
    ir.top_k = None  # OpenAI has no top-k
    openai = ir_to_openai_request(ir)
    assert [m["tool_call_id"] for m in openai["messages"] if m["role"] == "tool"] == [first.id, second.id]


def test_gemini_only_tools_raise_elsewhere() -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "x"}]}], "tools": [{"googleSearch": {}}]}
    ir = gemini_request_to_ir(body, model="gemini-2.5-flash")
    with pytest.raises(UnsupportedField) as info:
        ir_to_openai_request(ir)
    assert info.value.field == "tools[0].googleSearch"
    assert ir_to_gemini_request(ir)["tools"] == [{"googleSearch": {}}]


def test_ir_to_request() -> None:
    ir = IRRequest(
        model="gemini-3-pro-preview",
        source="openai",
        n=2,
        reasoning=Reasoning(effort="low"),
        tool_choice=ToolChoice("auto", ("f",)),
        messages=[
            Message("user", [TextPart("hi")]),
            Message(
                "assistant",
                [ThinkingPart("r", "ANTHROPIC-SIG", "anthropic"), ToolCallPart("call_omr_x_0", "f", '{"a":1}')],
            ),
            Message("user", [ToolResultPart("call_omr_x_0", "f", [TextPart("boom")], is_error=True)]),
        ],
    )
    body = ir_to_gemini_request(ir)
    model_turn = body["contents"][1]["parts"]
    assert model_turn == [
        {"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "skip_thought_signature_validator"}
    ]
    assert body["contents"][2]["parts"] == [{"functionResponse": {"name": "f", "response": {"error": "boom"}}}]
    assert body["generationConfig"] == {"candidateCount": 2, "thinkingConfig": {"thinkingLevel": "LOW"}}
    ir.model = "gemini-2.5-flash"
    assert ir_to_gemini_request(ir)["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 2048}
    for content in body["contents"]:
        gtypes.Content.model_validate(content)


def test_http_media_must_be_fetched_for_gemini() -> None:
    url = "https://example.com/cat.png"
    ir = IRRequest(
        model="gemini-2.5-flash", source="openai", messages=[Message("user", [MediaPart("image", None, url=url)])]
    )
    with pytest.raises(NeedsFetch) as info:
        ir_to_gemini_request(ir)
    assert info.value.urls == (url,)
    body = ir_to_gemini_request(ir, fetched={url: FetchedMedia("image/png", PNG)})
    assert body["contents"][0]["parts"] == [{"inlineData": {"mimeType": "image/png", "data": PNG}}]
    files = "https://generativelanguage.googleapis.com/v1beta/files/abc"
    ir.messages[0].parts = [MediaPart("document", "application/pdf", url=files)]
    assert ir_to_gemini_request(ir)["contents"][0]["parts"][0]["fileData"]["fileUri"] == files
    with pytest.raises(UnsupportedField):
        ir_to_openai_request(ir)


def test_schema_dialect_conversion() -> None:
    schema = {
        "type": "ARRAY",
        "items": {"type": "OBJECT", "properties": {"n": {"type": "NUMBER", "example": 1}}},
        "minItems": "1",
        "nullable": True,
        "any_of": [{"type": "STRING"}],
    }
    assert gemini_schema_to_json_schema(schema) == {
        "type": ["array", "null"],
        "items": {"type": "object", "properties": {"n": {"type": "number", "examples": [1]}}},
        "minItems": 1,
        "anyOf": [{"type": "string"}],
    }


def test_signature_wrapping() -> None:
    wrapped = wrap_signature("EqQBCg==", "anthropic")
    assert unwrap_signature(wrapped) == ("EqQBCg==", "anthropic")
    assert unwrap_signature("CikBcsjafFK") == ("CikBcsjafFK", "gemini")
    assert wrap_signature("CikB", "gemini") == "CikB"
    part = gtypes.Part.model_validate({"text": "x", "thoughtSignature": wrapped})
    assert part.thought_signature is not None


# --- responses and usage ------------------------------------------------------------------------------------


def test_recorded_body() -> None:
    ir = gemini_response_to_ir(orjson.loads(G1_BODY))
    assert ir.id == "IZI2acSKMoWl0-kPmYj2yQc" and ir.model == "gemini-2.5-flash"
    assert ir.choices[0].parts == [TextPart("Hello! How can I help you today?")]
    assert ir.usage == Usage(input_tokens=2, output_tokens=38, reasoning_tokens=29)
    back = gtypes.GenerateContentResponse.model_validate(ir_to_gemini_response(ir))
    assert back.text == "Hello! How can I help you today?"
    assert back.usage_metadata is not None and back.usage_metadata.thoughts_token_count == 29


def test_function_call_response_and_blocked_prompt() -> None:
    body = {
        "candidates": [
            {
                "content": {"parts": [{"functionCall": {"name": "f", "args": {}}}], "role": "model"},
                "finishReason": "STOP",
            }
        ],
        "responseId": "r1",
    }
    ir = gemini_response_to_ir(body)
    assert ir.choices[0].finish == FinishReason.TOOL_USE
    assert ir.choices[0].parts == [ToolCallPart("call_omr_r10_0", "f", "{}")]
    blocked = gemini_response_to_ir({"promptFeedback": {"blockReason": "SAFETY"}, "responseId": "r2"})
    assert blocked.choices == [Choice(0, [], FinishReason.CONTENT_FILTER)]
    assert gemini_response_to_ir({"candidates": [{"finishReason": "MALFORMED_FUNCTION_CALL"}]}).choices[0].finish == (
        FinishReason.TOOL_ERROR
    )


def test_response_encoding() -> None:
    response = IRResponse(
        id="msg_1",
        model="claude",
        choices=[
            Choice(
                0,
                [ThinkingPart("why", "ASIG", "anthropic"), TextPart("yes"), ToolCallPart("toolu_1", "f", "{bad")],
                FinishReason.MAX_TOKENS,
            )
        ],
        usage=Usage(10, 8, cached_input_tokens=3, reasoning_tokens=5),
    )
    body = ir_to_gemini_response(response)
    parsed = gtypes.GenerateContentResponse.model_validate(body)
    assert parsed.candidates is not None and parsed.candidates[0].finish_reason == gtypes.FinishReason.MAX_TOKENS
    parts = body["candidates"][0]["content"]["parts"]
    assert parts[0]["thought"] is True and unwrap_signature(parts[0]["thoughtSignature"]) == ("ASIG", "anthropic")
    assert parts[2] == {"functionCall": {"name": "f", "args": {"arguments": "{bad"}, "id": "toolu_1"}}
    assert body["usageMetadata"] == {
        "promptTokenCount": 10,
        "candidatesTokenCount": 3,
        "totalTokenCount": 18,
        "thoughtsTokenCount": 5,
        "cachedContentTokenCount": 3,
    }
    assert gemini_usage_to_ir(ir_usage_to_gemini(response.usage)) == response.usage  # type: ignore[arg-type]


# --- streams ------------------------------------------------------------------------------------------------


def test_decode_g2_long_answer_is_cut_without_finish() -> None:
    events = decode(G2_STREAM)
    assert isinstance(events[0], StreamStart) and events[0].id == "IZI2acSKMoWl0-kPmYj2yQc"
    assert events[-2] == UsageUpdate(Usage(input_tokens=4, output_tokens=97 + 2042, reasoning_tokens=2042))
    assert events[-1] == StreamEnd(complete=False)
    last = decode(G2_LAST)
    assert last[-3:] == [
        UsageUpdate(Usage(input_tokens=138, output_tokens=15)),
        Finish(FinishReason.END_TURN),
        StreamEnd(complete=True),
    ]


def test_decode_g3_function_call_with_signature() -> None:
    events = decode(G3_STREAM)
    signature = "CikBcsjafFK168IbtVtoxVV0Tsn8O+eU45rzJahzwuKGmMbd…"
    assert events[1:4] == [
        ThinkingSignature(signature, "gemini"),
        ToolCallStart(0, "call_omr_qpc2afWVFJK4vr0Pq6WiyAU_0", "getWeather"),
        ToolCallDelta(0, '{"location":"Tokyo"}'),
    ]
    assert events[-2:] == [Finish(FinishReason.TOOL_USE), StreamEnd(complete=True)]


def test_decode_g4_thoughts() -> None:
    events = decode(G4_STREAM)
    assert ThinkingDelta("**Calculating the product**\n\nI'm breaking 453 into 400 + 50 + 3…") in events
    assert events.index(ThinkingSignature("CiQBcsjafA…", "gemini")) < events.index(TextDelta("27 \u00d7 453 = 12,231"))


def test_frame_reader_handles_crlf_arrays_and_bare_errors() -> None:
    sse = G2_LAST.replace(b"\n", b"\r\n")
    reader = GeminiFrameReader()
    got = [reader.feed(sse[i : i + 7]) for i in range(0, len(sse), 7)]
    assert [t for chunk in got for t in chunk] + reader.flush() == [G2_LAST[6:].strip().decode()]
    array = b'[{\n  "candidates": [{"content": {"parts": [{"text": "a]}{\\""}]}}]\n}\n,\r\n{"candidates": []}\n]'
    reader = GeminiFrameReader()
    texts = [t for i in range(len(array)) for t in reader.feed(array[i : i + 1])] + reader.flush()
    assert [orjson.loads(t)["candidates"] for t in texts][1] == []
    assert orjson.loads(texts[0])["candidates"][0]["content"]["parts"][0]["text"] == 'a]}{"'
    error = b'data: {"candidates": []}\r\n\r\n{\n  "error": {\n    "code": 503,\n    "status": "UNAVAILABLE"\n  }\n}\n'
    reader = GeminiFrameReader()
    texts = reader.feed(error) + reader.flush()
    decoder = GeminiStreamDecoder()
    events = [e for t in texts for e in decoder.feed(t)]
    assert isinstance(events[-1], StreamError) and events[-1].code == "overloaded"


def _encode(events: list[object], **options: object) -> bytes:
    encoder = GeminiStreamEncoder(**options)  # type: ignore[arg-type]
    return b"".join(encoder.encode(e) for e in events)  # type: ignore[arg-type]


STREAM_EVENTS = [
    StreamStart("msg_1", "claude"),
    ThinkingDelta("plan"),
    ThinkingSignature("ASIG", "anthropic"),
    TextDelta("Hi"),
    ToolCallStart(0, "toolu_1", "f"),
    ToolCallDelta(0, '{"a"'),
    ToolCallDelta(0, ":1}"),
    UsageUpdate(Usage(10, 5)),
    Finish(FinishReason.TOOL_USE),
    StreamEnd(),
]


@pytest.mark.parametrize("sse", [True, False])
def test_encoder_framings(sse: bool) -> None:
    stream = _encode(STREAM_EVENTS, model="gemini-x", sse=sse)
    if sse:
        assert stream.startswith(b"data: {") and stream.endswith(b"}\r\n\r\n")
    else:
        assert stream.startswith(b"[{") and stream.endswith(b"}]") and b"},\r\n{" in stream
        assert len(orjson.loads(stream)) == 3
    chunks = gemini_chunks(stream)
    for chunk in chunks:
        assert chunk["modelVersion"] == "gemini-x" and chunk["responseId"] == "msg_1"
    assert chunks[1]["candidates"][0]["content"]["parts"][0]["thoughtSignature"] == wrap_signature("ASIG", "anthropic")
    last = chunks[-1]["candidates"][0]
    assert last["finishReason"] == "STOP"
    assert last["content"]["parts"] == [{"functionCall": {"name": "f", "args": {"a": 1}, "id": "toolu_1"}}]
    seen = gemini_stream(stream)
    assert (seen.text, seen.thinking, seen.calls) == ("Hi", "plan", [("f", {"a": 1})])
    assert (seen.input_tokens, seen.output_tokens) == (10, 5)


def test_encoder_errors() -> None:
    cut = gemini_chunks(_encode([StreamStart("r", "m"), TextDelta("x"), StreamEnd(complete=False)]))
    assert cut[-1]["error"]["code"] == 502 and cut[-1]["error"]["status"] == "UNAVAILABLE"
    array = _encode([StreamStart("r", "m"), StreamError("slow", "rate_limited")], sse=False)
    assert orjson.loads(array) == [{"error": {"code": 429, "message": "slow", "status": "RESOURCE_EXHAUSTED"}}]
