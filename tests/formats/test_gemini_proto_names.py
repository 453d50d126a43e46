"""Gemini requests as Google's JSON parser takes them: proto field names (``mime_type``) as well as camelCase,
and URL-safe base64 in ``bytes`` fields. google-genai sends both (``inlineData: {"mime_type", "data"}`` with
URL-safe base64), so a Gemini client's image must reach other vendors in their own, standard, form."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from omnirelay.formats.gemini import camel_request_keys, gemini_request_to_ir, standard_base64
from omnirelay.formats.ir import MediaPart, TextPart, ToolCallPart, ToolResultPart
from omnirelay.formats.translate import translate_request

# Bytes whose standard base64 has "+" and "/", so the URL-safe form differs.
IMAGE = bytes([0xFB, 0xFF, 0xBF, 0x00, 0x3E, 0x3F])
STANDARD = base64.b64encode(IMAGE).decode()
URLSAFE = base64.urlsafe_b64encode(IMAGE).decode()

SNAKE_BODY: dict[str, Any] = {
    "system_instruction": {"parts": [{"text": "Be brief."}]},
    "contents": [
        {
            "role": "user",
            "parts": [{"text": "What is this?"}, {"inline_data": {"mime_type": "image/png", "data": URLSAFE}}],
        },
        {"role": "model", "parts": [{"function_call": {"name": "look_up", "args": {"city_name": "Paris"}}}]},
        {"role": "user", "parts": [{"function_response": {"name": "look_up", "response": {"max_temp": 21}}}]},
    ],
    "tools": [
        {
            "function_declarations": [
                {
                    "name": "look_up",
                    "parameters_json_schema": {
                        "type": "object",
                        "properties": {"city_name": {"type": "string"}},
                        "required": ["city_name"],
                    },
                }
            ]
        }
    ],
    "tool_config": {"function_calling_config": {"mode": "ANY", "allowed_function_names": ["look_up"]}},
    "generation_config": {
        "max_output_tokens": 64,
        "stop_sequences": ["END"],
        "thinking_config": {"thinking_budget": 0},
    },
}


def test_urlsafe_base64_becomes_standard() -> None:
    assert URLSAFE != STANDARD
    assert standard_base64(URLSAFE) == STANDARD
    assert standard_base64(URLSAFE.rstrip("=")) == STANDARD
    assert standard_base64(STANDARD) is STANDARD


def test_camel_keys_rename_proto_fields_but_not_client_data() -> None:
    body = camel_request_keys(SNAKE_BODY)
    assert isinstance(body, dict)
    assert set(body) == {"systemInstruction", "contents", "tools", "toolConfig", "generationConfig"}
    contents = body["contents"]
    assert contents[0]["parts"][1] == {"inlineData": {"mimeType": "image/png", "data": URLSAFE}}
    assert contents[1]["parts"][0]["functionCall"]["args"] == {"city_name": "Paris"}
    assert contents[2]["parts"][0]["functionResponse"]["response"] == {"max_temp": 21}
    schema = body["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]
    assert schema["properties"] == {"city_name": {"type": "string"}}


def test_camel_body_is_returned_as_is() -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "generationConfig": {"maxOutputTokens": 5}}
    assert camel_request_keys(body) is body


def test_snake_case_request_reads_like_camel_case() -> None:
    request = gemini_request_to_ir(SNAKE_BODY, model="gemini-2.5-flash")
    assert request.system == ["Be brief."]
    assert (request.max_tokens, request.stop) == (64, ["END"])
    assert request.reasoning is not None and request.reasoning.enabled is False
    assert request.tool_choice is not None and request.tool_choice.names == ("look_up",)
    assert [t.name for t in request.tools] == ["look_up"]
    first, call_turn, result_turn = request.messages
    assert first.parts[0] == TextPart("What is this?")
    assert first.parts[1] == MediaPart("image", "image/png", data=STANDARD)
    call = call_turn.parts[0]
    assert isinstance(call, ToolCallPart) and orjson.loads(call.arguments) == {"city_name": "Paris"}
    result = result_turn.parts[0]
    assert isinstance(result, ToolResultPart) and result.call_id == call.id


def test_google_genai_image_reaches_openai_and_anthropic_in_standard_base64() -> None:
    body = {"contents": SNAKE_BODY["contents"][:1]}
    openai = orjson.loads(translate_request("gemini", "openai", body, model="gpt-4o-mini").body)
    url = openai["messages"][0]["content"][1]["image_url"]["url"]
    assert url == f"data:image/png;base64,{STANDARD}"
    anthropic = orjson.loads(translate_request("gemini", "anthropic", body, model="claude-haiku-4-5").body)
    source = anthropic["messages"][0]["content"][1]["source"]
    assert source == {"type": "base64", "media_type": "image/png", "data": STANDARD}
