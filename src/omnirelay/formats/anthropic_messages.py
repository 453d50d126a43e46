"""Anthropic Messages ⇄ IR: requests, responses, usage. Streams are in ``anthropic_stream.py``.

Anthropic requires ``max_tokens``; a source without one gets :func:`default_max_tokens` (plus the thinking
budget when reasoning is on, since thinking counts toward it). Structured output is sent as a forced tool
named :data:`JSON_TOOL` whose input becomes the text of the answer on the way back; with thinking on
(Anthropic refuses a forced tool then) the native ``output_config.format`` is used instead. Only Anthropic's
own signed thinking is sent to Anthropic; other vendors' reasoning in the history is left out, as Anthropic
would reject it.
"""

from __future__ import annotations

from collections.abc import Mapping

from omnirelay.formats._json import (
    as_list,
    as_obj,
    as_str,
    dumps_str,
    int_or_zero,
    join,
    list_or_empty,
    obj_or_none,
    opt_bool,
    opt_float,
    opt_int,
    opt_list,
    opt_obj,
    opt_str,
    parse_arguments,
    req_str,
    str_or_none,
)
from omnirelay.formats.images import inline_media, is_gemini_uri
from omnirelay.formats.ir import (
    ROLES,
    Choice,
    FetchedMedia,
    FinishReason,
    InvalidRequest,
    IRRequest,
    IRResponse,
    JSONObject,
    MediaKind,
    MediaPart,
    Message,
    OpaquePart,
    Part,
    Reasoning,
    ResponseFormat,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolChoice,
    ToolDef,
    ToolResultPart,
    VendorExtra,
    check_extras,
    check_opaque,
    extra_tools,
    reasoning_budget,
    resolve_tool_names,
    tag_signature,
    unsupported,
    untag_signature,
    untranslatable,
)
from omnirelay.formats.usage import Usage

JSON_TOOL = "json_output"

DEFAULT_MAX_TOKENS: dict[str, int] = {
    "claude-3-haiku": 4096,
    "claude-3-opus": 4096,
    "claude-3-sonnet": 4096,
    "claude-3-5": 8192,
    "claude-3-7": 8192,
    "claude-sonnet-4": 8192,
    "claude-opus-4": 8192,
    "claude-haiku-4": 8192,
}
"""``max_tokens`` sent when the client gave none, by longest model-name prefix; :data:`FALLBACK_MAX_TOKENS`
otherwise. Conservative: every model in a family accepts it."""
FALLBACK_MAX_TOKENS = 4096
MIN_THINKING_BUDGET = 1024

DROPPED_FIELDS: dict[str, str] = {
    "metadata": "user id for Anthropic's abuse monitoring; no effect on the output",
    "service_tier": "Anthropic's capacity tier; the gateway prices by its own table",
    "cache_control": "prompt-caching breakpoint; changes cost, not output",
    "speed": "latency tier; changes latency, not output",
    "model": "read separately",
    "stream": "read separately",
}
"""Anthropic request fields other upstreams never need. ``cache_control`` on blocks is dropped likewise, and
so are a document's ``title``/``context``, text ``citations`` in the history (metadata of earlier output), and
an IR ``seed`` on the way to Anthropic (no seed there; seeding is best effort everywhere)."""

ANTHROPIC_ONLY_FIELDS: dict[str, str] = {
    "container": "Anthropic's code-execution container",
    "mcp_servers": "Anthropic's MCP connector",
    "context_management": "Anthropic's context editing",
    "inference_geo": "data residency cannot be guaranteed elsewhere",
}

STOP_TO_IR: dict[str, FinishReason] = {
    "end_turn": FinishReason.END_TURN,
    "stop_sequence": FinishReason.STOP_SEQUENCE,
    "max_tokens": FinishReason.MAX_TOKENS,
    "model_context_window_exceeded": FinishReason.CONTEXT_WINDOW,
    "tool_use": FinishReason.TOOL_USE,
    "refusal": FinishReason.CONTENT_FILTER,
    "pause_turn": FinishReason.PAUSE_TURN,
}

STOP_FROM_IR: dict[FinishReason, str] = {
    FinishReason.END_TURN: "end_turn",
    FinishReason.STOP_SEQUENCE: "stop_sequence",
    FinishReason.MAX_TOKENS: "max_tokens",
    FinishReason.CONTEXT_WINDOW: "model_context_window_exceeded",
    FinishReason.TOOL_USE: "tool_use",
    FinishReason.CONTENT_FILTER: "refusal",
    FinishReason.PAUSE_TURN: "pause_turn",
    FinishReason.TOOL_ERROR: "end_turn",
    FinishReason.OTHER: "end_turn",
}

IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
"""What Anthropic accepts as ``image`` blocks."""

ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def default_max_tokens(model: str) -> int:
    best = ""
    for prefix in DEFAULT_MAX_TOKENS:
        if model.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return DEFAULT_MAX_TOKENS[best] if best else FALLBACK_MAX_TOKENS


def safe_tool_id(value: str) -> str:
    """Anthropic ids must match ``^[a-zA-Z0-9_-]+$``; other vendors' ids may not."""
    if value and all(c in ID_CHARS for c in value):
        return value
    return "".join(c if c in ID_CHARS else "_" for c in value) or "toolu_omr"


# --- usage --------------------------------------------------------------------------------------------------


def anthropic_usage_to_ir(usage: JSONObject) -> Usage:
    cache_read = int_or_zero(usage, "cache_read_input_tokens")
    cache_write = int_or_zero(usage, "cache_creation_input_tokens")
    details = obj_or_none(usage.get("output_tokens_details"))
    return Usage(
        input_tokens=int_or_zero(usage, "input_tokens") + cache_read + cache_write,
        output_tokens=int_or_zero(usage, "output_tokens"),
        cached_input_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=int_or_zero(details, "thinking_tokens"),
    )


def ir_usage_to_anthropic(usage: Usage) -> JSONObject:
    uncached = max(usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens, 0)
    return {
        "input_tokens": uncached,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_input_tokens,
        "output_tokens": usage.output_tokens,
    }


# --- request → IR -------------------------------------------------------------------------------------------


def _source(block: JSONObject, kind: MediaKind, path: str) -> Part:
    source = as_obj(block.get("source"), join(path, "source"))
    spath = join(path, "source")
    stype = opt_str(source, "type", spath)
    if stype == "base64":
        media_type = req_str(source, "media_type", spath)
        return MediaPart(kind, media_type, data=req_str(source, "data", spath))
    if stype == "url":
        return MediaPart(kind, None, url=req_str(source, "url", spath))
    if stype == "text" and kind == "document":
        return TextPart(req_str(source, "data", spath))
    return OpaquePart("anthropic", join(spath, "type"), block)


def _block(block: JSONObject, path: str) -> Part | None:
    kind = opt_str(block, "type", path)
    if kind == "text":
        return TextPart(req_str(block, "text", path))
    if kind == "image":
        return _source(block, "image", path)
    if kind == "document":
        citations = obj_or_none(block.get("citations"))
        if citations and citations.get("enabled"):
            return OpaquePart("anthropic", join(path, "citations"), block)
        return _source(block, "document", path)
    if kind == "thinking":
        signature, origin = untag_signature(opt_str(block, "signature", path) or "", "anthropic")
        return ThinkingPart(req_str(block, "thinking", path), signature or None, origin)
    if kind == "redacted_thinking":
        return ThinkingPart(req_str(block, "data", path), None, "anthropic", redacted=True)
    if kind == "tool_use":
        return ToolCallPart(
            id=req_str(block, "id", path),
            name=req_str(block, "name", path),
            arguments=dumps_str(block.get("input") or {}),
        )
    if kind == "tool_result":
        content = block.get("content")
        inner: list[TextPart | MediaPart] = []
        if isinstance(content, str):
            inner.append(TextPart(content))
        elif content is not None:
            for i, item in enumerate(as_list(content, join(path, "content"))):
                part = _block(as_obj(item, join(join(path, "content"), i)), join(join(path, "content"), i))
                if not isinstance(part, TextPart | MediaPart):
                    raise untranslatable(join(path, "content"), "a tool result block other than text or media")
                inner.append(part)
        return ToolResultPart(
            call_id=req_str(block, "tool_use_id", path),
            name=None,
            content=inner,
            is_error=bool(opt_bool(block, "is_error", path)),
        )
    return OpaquePart("anthropic", path, block)


def _messages(body: JSONObject, request: IRRequest) -> None:
    for i, item in enumerate(as_list(body.get("messages"), "messages")):
        path = join("messages", i)
        msg = as_obj(item, path)
        role_name = opt_str(msg, "role", path) or ""
        if role_name == "system":
            # A mid-conversation system message (Claude Code sends them): it joins the system prompt, as an
            # OpenAI client's system messages do wherever they stand.
            request.system.extend(_system_texts(msg.get("content"), join(path, "content")))
            continue
        role = ROLES.get(role_name)
        if role is None:
            raise InvalidRequest(f"'{join(path, 'role')}' must be user or assistant", join(path, "role"))
        content = msg.get("content")
        parts: list[Part] = []
        if isinstance(content, str):
            parts.append(TextPart(content))
        else:
            for j, raw in enumerate(as_list(content, join(path, "content"))):
                bpath = join(join(path, "content"), j)
                part = _block(as_obj(raw, bpath), bpath)
                if part is not None:
                    parts.append(part)
        request.messages.append(Message(role, parts))
    resolve_tool_names(request.messages)


def _system_texts(value: object, path: str) -> list[str]:
    """A system prompt: a string or a list of text blocks."""
    if isinstance(value, str):
        return [value]
    if value is None:
        return []
    return [req_str(as_obj(raw, join(path, i)), "text", join(path, i)) for i, raw in enumerate(as_list(value, path))]


def _system(body: JSONObject, request: IRRequest) -> None:
    request.system.extend(_system_texts(body.get("system"), "system"))


def _no_op_context_management(value: object) -> bool:
    """Context editing that changes nothing another vendor would see: clearing thinking while keeping all of
    it (Claude Code's default). Other vendors never receive earlier turns' thinking from here anyway."""
    edits = value.get("edits") if isinstance(value, dict) else None
    return (
        isinstance(value, dict)
        and set(value) <= {"edits"}
        and isinstance(edits, list)
        and all(
            isinstance(e, dict) and str(e.get("type", "")).startswith("clear_thinking_") and e.get("keep") == "all"
            for e in edits
        )
    )


def _tools(body: JSONObject, request: IRRequest) -> None:
    forced_json: JSONObject | None = None
    for i, raw in enumerate(opt_list(body, "tools")):
        path = join("tools", i)
        tool = as_obj(raw, path)
        if tool.get("type") not in (None, "custom"):
            request.extras.append(VendorExtra("anthropic", path, tool, kind="tool"))
            continue
        name = req_str(tool, "name", path)
        schema = opt_obj(tool, "input_schema", path)
        if name == JSON_TOOL:
            forced_json = schema or {"type": "object"}
            continue
        request.tools.append(ToolDef(name, opt_str(tool, "description", path), schema, opt_bool(tool, "strict")))
    choice = opt_obj(body, "tool_choice")
    if choice is not None:
        kind = opt_str(choice, "type", "tool_choice")
        if choice.get("disable_parallel_tool_use"):
            request.parallel_tool_calls = False
        if kind == "tool":
            name = req_str(choice, "name", "tool_choice")
            request.tool_choice = None if name == JSON_TOOL else ToolChoice("tool", (name,))
        elif kind == "any":
            request.tool_choice = ToolChoice("required") if request.tools and forced_json is None else None
        elif kind == "auto":
            request.tool_choice = ToolChoice("auto")
        elif kind == "none":
            request.tool_choice = ToolChoice("none")
        else:
            raise untranslatable("tool_choice.type", f"tool_choice {kind!r}")
    if forced_json is not None:
        request.response_format = ResponseFormat("json_schema", schema=forced_json, name=JSON_TOOL)


def _thinking(body: JSONObject, request: IRRequest) -> None:
    thinking = opt_obj(body, "thinking")
    config = opt_obj(body, "output_config") or {}
    effort = opt_str(config, "effort", "output_config")
    if thinking is not None:
        kind = opt_str(thinking, "type", "thinking")
        if kind == "disabled":
            request.reasoning = Reasoning(enabled=False)
        else:
            display = opt_str(thinking, "display", "thinking")
            request.reasoning = Reasoning(
                effort=effort,
                budget_tokens=opt_int(thinking, "budget_tokens", "thinking"),
                include_thoughts=display != "omitted",
            )
    elif effort is not None:
        request.reasoning = Reasoning(effort=effort)
    fmt = opt_obj(config, "format", "output_config")
    if fmt is not None:
        schema = opt_obj(fmt, "schema", "output_config.format")
        request.response_format = ResponseFormat("json_schema", schema=schema)


HANDLED_FIELDS = frozenset(
    {
        "messages", "max_tokens", "system", "stop_sequences", "temperature", "top_k", "top_p", "tools",
        "tool_choice", "thinking", "output_config",
    }
)  # fmt: skip


def anthropic_request_to_ir(body: JSONObject, *, model: str | None = None) -> IRRequest:
    request = IRRequest(model=model or opt_str(body, "model") or "", messages=[], source="anthropic")
    request.stream = bool(opt_bool(body, "stream"))
    _system(body, request)
    _messages(body, request)
    _tools(body, request)
    _thinking(body, request)
    request.max_tokens = opt_int(body, "max_tokens")
    request.temperature = opt_float(body, "temperature")
    request.top_p = opt_float(body, "top_p")
    request.top_k = opt_int(body, "top_k")
    request.stop = [as_str(s, "stop_sequences") for s in opt_list(body, "stop_sequences")]
    for key, value in body.items():
        if key in HANDLED_FIELDS or key in DROPPED_FIELDS or value is None:
            continue
        if key == "context_management" and _no_op_context_management(value):
            continue
        reason = ANTHROPIC_ONLY_FIELDS.get(key, "the gateway does not know how to translate it")
        request.extras.append(VendorExtra("anthropic", key, value, reason=reason))
    return request


# --- IR → request -------------------------------------------------------------------------------------------


def _media_block(part: MediaPart | OpaquePart, request: IRRequest) -> JSONObject:
    if isinstance(part, OpaquePart):
        return check_opaque(part, "anthropic")
    if part.kind not in ("image", "document"):
        raise unsupported(request, part.kind, "anthropic", f"Anthropic does not take {part.kind} input")
    if part.url is not None:
        if is_gemini_uri(part.url):
            raise unsupported(request, part.kind, "anthropic", f"Anthropic cannot read {part.url}")
        return {"type": part.kind, "source": {"type": "url", "url": part.url}}
    media_type = part.media_type or ""
    if part.kind == "image" and media_type not in IMAGE_TYPES:
        raise unsupported(request, "image", "anthropic", f"Anthropic does not take {media_type} images")
    if part.kind == "document" and media_type != "application/pdf":
        raise unsupported(request, "document", "anthropic", f"Anthropic does not take {media_type} documents")
    return {"type": part.kind, "source": {"type": "base64", "media_type": media_type, "data": part.data}}


def _user_blocks(message: Message, request: IRRequest) -> list[JSONObject]:
    results: list[JSONObject] = []
    blocks: list[JSONObject] = []
    for part in message.parts:
        if isinstance(part, ToolResultPart):
            content: list[JSONObject] = []
            for inner in part.content:
                if isinstance(inner, TextPart):
                    if inner.text:
                        content.append({"type": "text", "text": inner.text})
                else:
                    content.append(_media_block(inner, request))
            result: JSONObject = {"type": "tool_result", "tool_use_id": safe_tool_id(part.call_id)}
            if len(content) == 1 and content[0]["type"] == "text":
                result["content"] = content[0]["text"]
            elif content:
                result["content"] = content
            if part.is_error:
                result["is_error"] = True
            results.append(result)
        elif isinstance(part, TextPart):
            if part.text:
                blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, MediaPart | OpaquePart):
            blocks.append(_media_block(part, request))
    return results + blocks  # Anthropic wants tool results first in a user turn


def _assistant_blocks(message: Message) -> list[JSONObject]:
    blocks: list[JSONObject] = []
    for part in message.parts:
        if isinstance(part, ThinkingPart):
            if part.origin != "anthropic":
                continue
            if part.redacted:
                blocks.append({"type": "redacted_thinking", "data": part.text})
            elif part.signature:
                blocks.append({"type": "thinking", "thinking": part.text, "signature": part.signature})
        elif isinstance(part, TextPart):
            if part.text:
                blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, ToolCallPart):
            arguments = parse_arguments(part.arguments, "tool_calls.function.arguments")
            blocks.append({"type": "tool_use", "id": safe_tool_id(part.id), "name": part.name, "input": arguments})
        elif isinstance(part, OpaquePart):
            blocks.append(check_opaque(part, "anthropic"))
    return blocks


def _tool_defs(request: IRRequest) -> list[JSONObject]:
    allowed = set(request.tool_choice.names) if request.tool_choice and request.tool_choice.mode != "tool" else set()
    tools: list[JSONObject] = []
    for tool in request.tools:
        if allowed and tool.name not in allowed:
            continue  # an allow-list is the same as offering only those tools
        schema = tool.parameters if tool.parameters is not None else {"type": "object", "properties": {}}
        if "type" not in schema:
            schema = {"type": "object", **schema}
        entry: JSONObject = {"name": tool.name, "input_schema": schema}
        if tool.description is not None:
            entry["description"] = tool.description
        if tool.strict is not None:
            entry["strict"] = tool.strict
        tools.append(entry)
    return tools


TOOL_CHOICE_TYPES: dict[str, str] = {"auto": "auto", "none": "none", "required": "any", "tool": "tool"}


def _tool_choice(request: IRRequest, tools: list[JSONObject], thinking: bool) -> JSONObject | None:
    choice = request.tool_choice
    fmt = request.response_format
    result: JSONObject | None = None
    if choice is not None:
        result = {"type": TOOL_CHOICE_TYPES[choice.mode]}
        if choice.mode == "tool":
            result["name"] = choice.names[0]
    if fmt is not None and not thinking:
        schema = fmt.schema or {"type": "object"}
        if schema.get("type", "object") != "object":
            raise unsupported(request, "response_format", "anthropic", "the schema's root must be an object")
        description = fmt.description or "Give the final answer as JSON matching this schema."
        tools.append({"name": JSON_TOOL, "description": description, "input_schema": schema})
        if result is None or result["type"] == "none" or len(tools) == 1:
            result = {"type": "tool", "name": JSON_TOOL}
        elif result["type"] == "auto":
            result = {"type": "any"}
    if request.parallel_tool_calls is False and tools:
        result = result or {"type": "auto"}
        if result["type"] != "none":
            result["disable_parallel_tool_use"] = True
    return result


def _reject(request: IRRequest) -> None:
    if request.n is not None and request.n > 1:
        raise unsupported(request, "n", "anthropic", "Anthropic returns one completion per request")
    checks: dict[str, object] = {
        "presence_penalty": request.presence_penalty,
        "frequency_penalty": request.frequency_penalty,
        "logprobs": request.logprobs or None,
        "top_logprobs": request.top_logprobs,
    }
    for feature, value in checks.items():
        if value is not None:
            raise unsupported(request, feature, "anthropic", "Anthropic has no equivalent")


def ir_to_anthropic_request(request: IRRequest, *, fetched: Mapping[str, FetchedMedia] | None = None) -> JSONObject:
    """Image and PDF URLs pass by reference. Inlines fetched media into ``request`` in place."""
    _reject(request)
    inline_media(request, "anthropic", fetched)
    extras = check_extras(request, "anthropic")
    messages: list[JSONObject] = []
    for message in request.messages:
        blocks = _user_blocks(message, request) if message.role == "user" else _assistant_blocks(message)
        if blocks:
            messages.append({"role": message.role, "content": blocks})
    body: JSONObject = {"model": request.model, "messages": messages}
    max_tokens = request.max_tokens
    reasoning = request.reasoning
    thinking = reasoning is not None and reasoning.enabled
    if reasoning is not None and reasoning.enabled:
        budget = max(reasoning_budget(reasoning), MIN_THINKING_BUDGET)
        if max_tokens is None:
            max_tokens = default_max_tokens(request.model) + budget
        elif max_tokens <= budget:
            if max_tokens <= MIN_THINKING_BUDGET:
                reason = f"max tokens must exceed {MIN_THINKING_BUDGET} when reasoning is on for this model"
                raise InvalidRequest(reason, "max_tokens")
            budget = max_tokens - 1
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    body["max_tokens"] = max_tokens if max_tokens is not None else default_max_tokens(request.model)
    if request.system:
        system = request.system
        body["system"] = system[0] if len(system) == 1 else [{"type": "text", "text": s} for s in system]
    if request.stream:
        body["stream"] = True
    if request.temperature is not None:
        body["temperature"] = min(max(request.temperature, 0.0), 1.0)  # Anthropic's range is 0-1
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.top_k is not None:
        body["top_k"] = request.top_k
    if request.stop:
        body["stop_sequences"] = request.stop
    tools = _tool_defs(request)
    choice = _tool_choice(request, tools, thinking)
    tools.extend(extra_tools(extras))
    if tools:
        body["tools"] = tools
    if choice is not None:
        body["tool_choice"] = choice
    if request.response_format is not None and thinking:
        fmt = request.response_format
        if fmt.kind == "json_object" or fmt.schema is None:
            reason = "JSON mode without a schema cannot be combined with thinking on Anthropic"
            raise unsupported(request, "response_format", "anthropic", reason)
        body["output_config"] = {"format": {"type": "json_schema", "schema": fmt.schema}}
    for extra in extras:
        if extra.kind == "field":
            body[extra.field] = extra.value
    return body


# --- responses ----------------------------------------------------------------------------------------------


def anthropic_response_to_ir(body: JSONObject, *, json_tool: bool = False) -> IRResponse:
    """``json_tool``: the request asked for structured output, so a :data:`JSON_TOOL` call is the answer."""
    parts: list[Part] = []
    answered_by_tool = False
    for raw in list_or_empty(body.get("content")):
        block = obj_or_none(raw)
        if block is None:
            continue
        if json_tool and block.get("type") == "tool_use" and block.get("name") == JSON_TOOL:
            parts.append(TextPart(dumps_str(block.get("input") or {})))
            answered_by_tool = True
            continue
        part = _block(block, "content")
        if part is not None and not isinstance(part, OpaquePart):
            parts.append(part)
    stop = str_or_none(body.get("stop_reason"))
    finish = STOP_TO_IR.get(stop, FinishReason.OTHER) if stop else None
    if answered_by_tool and finish == FinishReason.TOOL_USE:
        finish = FinishReason.END_TURN
    usage = obj_or_none(body.get("usage"))
    choice = Choice(0, parts, finish, str_or_none(body.get("stop_sequence")))
    return IRResponse(
        id=str_or_none(body.get("id")) or "",
        model=str_or_none(body.get("model")) or "",
        choices=[choice],
        usage=anthropic_usage_to_ir(usage) if usage else None,
    )


def thinking_block(part: ThinkingPart) -> JSONObject:
    """A thinking part as an Anthropic client sees it; a foreign signature is tagged so it can come back."""
    if part.redacted and part.origin == "anthropic":
        return {"type": "redacted_thinking", "data": part.text}
    signature = tag_signature(part.signature, part.origin or "anthropic", "anthropic") if part.signature else ""
    return {"type": "thinking", "thinking": "" if part.redacted else part.text, "signature": signature}


def ir_to_anthropic_response(response: IRResponse) -> JSONObject:
    choice = response.choices[0] if response.choices else Choice(0, [], FinishReason.END_TURN)
    content: list[JSONObject] = []
    for part in choice.parts:
        if isinstance(part, ThinkingPart):
            content.append(thinking_block(part))
        elif isinstance(part, TextPart):
            content.append({"type": "text", "text": part.text})
        elif isinstance(part, ToolCallPart):
            arguments = parse_arguments(part.arguments, "tool_calls.function.arguments")
            content.append({"type": "tool_use", "id": safe_tool_id(part.id), "name": part.name, "input": arguments})
    if choice.refusal:
        content.append({"type": "text", "text": choice.refusal})
    finish = choice.finish or FinishReason.END_TURN
    return {
        "id": response.id,
        "type": "message",
        "role": "assistant",
        "model": response.model,
        "content": content,
        "stop_reason": STOP_FROM_IR[finish],
        "stop_sequence": choice.stop_sequence if finish == FinishReason.STOP_SEQUENCE else None,
        "usage": ir_usage_to_anthropic(response.usage or Usage()),
    }
