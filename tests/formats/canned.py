"""Client requests and upstream answers for the translation matrix, shaped like the recorded transcripts.

Every upstream answer reports the same usage: 11 prompt tokens of which 6 cached, 7 output tokens.
"""

from __future__ import annotations

import orjson

from omnirelay.formats.ir import Format, JSONObject

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER_SCHEMA: JSONObject = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
TEXT = "Hello there"
CALL_ARGS: JSONObject = {"city": "Paris"}
MODELS: dict[Format, str] = {"openai": "gpt-4o", "anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash"}


# --- client requests ----------------------------------------------------------------------------------------


def openai_request(scenario: str, stream: bool) -> JSONObject:
    user: object = "Hi"
    body: JSONObject = {"model": MODELS["openai"], "max_tokens": 100, "temperature": 0.5, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    if scenario == "image":
        user = [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        ]
    if scenario == "tool":
        user = "Weather in Paris?"
        function = {"name": "get_weather", "description": "Weather now", "parameters": WEATHER_SCHEMA}
        body["tools"] = [{"type": "function", "function": function}]
        body["tool_choice"] = "auto"
    body["messages"] = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": user}]
    return body


def anthropic_request(scenario: str, stream: bool) -> JSONObject:
    content: object = "Hi"
    body: JSONObject = {"model": MODELS["anthropic"], "max_tokens": 100, "temperature": 0.5, "system": "Be brief."}
    if stream:
        body["stream"] = True
    if scenario == "image":
        content = [
            {"type": "text", "text": "What is this?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        ]
    if scenario == "tool":
        content = "Weather in Paris?"
        tool = {"name": "get_weather", "description": "Weather now", "input_schema": WEATHER_SCHEMA}
        body["tools"] = [tool]
        body["tool_choice"] = {"type": "auto"}
    body["messages"] = [{"role": "user", "content": content}]
    return body


def gemini_request(scenario: str, stream: bool) -> JSONObject:
    parts: list[object] = [{"text": "Hi"}]
    body: JSONObject = {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"maxOutputTokens": 100, "temperature": 0.5},
    }
    if scenario == "image":
        parts = [{"text": "What is this?"}, {"inlineData": {"mimeType": "image/png", "data": PNG}}]
    if scenario == "tool":
        parts = [{"text": "Weather in Paris?"}]
        declaration = {"name": "get_weather", "description": "Weather now", "parameters": WEATHER_SCHEMA}
        body["tools"] = [{"functionDeclarations": [declaration]}]
        body["toolConfig"] = {"functionCallingConfig": {"mode": "AUTO"}}
    body["contents"] = [{"role": "user", "parts": parts}]
    return body


CLIENT_REQUESTS = {"openai": openai_request, "anthropic": anthropic_request, "gemini": gemini_request}


# --- upstream answers ---------------------------------------------------------------------------------------

OPENAI_USAGE: JSONObject = {
    "prompt_tokens": 11,
    "completion_tokens": 7,
    "total_tokens": 18,
    "prompt_tokens_details": {"cached_tokens": 6},
    "completion_tokens_details": {"reasoning_tokens": 0},
}
ANTHROPIC_USAGE: JSONObject = {
    "input_tokens": 5,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 6,
    "output_tokens": 7,
}
GEMINI_USAGE: JSONObject = {
    "promptTokenCount": 11,
    "candidatesTokenCount": 7,
    "totalTokenCount": 18,
    "cachedContentTokenCount": 6,
}


def _openai_chunk(delta: JSONObject, finish: str | None = None) -> bytes:
    chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1727346171,
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def openai_answer(scenario: str, stream: bool) -> bytes:
    tool = scenario == "tool"
    if not stream:
        message: JSONObject = {"role": "assistant", "content": None if tool else TEXT, "refusal": None}
        if tool:
            function = {"name": "get_weather", "arguments": orjson.dumps(CALL_ARGS).decode()}
            message["tool_calls"] = [{"id": "call_1", "type": "function", "function": function}]
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "tool_calls" if tool else "stop"}
        body = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1727346171,
            "model": "gpt-4o-2024-08-06",
            "choices": [choice],
            "usage": OPENAI_USAGE,
        }
        return orjson.dumps(body)
    out = _openai_chunk({"role": "assistant", "content": None if tool else ""})
    if tool:
        start = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
        out += _openai_chunk({"tool_calls": [start]})
        for fragment in ('{"ci', 'ty": "Pa', 'ris"}'):
            out += _openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]})
        out += _openai_chunk({}, "tool_calls")
    else:
        out += _openai_chunk({"content": "Hello"}) + _openai_chunk({"content": " there"}) + _openai_chunk({}, "stop")
    usage = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o", "choices": []}
    usage["usage"] = OPENAI_USAGE
    return out + b"data: " + orjson.dumps(usage) + b"\n\ndata: [DONE]\n\n"


def _event(name: str, data: JSONObject) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def anthropic_answer(scenario: str, stream: bool) -> bytes:
    tool = scenario == "tool"
    if not stream:
        block: JSONObject = {"type": "text", "text": TEXT}
        if tool:
            block = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": CALL_ARGS}
        body = {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [block],
            "stop_reason": "tool_use" if tool else "end_turn",
            "stop_sequence": None,
            "usage": ANTHROPIC_USAGE,
        }
        return orjson.dumps(body)
    start_usage = {**ANTHROPIC_USAGE, "output_tokens": 1}
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": start_usage,
    }
    out = _event("message_start", {"type": "message_start", "message": message})
    if tool:
        block = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
        out += _event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block})
        out += _event("ping", {"type": "ping"})
        for fragment in ("", '{"city"', ': "Paris"}'):
            delta = {"type": "input_json_delta", "partial_json": fragment}
            out += _event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
    else:
        block = {"type": "text", "text": ""}
        out += _event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block})
        out += _event("ping", {"type": "ping"})
        for fragment in ("Hello", " there"):
            delta = {"type": "text_delta", "text": fragment}
            out += _event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
    out += _event("content_block_stop", {"type": "content_block_stop", "index": 0})
    delta = {"stop_reason": "tool_use" if tool else "end_turn", "stop_sequence": None}
    out += _event("message_delta", {"type": "message_delta", "delta": delta, "usage": {"output_tokens": 7}})
    return out + _event("message_stop", {"type": "message_stop"})


def _gemini(parts: list[JSONObject], finish: str | None, usage: JSONObject) -> JSONObject:
    candidate: JSONObject = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": "gemini-2.5-flash",
        "responseId": "IZI2acSKMoWl0-kPmYj2yQc",
    }


def gemini_answer(scenario: str, stream: bool) -> bytes:
    tool = scenario == "tool"
    parts: list[JSONObject] = [{"functionCall": {"name": "get_weather", "args": CALL_ARGS}}] if tool else []
    if not stream:
        return orjson.dumps(_gemini(parts or [{"text": TEXT}], "STOP", GEMINI_USAGE), option=orjson.OPT_INDENT_2)
    early = {"promptTokenCount": 11, "candidatesTokenCount": 2, "totalTokenCount": 13, "cachedContentTokenCount": 6}
    chunks = [_gemini(parts, "STOP", GEMINI_USAGE)] if tool else []
    if not tool:
        chunks = [_gemini([{"text": "Hello"}], None, early), _gemini([{"text": " there"}], "STOP", GEMINI_USAGE)]
    return b"".join(b"data: " + orjson.dumps(chunk) + b"\r\n\r\n" for chunk in chunks)


UPSTREAM_ANSWERS = {"openai": openai_answer, "anthropic": anthropic_answer, "gemini": gemini_answer}

FINISH = {
    "openai": {"text": "stop", "tool": "tool_calls", "image": "stop"},
    "anthropic": {"text": "end_turn", "tool": "tool_use", "image": "end_turn"},
    "gemini": {"text": "STOP", "tool": "STOP", "image": "STOP"},
}
"""The finish reason each client must see, per scenario."""


# --- answers with reasoning and signatures (for the history round trip) -------------------------------------

THOUGHT = "Let me think"
ANTHROPIC_SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"
GEMINI_SIGNATURE = "CikBcsjafFK168IbtVtoxVV0Tsn8"


def anthropic_thinking_answer(stream: bool) -> bytes:
    call = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": CALL_ARGS}
    if not stream:
        body = {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": "thinking", "thinking": THOUGHT, "signature": ANTHROPIC_SIGNATURE}, call],
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "usage": ANTHROPIC_USAGE,
        }
        return orjson.dumps(body)
    message = orjson.loads(anthropic_answer("tool", True).split(b"\n")[1][6:])["message"]
    out = _event("message_start", {"type": "message_start", "message": message})
    block = {"type": "thinking", "thinking": "", "signature": ""}
    out += _event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block})
    for delta in (
        {"type": "thinking_delta", "thinking": "Let me "},
        {"type": "thinking_delta", "thinking": "think"},
        {"type": "signature_delta", "signature": ANTHROPIC_SIGNATURE},
    ):
        out += _event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
    out += _event("content_block_stop", {"type": "content_block_stop", "index": 0})
    start = {**call, "input": {}}
    out += _event("content_block_start", {"type": "content_block_start", "index": 1, "content_block": start})
    delta = {"type": "input_json_delta", "partial_json": orjson.dumps(CALL_ARGS).decode()}
    out += _event("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": delta})
    out += _event("content_block_stop", {"type": "content_block_stop", "index": 1})
    end = {"stop_reason": "tool_use", "stop_sequence": None}
    out += _event("message_delta", {"type": "message_delta", "delta": end, "usage": {"output_tokens": 7}})
    return out + _event("message_stop", {"type": "message_stop"})


def gemini_thinking_answer(stream: bool) -> bytes:
    thought: JSONObject = {"text": THOUGHT, "thought": True}
    call: JSONObject = {
        "functionCall": {"name": "get_weather", "args": CALL_ARGS},
        "thoughtSignature": GEMINI_SIGNATURE,
    }
    if not stream:
        return orjson.dumps(_gemini([thought, call], "STOP", GEMINI_USAGE))
    chunks = [_gemini([thought], None, GEMINI_USAGE), _gemini([call], "STOP", GEMINI_USAGE)]
    return b"".join(b"data: " + orjson.dumps(chunk) + b"\r\n\r\n" for chunk in chunks)


THINKING_ANSWERS = {"anthropic": anthropic_thinking_answer, "gemini": gemini_thinking_answer}
