"""OpenAI Responses API ⇄ IR, for Responses clients of channels that have no ``/v1/responses`` (Anthropic,
Gemini, chat-only OpenAI-compatible vendors). Streams are in ``responses_stream.py``.

A Responses request is first rewritten as the Chat Completions body it stands for (``responses_to_chat_request``)
and read by the chat parser, so both OpenAI surfaces share one set of rules for what crosses to another vendor.
What only OpenAI's own servers can do is refused with a 400 naming the field: server-side state
(``previous_response_id``, ``conversation``, ``background``, stored prompts, ``item_reference``) and built-in
tools (``web_search``, ``file_search``, ``code_interpreter``, ...).

Answers go the other way: an :class:`IRResponse` becomes a Response object whose ``output`` holds a ``reasoning``
item (thinking shown as a summary), one ``message`` item with the text, and one ``function_call`` item per tool
call. Ids are derived from the upstream's id, so translation stays pure.
"""

from __future__ import annotations

from omnirelay.formats._json import (
    as_list,
    as_obj,
    as_str,
    int_or_zero,
    join,
    loads_object,
    obj_or_none,
    opt_obj,
    opt_str,
    req_str,
)
from omnirelay.formats.ir import (
    FinishReason,
    InvalidRequest,
    IRRequest,
    IRResponse,
    JSONObject,
    MediaPart,
    TextPart,
    ThinkingPart,
    ToolCallPart,
)
from omnirelay.formats.openai_chat import openai_request_to_ir
from omnirelay.formats.usage import Usage

STATEFUL_FIELDS: dict[str, str] = {
    "previous_response_id": "responses are not stored by this gateway for this model; send the whole conversation "
    "in 'input' instead",
    "conversation": "conversations are not stored by this gateway for this model; send the whole conversation in "
    "'input' instead",
    "prompt": "stored prompt templates live on OpenAI's servers only",
    "max_tool_calls": "only OpenAI's built-in tool loop can cap tool calls",
}
"""Fields that need OpenAI's server-side state or tool loop: refused with a 400 when the channel is not OpenAI's."""

DROPPED_FIELDS = frozenset(
    {"store", "include", "stream_options", "truncation", "metadata", "user", "safety_identifier", "prompt_cache_key",
     "prompt_cache_retention", "service_tier", "model", "stream", "input", "instructions", "tools", "tool_choice",
     "text", "reasoning", "max_output_tokens", "background"}
)  # fmt: skip
"""Read separately, or bookkeeping that does not change the generated answer (``store``: nothing is stored;
``include``: extra output the translated answer never has; ``truncation``: the client sends the context)."""

COPIED_FIELDS = ("temperature", "top_p", "parallel_tool_calls", "top_logprobs", "seed")
"""Same name and meaning in Chat Completions."""

INCOMPLETE_REASONS: dict[FinishReason, str] = {
    FinishReason.MAX_TOKENS: "max_output_tokens",
    FinishReason.CONTEXT_WINDOW: "max_output_tokens",
    FinishReason.CONTENT_FILTER: "content_filter",
}
"""Finish reasons that end a Response as ``incomplete``; every other reason is ``completed``."""


CHAT_TO_RESPONSES_FIELDS: dict[str, str] = {
    "reasoning_effort": "reasoning.effort",
    "response_format": "text.format",
    "verbosity": "text.verbosity",
    "max_completion_tokens": "max_output_tokens",
    "logprobs": "top_logprobs",
}
"""Chat field names a translation error may name → what a Responses client called them."""


def responses_field(chat_field: str) -> str:
    head, dot, rest = chat_field.partition(".")
    name = CHAT_TO_RESPONSES_FIELDS.get(head)
    return chat_field if name is None else name + (dot + rest if dot else "")


def _unsupported(field: str, reason: str) -> InvalidRequest:
    return InvalidRequest(f"'{field}' is not supported for this model: {reason}.", field)


# --- request → chat body


def _content_part(part: JSONObject, path: str) -> JSONObject:
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": req_str(part, "text", path)}
    if kind == "refusal":
        return {"type": "text", "text": req_str(part, "refusal", path)}
    if kind == "input_image":
        if part.get("file_id") is not None:
            raise _unsupported(join(path, "file_id"), "uploaded files live on OpenAI's servers only")
        image: JSONObject = {"url": req_str(part, "image_url", path)}
        if isinstance(part.get("detail"), str):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        if part.get("file_id") is not None or part.get("file_url") is not None:
            raise _unsupported(join(path, "file_id"), "only inline 'file_data' can be sent to this model")
        file: JSONObject = {"file_data": req_str(part, "file_data", path)}
        if isinstance(part.get("filename"), str):
            file["filename"] = part["filename"]
        return {"type": "file", "file": file}
    if kind == "input_audio":
        audio = as_obj(part.get("input_audio"), join(path, "input_audio"))
        return {"type": "input_audio", "input_audio": audio}
    raise _unsupported(join(path, "type"), f"content of type {kind!r} cannot be translated")


def _content(content: object, path: str) -> str | list[JSONObject]:
    if isinstance(content, str):
        return content
    return [_content_part(as_obj(p, join(path, i)), join(path, i)) for i, p in enumerate(as_list(content, path))]


def _text(content: str | list[JSONObject]) -> str:
    if isinstance(content, str):
        return content
    return "".join(str(p.get("text", "")) for p in content)


def _input_messages(value: object) -> list[JSONObject]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    messages: list[JSONObject] = []
    for i, raw in enumerate(as_list(value, "input")):
        path = join("input", i)
        item = as_obj(raw, path)
        kind = item.get("type", "message")
        if kind == "message":
            role = req_str(item, "role", path)
            content = _content(item.get("content"), join(path, "content"))
            if role in ("system", "developer"):
                messages.append({"role": "system", "content": _text(content)})
            elif role in ("user", "assistant"):
                messages.append({"role": role, "content": content})
            else:
                raise InvalidRequest(f"'{path}.role' must be user, assistant, system or developer", join(path, "role"))
        elif kind == "function_call":
            call = {
                "id": req_str(item, "call_id", path),
                "type": "function",
                "function": {"name": req_str(item, "name", path), "arguments": req_str(item, "arguments", path)},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                calls = last["tool_calls"]
                assert isinstance(calls, list)
                calls.append(call)
            elif last is not None and last["role"] == "assistant" and isinstance(last.get("content"), (str, list)):
                last["tool_calls"] = [call]
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else _text(_content(output, join(path, "output")))
            messages.append({"role": "tool", "tool_call_id": req_str(item, "call_id", path), "content": text})
        elif kind == "reasoning":
            # Our own earlier reasoning summaries: shown to the user, not part of what the model needs back.
            continue
        else:
            raise _unsupported(join(path, "type"), f"input items of type {kind!r} need OpenAI's servers")
    return messages


def _tools(body: JSONObject, chat: JSONObject) -> None:
    tools: list[JSONObject] = []
    for i, raw in enumerate(as_list(body.get("tools") or [], "tools")):
        path = join("tools", i)
        tool = as_obj(raw, path)
        kind = tool.get("type")
        if kind != "function":
            raise _unsupported(join(path, "type"), f"the built-in tool {kind!r} runs on OpenAI's servers only")
        function: JSONObject = {"name": req_str(tool, "name", path)}
        for key in ("description", "parameters", "strict"):
            if tool.get(key) is not None:
                function[key] = tool[key]
        tools.append({"type": "function", "function": function})
    if tools:
        chat["tools"] = tools
    choice = body.get("tool_choice")
    if choice is None or isinstance(choice, str):
        if choice is not None:
            chat["tool_choice"] = choice
        return
    obj = as_obj(choice, "tool_choice")
    kind = obj.get("type")
    if kind == "function":
        chat["tool_choice"] = {"type": "function", "function": {"name": req_str(obj, "name", "tool_choice")}}
    elif kind == "allowed_tools":
        names = [
            {"type": "function", "function": {"name": req_str(as_obj(t, "tool_choice.tools"), "name", "tool_choice")}}
            for t in as_list(obj.get("tools"), "tool_choice.tools")
        ]
        chat["tool_choice"] = {"type": "allowed_tools", "allowed_tools": {"mode": obj.get("mode"), "tools": names}}
    else:
        raise _unsupported("tool_choice.type", f"the built-in tool {kind!r} runs on OpenAI's servers only")


def _text_format(body: JSONObject, chat: JSONObject) -> None:
    text = opt_obj(body, "text")
    if text is None:
        return
    if text.get("verbosity") is not None:
        chat["verbosity"] = text["verbosity"]
    fmt = opt_obj(text, "format", "text")
    kind = fmt.get("type") if fmt else None
    if fmt is None or kind == "text":
        return
    if kind == "json_object":
        chat["response_format"] = {"type": "json_object"}
    elif kind == "json_schema":
        spec = {k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None}
        chat["response_format"] = {"type": "json_schema", "json_schema": spec}
    else:
        raise _unsupported("text.format.type", f"format {kind!r} cannot be translated")


def responses_to_chat_request(body: JSONObject) -> JSONObject:
    """The Chat Completions body a Responses request stands for. Raises InvalidRequest naming the Responses
    field that needs OpenAI's servers or that no chat format can carry."""
    for name, reason in STATEFUL_FIELDS.items():
        if body.get(name) is not None:
            raise _unsupported(name, reason)
    if body.get("background") is True:
        raise _unsupported("background", "background responses are stored and polled on OpenAI's servers only")
    if body.get("input") is None:
        raise InvalidRequest("Missing required parameter: 'input'.", "input")
    chat: JSONObject = {"model": opt_str(body, "model") or "", "messages": []}
    messages: list[JSONObject] = []
    instructions = body.get("instructions")
    if instructions is not None:
        messages.append({"role": "system", "content": as_str(instructions, "instructions")})
    messages.extend(_input_messages(body["input"]))
    chat["messages"] = messages
    if body.get("stream") is True:
        chat["stream"] = True
    if body.get("max_output_tokens") is not None:
        chat["max_completion_tokens"] = body["max_output_tokens"]
    if body.get("top_logprobs") is not None:
        chat["logprobs"] = True
    for name in COPIED_FIELDS:
        if body.get(name) is not None:
            chat[name] = body[name]
    _tools(body, chat)
    _text_format(body, chat)
    reasoning = opt_obj(body, "reasoning")
    if reasoning is not None and reasoning.get("effort") is not None:
        chat["reasoning_effort"] = reasoning["effort"]
    for key, value in body.items():
        if key not in DROPPED_FIELDS and key not in COPIED_FIELDS and key not in STATEFUL_FIELDS and value is not None:
            chat[key] = value  # the chat parser refuses, naming it, whatever no other vendor can take
    return chat


def responses_request_to_ir(body: bytes | JSONObject, *, model: str | None = None) -> IRRequest:
    return openai_request_to_ir(responses_to_chat_request(loads_object(body)), model=model)


def response_echo(body: JSONObject) -> JSONObject:
    """The request fields a Response object repeats back, with OpenAI's defaults for the ones not sent."""
    text = obj_or_none(body.get("text")) or {}
    return {
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": {"effort": (obj_or_none(body.get("reasoning")) or {}).get("effort"), "summary": None},
        "store": False,
        "temperature": body.get("temperature", 1.0),
        "text": {"format": text.get("format") or {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


# --- usage


def responses_usage_to_ir(usage: JSONObject) -> Usage:
    return Usage(
        input_tokens=int_or_zero(usage, "input_tokens"),
        output_tokens=int_or_zero(usage, "output_tokens"),
        cached_input_tokens=int_or_zero(obj_or_none(usage.get("input_tokens_details")), "cached_tokens"),
        cache_write_tokens=int_or_zero(obj_or_none(usage.get("input_tokens_details")), "cache_write_tokens"),
        reasoning_tokens=int_or_zero(obj_or_none(usage.get("output_tokens_details")), "reasoning_tokens"),
    )


def ir_usage_to_responses(usage: Usage) -> JSONObject:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cached_input_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


# --- answer → Response


def response_id(upstream_id: str) -> str:
    core = "".join(c for c in upstream_id if c.isalnum()) or "omnirelay"
    return "resp_" + core


def output_text(text: str) -> JSONObject:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, text: str | None, status: str = "completed") -> JSONObject:
    """``text=None``: the item as first announced in a stream, before its content part."""
    content = [] if text is None else [output_text(text)]
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def function_call_item(item_id: str, call: ToolCallPart, status: str = "completed") -> JSONObject:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call.id,
        "name": call.name,
        "arguments": call.arguments,
    }


def image_item(item_id: str, part: MediaPart, status: str = "completed") -> JSONObject:
    """A generated image (Gemini image models) as the Responses API shows its own: an image generation call."""
    return {"id": item_id, "type": "image_generation_call", "status": status, "result": part.data}


def reasoning_item(item_id: str, text: str) -> JSONObject:
    return {"id": item_id, "type": "reasoning", "summary": [{"type": "summary_text", "text": text}]}


def response_status(finish: FinishReason | None) -> tuple[str, JSONObject | None]:
    reason = INCOMPLETE_REASONS.get(finish) if finish is not None else None
    return ("incomplete", {"reason": reason}) if reason else ("completed", None)


def response_object(
    rid: str,
    model: str,
    created: int,
    echo: JSONObject,
    *,
    status: str,
    output: list[JSONObject],
    usage: Usage | None,
    incomplete: JSONObject | None = None,
) -> JSONObject:
    return {
        "id": rid,
        "object": "response",
        "created_at": created,
        "status": status,
        "error": None,
        "incomplete_details": incomplete,
        "model": model,
        "output": output,
        **echo,
        "usage": ir_usage_to_responses(usage) if usage is not None else None,
    }


def ir_to_responses_response(response: IRResponse, *, created: int = 0, echo: JSONObject | None = None) -> JSONObject:
    """The first choice as a Response object (Responses has no ``n``)."""
    rid = response_id(response.id)
    output: list[JSONObject] = []
    choice = response.choices[0] if response.choices else None
    parts = choice.parts if choice is not None else []
    thinking = "".join(p.text for p in parts if isinstance(p, ThinkingPart) and not p.redacted)
    if thinking:
        output.append(reasoning_item(f"rs_{rid[5:]}", thinking))
    text = "".join(p.text for p in parts if isinstance(p, TextPart))
    if choice is not None and choice.refusal:
        output.append(
            {
                "id": f"msg_{rid[5:]}",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "refusal", "refusal": choice.refusal}],
            }
        )
    elif text:
        output.append(message_item(f"msg_{rid[5:]}", text))
    images = [p for p in parts if isinstance(p, MediaPart) and p.kind == "image" and p.data is not None]
    output.extend(image_item(f"ig_{rid[5:]}_{i}", image) for i, image in enumerate(images))
    calls = [p for p in parts if isinstance(p, ToolCallPart)]
    output.extend(function_call_item(f"fc_{rid[5:]}_{i}", call) for i, call in enumerate(calls))
    status, incomplete = response_status(choice.finish if choice is not None else None)
    return response_object(
        rid,
        response.model,
        response.created or created,
        echo or response_echo({}),
        status=status,
        output=output,
        usage=response.usage,
        incomplete=incomplete,
    )
