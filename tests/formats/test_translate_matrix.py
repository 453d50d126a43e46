"""Every client format x every upstream format x {stream, non-stream} x {text, tool call, image input}.

A client request goes through ``translate_request``; the upstream body must carry its system prompt, text, tool
and image. A canned upstream answer (recorded-transcript shapes) comes back through ``translate_response`` or
``StreamTranslator`` and is read with the client's official SDK types: content, tool-call arguments, finish
reason and usage must all arrive.
"""

from __future__ import annotations

import itertools

import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from google.genai import types as gtypes

from omnirelay.formats.errors import ANTHROPIC_TYPES
from omnirelay.formats.ir import FORMATS, FetchedMedia, Format, JSONObject, NeedsFetch, UnsupportedField
from omnirelay.formats.translate import StreamTranslator, translate_error, translate_request, translate_response
from tests.formats.canned import (
    ANTHROPIC_SIGNATURE,
    CALL_ARGS,
    CLIENT_REQUESTS,
    FINISH,
    GEMINI_SIGNATURE,
    MODELS,
    PNG,
    TEXT,
    THINKING_ANSWERS,
    THOUGHT,
    UPSTREAM_ANSWERS,
)
from tests.formats.clients import (
    RAW_EVENT,
    anthropic_events,
    gemini_chunks,
    openai_chunks,
    read_body,
    read_stream,
)
from tests.formats.wire import A5_ERROR_EVENT

SCENARIOS = ("text", "tool", "image")
CELLS = list(itertools.product(FORMATS, FORMATS, (False, True), SCENARIOS))


def _upstream_view(fmt: Format, body: JSONObject) -> dict[str, object]:
    """System prompt, texts, tool names and inline images as the upstream body carries them."""
    texts: list[str] = []
    images: list[str] = []
    tools: list[str] = []
    if fmt == "openai":
        system = [m["content"] for m in body["messages"] if m["role"] == "system"]
        for message in body["messages"]:
            content = message["content"]
            if message["role"] != "user":
                continue
            for part in [{"type": "text", "text": content}] if isinstance(content, str) else content:
                if part["type"] == "text":
                    texts.append(part["text"])
                elif part["type"] == "image_url":
                    images.append(part["image_url"]["url"].split(",", 1)[1])
        tools = [t["function"]["name"] for t in body.get("tools", [])]
    elif fmt == "anthropic":
        system = [body["system"]] if isinstance(body.get("system"), str) else []
        for message in body["messages"]:
            for block in message["content"]:
                if block["type"] == "text":
                    texts.append(block["text"])
                elif block["type"] == "image":
                    images.append(block["source"]["data"])
        tools = [t["name"] for t in body.get("tools", [])]
    else:
        system = [p["text"] for p in body["systemInstruction"]["parts"]]
        for content in body["contents"]:
            gtypes.Content.model_validate(content)
            for part in content["parts"]:
                if "text" in part:
                    texts.append(part["text"])
                elif "inlineData" in part:
                    images.append(part["inlineData"]["data"])
        for tool in body.get("tools", []):
            gtypes.Tool.model_validate(tool)
            tools += [d["name"] for d in tool["functionDeclarations"]]
    return {"system": system, "texts": texts, "images": images, "tools": tools}


@pytest.mark.parametrize(("client", "upstream", "stream", "scenario"), CELLS)
def test_round_trip(client: Format, upstream: Format, stream: bool, scenario: str) -> None:
    request = CLIENT_REQUESTS[client](scenario, stream)
    model = MODELS[client] if client == "gemini" else None
    out = translate_request(
        client,
        upstream,
        orjson.dumps(request),
        model=model,
        stream=stream if client == "gemini" else None,
        upstream_model=MODELS[upstream],
        created=1700000000,
    )
    assert out.stream is stream
    assert out.model == MODELS[upstream]
    view = _upstream_view(upstream, orjson.loads(out.body))
    assert view["system"] == ["Be brief."]
    assert view["texts"][0] in ("Hi", "What is this?", "Weather in Paris?")
    assert view["tools"] == (["get_weather"] if scenario == "tool" else [])
    assert view["images"] == ([PNG] if scenario == "image" else [])

    answer = UPSTREAM_ANSWERS[upstream](scenario, stream)
    if stream:
        translator = StreamTranslator(out.context)
        translated = translator.feed(answer) + translator.finish()
        assert translator.finished
        assert translator.usage is not None and translator.usage.input_tokens == 11
        seen = read_stream(client, translated)
    else:
        seen = read_body(client, translate_response(out.context, answer))
    assert seen.error is None
    if scenario == "tool":
        assert seen.calls == [("get_weather", CALL_ARGS)]
        assert seen.text == ""
    else:
        assert seen.text == TEXT
        assert seen.calls == []
    assert seen.finish == FINISH[client][scenario]
    assert (seen.input_tokens, seen.output_tokens, seen.cached_tokens) == (11, 7, 6)


@pytest.mark.parametrize(("client", "upstream"), list(itertools.product(FORMATS, FORMATS)))
def test_tool_result_turn(client: Format, upstream: Format) -> None:
    """The second turn of a tool loop: the call id given to the client maps the result back to the call."""
    request = CLIENT_REQUESTS[client]("tool", False)
    out = translate_request(client, upstream, request, model=MODELS[client], upstream_model=MODELS[upstream])
    answer = translate_response(out.context, UPSTREAM_ANSWERS[upstream]("tool", False))
    seen = read_body(client, answer)
    call_id = seen.call_ids[0]
    if client == "openai":
        request["messages"] += [
            orjson.loads(answer)["choices"][0]["message"],
            {"role": "tool", "tool_call_id": call_id, "content": "22 C, sunny"},
        ]
    elif client == "anthropic":
        request["messages"] += [
            {"role": "assistant", "content": orjson.loads(answer)["content"]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": "22 C, sunny"}]},
        ]
    else:
        call_part = orjson.loads(answer)["candidates"][0]["content"]
        response = {"name": "get_weather", "response": {"output": "22 C, sunny"}}
        request["contents"] += [call_part, {"role": "user", "parts": [{"functionResponse": response}]}]
    second = orjson.loads(
        translate_request(client, upstream, request, model=MODELS[client], upstream_model=MODELS[upstream]).body
    )
    if upstream == "openai":
        call = second["messages"][-2]["tool_calls"][0]
        result = second["messages"][-1]
        assert result == {"role": "tool", "tool_call_id": call["id"], "content": "22 C, sunny"}
    elif upstream == "anthropic":
        call = second["messages"][-2]["content"][0]
        result = second["messages"][-1]["content"][0]
        assert call["type"] == "tool_use" and call["input"] == CALL_ARGS
        assert result == {"type": "tool_result", "tool_use_id": call["id"], "content": "22 C, sunny"}
    else:
        call = second["contents"][-2]["parts"][0]["functionCall"]
        result = second["contents"][-1]["parts"][0]["functionResponse"]
        assert call["name"] == result["name"] == "get_weather"
        assert call.get("id") == result.get("id")
        assert result["response"] == {"output": "22 C, sunny"}


def _history(client: Format, answer: bytes, stream: bool) -> list[JSONObject]:
    """The assistant turn as the client would send it back, then the tool result."""
    if client == "openai":
        if stream:
            message: JSONObject = {"role": "assistant", "content": None, "tool_calls": []}
            blocks: list[JSONObject] = []
            for chunk in openai_chunks(answer):
                for choice in chunk.get("choices", []):  # type: ignore[union-attr]
                    delta = choice["delta"]
                    blocks += delta.get("thinking_blocks", [])
                    for call in delta.get("tool_calls", []):
                        if "id" in call:
                            message["tool_calls"].append({k: v for k, v in call.items() if k != "index"})
                        else:
                            message["tool_calls"][call["index"]]["function"]["arguments"] += call["function"][
                                "arguments"
                            ]
            if blocks:
                message["thinking_blocks"] = blocks
        else:
            message = orjson.loads(answer)["choices"][0]["message"]
        call_id = message["tool_calls"][0]["id"]
        return [message, {"role": "tool", "tool_call_id": call_id, "content": "22 C"}]
    if client == "anthropic":
        if stream:
            snapshot = None
            bufs: dict[int, bytes] = {}
            for name, data in anthropic_events(answer):
                if name != "ping":
                    snapshot = accumulate_event(
                        event=RAW_EVENT.validate_python(data), current_snapshot=snapshot, json_bufs=bufs
                    )
            assert snapshot is not None
            content = [block.model_dump(exclude_none=True) for block in snapshot.content]
        else:
            content = orjson.loads(answer)["content"]
        call_id = next(b["id"] for b in content if b["type"] == "tool_use")
        result = {"type": "tool_result", "tool_use_id": call_id, "content": "22 C"}
        return [{"role": "assistant", "content": content}, {"role": "user", "content": [result]}]
    chunks = gemini_chunks(answer) if stream else [orjson.loads(answer)]
    parts = [p for chunk in chunks for p in chunk["candidates"][0]["content"]["parts"] if p != {"text": ""}]
    response = {"name": "get_weather", "response": {"output": "22 C"}}
    return [{"role": "model", "parts": parts}, {"role": "user", "parts": [{"functionResponse": response}]}]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("client", "upstream"), [(c, u) for c in FORMATS for u in ("anthropic", "gemini") if c != u])
def test_thinking_signatures_come_back(client: Format, upstream: Format, stream: bool) -> None:
    """Thinking + a tool call from an upstream that signs its reasoning, shown to a client of another format and
    sent back: the upstream gets its own signature back where it put it (Anthropic: on the thinking block;
    Gemini: on the function call part)."""
    request = CLIENT_REQUESTS[client]("tool", stream)
    kwargs: dict[str, object] = {"model": MODELS[client], "upstream_model": MODELS[upstream]}
    out = translate_request(client, upstream, request, stream=stream if client == "gemini" else None, **kwargs)  # type: ignore[arg-type]
    answer = THINKING_ANSWERS[upstream](stream)
    if stream:
        translator = StreamTranslator(out.context)
        answer = translator.feed(answer) + translator.finish()
        assert read_stream(client, answer).thinking == THOUGHT
    else:
        answer = translate_response(out.context, answer)
        assert read_body(client, answer).thinking == THOUGHT
    history = _history(client, answer, stream)
    if client == "gemini":
        request["contents"] += history
    else:
        request["messages"] += history
    second = orjson.loads(translate_request(client, upstream, request, **kwargs).body)  # type: ignore[arg-type]
    if upstream == "anthropic":
        blocks = second["messages"][-2]["content"]
        assert blocks[0] == {"type": "thinking", "thinking": THOUGHT, "signature": ANTHROPIC_SIGNATURE}
        assert blocks[-1]["type"] == "tool_use"
        assert second["messages"][-1]["content"][0]["tool_use_id"] == blocks[-1]["id"]
    else:
        parts = second["contents"][-2]["parts"]
        call = next(p for p in parts if "functionCall" in p)
        assert call["thoughtSignature"] == GEMINI_SIGNATURE
        assert call["functionCall"]["args"] == CALL_ARGS


# --- what cannot cross, errors, broken streams --------------------------------------------------------------

UNSUPPORTED: list[tuple[Format, Format, JSONObject, str]] = [
    ("openai", "anthropic", {"n": 2}, "n"),
    ("openai", "anthropic", {"presence_penalty": 0.3}, "presence_penalty"),
    ("openai", "anthropic", {"logprobs": True}, "logprobs"),
    ("openai", "gemini", {"logprobs": True}, "logprobs"),
    ("openai", "gemini", {"logit_bias": {"1": 2}}, "logit_bias"),
    ("openai", "anthropic", {"web_search_options": {}}, "web_search_options"),
    ("openai", "gemini", {"modalities": ["text", "audio"], "audio": {"voice": "alloy"}}, "modalities"),
    ("anthropic", "openai", {"top_k": 5}, "top_k"),
    ("anthropic", "gemini", {"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0]"),
    ("anthropic", "openai", {"mcp_servers": [{"type": "url", "url": "https://x", "name": "x"}]}, "mcp_servers"),
    ("gemini", "openai", {"generationConfig": {"topK": 3}}, "generationConfig.topK"),
    ("gemini", "anthropic", {"generationConfig": {"candidateCount": 2}}, "generationConfig.candidateCount"),
    ("gemini", "anthropic", {"tools": [{"codeExecution": {}}]}, "tools[0].codeExecution"),
    ("gemini", "openai", {"tools": [{"googleSearch": {}}]}, "tools[0].googleSearch"),
    ("gemini", "openai", {"cachedContent": "cachedContents/abc"}, "cachedContent"),
]


@pytest.mark.parametrize(("client", "upstream", "extra", "field"), UNSUPPORTED)
def test_unsupported_fields_name_the_clients_field(
    client: Format, upstream: Format, extra: JSONObject, field: str
) -> None:
    request = {**CLIENT_REQUESTS[client]("text", False), **extra}
    if client == "gemini" and "generationConfig" in extra:
        request["generationConfig"] = {
            **CLIENT_REQUESTS[client]("text", False)["generationConfig"],
            **extra["generationConfig"],
        }  # type: ignore[dict-item]
    with pytest.raises(UnsupportedField) as info:
        translate_request(client, upstream, request, model=MODELS[client])
    assert info.value.field == field
    assert info.value.target == upstream
    assert field in info.value.message


def test_audio_input_to_anthropic_names_the_part() -> None:
    request = CLIENT_REQUESTS["openai"]("text", False)
    request["messages"][1]["content"] = [{"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}]  # type: ignore[index]
    with pytest.raises(UnsupportedField) as info:
        translate_request("openai", "anthropic", request)
    assert info.value.field == "input_audio"


def test_url_images_are_fetched_only_for_gemini() -> None:
    url = "https://example.com/cat.png"
    request = CLIENT_REQUESTS["openai"]("text", False)
    request["messages"][1]["content"] = [{"type": "image_url", "image_url": {"url": url}}]  # type: ignore[index]
    anthropic = orjson.loads(translate_request("openai", "anthropic", request).body)
    assert anthropic["messages"][0]["content"][0]["source"] == {"type": "url", "url": url}
    with pytest.raises(NeedsFetch) as info:
        translate_request("openai", "gemini", request)
    assert info.value.urls == (url,)
    fetched = {url: FetchedMedia("image/png", PNG)}
    gemini = orjson.loads(translate_request("openai", "gemini", request, fetched=fetched).body)
    assert gemini["contents"][0]["parts"][0] == {"inlineData": {"mimeType": "image/png", "data": PNG}}


OPENAI_QUOTA = (
    b'{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,'
    b'"code":"insufficient_quota"}}'
)
GEMINI_BAD_KEY = (
    b'{"error":{"code":400,"message":"API key not valid.","status":"INVALID_ARGUMENT","details":[{"@type":'
    b'"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID"}]}}'
)
UPSTREAM_ERRORS: dict[Format, tuple[int, bytes]] = {
    "openai": (429, OPENAI_QUOTA),
    "anthropic": (529, b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"r"}'),
    "gemini": (400, GEMINI_BAD_KEY),
}
EXPECTED_CODES = {
    "openai": ("insufficient_quota", 429),
    "anthropic": ("overloaded", 503),
    "gemini": ("authentication", 401),
}


@pytest.mark.parametrize(("client", "upstream"), list(itertools.product(FORMATS, FORMATS)))
def test_upstream_errors_are_reshaped(client: Format, upstream: Format) -> None:
    out = translate_request(client, upstream, CLIENT_REQUESTS[client]("text", False), model=MODELS[client])
    status, body = translate_error(out.context, *UPSTREAM_ERRORS[upstream])
    code, expected_status = EXPECTED_CODES[upstream]
    if client == "anthropic" and code == "overloaded":
        expected_status = 529
    assert status == expected_status
    error = orjson.loads(body)
    if client == "openai":
        assert set(error["error"]) == {"message", "type", "param", "code"}
    elif client == "anthropic":
        assert error["type"] == "error" and error["error"]["type"] == ANTHROPIC_TYPES[code]
    else:
        assert error["error"]["code"] == expected_status and error["error"]["status"]


MID_STREAM_ERRORS: dict[Format, bytes] = {
    "openai": b'data: {"error":{"message":"Overloaded","type":"server_error","param":null,"code":"overloaded"}}\n\n',
    "anthropic": A5_ERROR_EVENT,
    "gemini": b'{\n  "error": {\n    "code": 503,\n    "message": "Overloaded",\n    "status": "UNAVAILABLE"\n  }\n}\n',
}


@pytest.mark.parametrize(("client", "upstream"), list(itertools.product(FORMATS, FORMATS)))
def test_mid_stream_error_and_cut_stream(client: Format, upstream: Format) -> None:
    out = translate_request(client, upstream, CLIENT_REQUESTS[client]("text", True), model=MODELS[client], stream=True)
    answer = UPSTREAM_ANSWERS[upstream]("text", True)
    separator = b"\r\n\r\n" if upstream == "gemini" else b"\n\n"
    events = {"openai": 2, "anthropic": 4, "gemini": 1}[upstream]  # up to and including the first text
    head = b"".join(part + separator for part in answer.split(separator)[:events])
    translator = StreamTranslator(out.context)
    translated = translator.feed(head + MID_STREAM_ERRORS[upstream]) + translator.finish()
    seen = read_stream(client, translated)
    assert seen.error is not None
    assert translator.error is not None and translator.error.code == "overloaded"
    assert not translator.finished
    cut = StreamTranslator(out.context)
    translated = cut.feed(head) + cut.finish()
    seen = read_stream(client, translated)
    assert seen.error is not None, "a cut stream ends with the client's error event"
    assert not cut.finished and cut.produced
