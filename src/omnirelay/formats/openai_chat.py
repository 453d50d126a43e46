"""OpenAI Chat Completions ⇄ IR: requests, responses, usage. Streams are in ``openai_stream.py``.

Reasoning travels DeepSeek-style as ``reasoning_content`` (``reasoning`` is read too). A Gemini thought
signature on a tool call travels as ``tool_calls[].extra_content.google.thought_signature``, the convention of
Gemini's own OpenAI-compatible endpoint. Anthropic thinking signatures have no place in this format and are
not shown.
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
    req_str,
    str_or_none,
)
from omnirelay.formats.images import (
    inline_media,
    is_gemini_uri,
    is_http,
    kind_of,
    parse_data_url,
    to_data_url,
)
from omnirelay.formats.ir import (
    TOOL_CHOICE_MODES,
    Choice,
    FetchedMedia,
    FinishReason,
    IRRequest,
    IRResponse,
    JSONObject,
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
    reasoning_effort,
    resolve_tool_names,
    unsupported,
    untag_signature,
    untranslatable,
)
from omnirelay.formats.usage import Usage

DROPPED_FIELDS: dict[str, str] = {
    "user": "end-user id for OpenAI's abuse monitoring; no effect on the output",
    "safety_identifier": "same as user",
    "store": "asks OpenAI to store the completion; nothing to store elsewhere",
    "metadata": "tags for OpenAI's stored completions",
    "stream_options": "include_usage is honoured by the gateway's own encoder",
    "service_tier": "OpenAI's latency/price tier; the gateway prices by its own table",
    "prompt_cache_key": "cache routing hint; changes cost, not output",
    "prompt_cache_retention": "cache lifetime; changes cost, not output",
    "prompt_cache_options": "cache breakpoints; changes cost, not output",
    "prediction": "speculative-decoding hint; changes latency, not output",
    "model": "read separately",
    "stream": "read separately",
}
"""OpenAI request fields a non-OpenAI upstream never needs (inside messages too: a participant ``name``, an
image's ``detail`` and ``prompt_cache_breakpoint``): they change cost, latency or OpenAI-side
bookkeeping, never the generated content. ``seed`` is carried to Gemini and dropped for Anthropic (see
anthropic_messages)."""

OPENAI_ONLY_FIELDS: dict[str, str] = {
    "logit_bias": "token ids are tokenizer-specific",
    "audio": "audio output",
    "web_search_options": "OpenAI's built-in web search",
    "verbosity": "no equivalent length control",
    "moderation": "OpenAI's moderation policy",
    "functions": "deprecated; use tools",
    "function_call": "deprecated; use tool_choice",
}

FINISH_TO_IR: dict[str, FinishReason] = {
    "stop": FinishReason.END_TURN,
    "length": FinishReason.MAX_TOKENS,
    "tool_calls": FinishReason.TOOL_USE,
    "function_call": FinishReason.TOOL_USE,
    "content_filter": FinishReason.CONTENT_FILTER,
}

FINISH_FROM_IR: dict[FinishReason, str] = {
    FinishReason.END_TURN: "stop",
    FinishReason.STOP_SEQUENCE: "stop",
    FinishReason.MAX_TOKENS: "length",
    FinishReason.CONTEXT_WINDOW: "length",
    FinishReason.TOOL_USE: "tool_calls",
    FinishReason.CONTENT_FILTER: "content_filter",
    FinishReason.PAUSE_TURN: "stop",
    FinishReason.TOOL_ERROR: "stop",
    FinishReason.OTHER: "stop",
}

AUDIO_FORMATS: dict[str, str] = {"wav": "audio/wav", "mp3": "audio/mp3"}
AUDIO_TYPES: dict[str, str] = {
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/mp3": "mp3",
    "audio/mpeg": "mp3",
}

MAX_COMPLETION_TOKENS_PREFIXES = ("o1", "o3", "o4", "gpt-5")
"""Models that refuse ``max_tokens`` and want ``max_completion_tokens``; others get ``max_tokens``, which
every OpenAI-compatible vendor understands."""


# --- usage


_NO_DETAILS: JSONObject = {}
"""Read in place of an absent details object (never written)."""


def openai_usage_to_ir(usage: JSONObject) -> Usage:
    """Canonical usage of an OpenAI ``usage`` object; a count that is not an int (a string, a bool, a float) is 0.

    Every answer's usage is read here, so the usual shape (int counts; details objects or none) is read with one
    lookup and one type test a count; any other shape takes :func:`_lenient_openai_usage`, which reads every shape
    (a property test holds the two equal).
    """
    get = usage.get
    prompt = get("prompt_tokens_details") or _NO_DETAILS
    completion = get("completion_tokens_details") or _NO_DETAILS
    if type(prompt) is dict and type(completion) is dict:
        inp = get("prompt_tokens", 0)
        out = get("completion_tokens", 0)
        cached = prompt.get("cached_tokens", 0)
        write = prompt.get("cache_write_tokens", 0)
        audio_in = prompt.get("audio_tokens", 0)
        reasoning = completion.get("reasoning_tokens", 0)
        audio_out = completion.get("audio_tokens", 0)
        # Exactly int, as int_or_zero keeps them (a bool is an int subclass and counts 0).
        if (
            type(inp) is int
            and type(out) is int
            and type(cached) is int
            and type(write) is int
            and type(audio_in) is int
            and type(reasoning) is int
            and type(audio_out) is int
        ):
            return Usage(inp, out, cached, write, reasoning, audio_in, 0, audio_out)
    return _lenient_openai_usage(usage)


def _lenient_openai_usage(usage: JSONObject) -> Usage:
    prompt_details = obj_or_none(usage.get("prompt_tokens_details"))
    completion_details = obj_or_none(usage.get("completion_tokens_details"))
    return Usage(
        input_tokens=int_or_zero(usage, "prompt_tokens"),
        output_tokens=int_or_zero(usage, "completion_tokens"),
        cached_input_tokens=int_or_zero(prompt_details, "cached_tokens"),
        cache_write_tokens=int_or_zero(prompt_details, "cache_write_tokens"),
        reasoning_tokens=int_or_zero(completion_details, "reasoning_tokens"),
        audio_input_tokens=int_or_zero(prompt_details, "audio_tokens"),
        audio_output_tokens=int_or_zero(completion_details, "audio_tokens"),
    )


def ir_usage_to_openai(usage: Usage) -> JSONObject:
    prompt_details: JSONObject = {"cached_tokens": usage.cached_input_tokens}
    if usage.cache_write_tokens:
        prompt_details["cache_write_tokens"] = usage.cache_write_tokens
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


# --- request → IR


def _text_of(content: object, path: str) -> str:
    """System/developer/tool content: a string or an array of text parts."""
    if isinstance(content, str):
        return content
    texts: list[str] = []
    for i, item in enumerate(as_list(content, path)):
        part = as_obj(item, join(path, i))
        texts.append(req_str(part, "text", join(path, i)))
    return "".join(texts)


def _user_part(part: JSONObject, path: str) -> Part:
    kind = opt_str(part, "type", path)
    if kind == "text":
        return TextPart(req_str(part, "text", path))
    if kind == "image_url":
        image = as_obj(part.get("image_url"), join(path, "image_url"))
        url = req_str(image, "url", join(path, "image_url"))
        parsed = parse_data_url(url)
        if parsed is not None:
            return MediaPart("image", parsed[0], data=parsed[1])
        return MediaPart("image", None, url=url)
    if kind == "input_audio":
        audio = as_obj(part.get("input_audio"), join(path, "input_audio"))
        fmt = req_str(audio, "format", join(path, "input_audio"))
        data = req_str(audio, "data", join(path, "input_audio"))
        return MediaPart("audio", AUDIO_FORMATS.get(fmt, f"audio/{fmt}"), data=data)
    if kind == "file":
        file = as_obj(part.get("file"), join(path, "file"))
        filename = opt_str(file, "filename", path)
        file_id = opt_str(file, "file_id", path)
        if file_id is not None:
            return OpaquePart("openai", join(path, "file.file_id"), part)
        data = req_str(file, "file_data", join(path, "file"))
        parsed = parse_data_url(data)
        media_type, payload = parsed if parsed is not None else ("application/pdf", data)
        return MediaPart(kind_of(media_type), media_type, data=payload, filename=filename)
    raise untranslatable(join(path, "type"), f"content part type {kind!r}")


def _user_parts(content: object, path: str) -> list[Part]:
    if isinstance(content, str):
        return [TextPart(content)]
    return [_user_part(as_obj(item, join(path, i)), join(path, i)) for i, item in enumerate(as_list(content, path))]


def _thinking_block(block: JSONObject) -> ThinkingPart:
    if block.get("type") == "redacted_thinking":
        return ThinkingPart(str_or_none(block.get("data")) or "", None, "anthropic", redacted=True)
    signature, origin = untag_signature(str_or_none(block.get("signature")) or "", "anthropic")
    return ThinkingPart(str_or_none(block.get("thinking")) or "", signature or None, origin)


def thinking_block_entry(index: int, part: ThinkingPart) -> JSONObject:
    """An Anthropic thinking block shown to an OpenAI client (LiteLLM's ``thinking_blocks``), with the
    ``index`` the SDK's stream accumulator needs."""
    if part.redacted:
        return {"index": index, "type": "redacted_thinking", "data": part.text}
    return {"index": index, "type": "thinking", "thinking": part.text, "signature": part.signature or ""}


def _assistant_parts(msg: JSONObject, path: str) -> list[Part]:
    parts: list[Part] = []
    blocks = [b for b in list_or_empty(msg.get("thinking_blocks")) if isinstance(b, dict)]
    reasoning = opt_str(msg, "reasoning_content", path) or opt_str(msg, "reasoning", path)
    if blocks:
        parts.extend(_thinking_block(block) for block in blocks)
    elif reasoning:
        parts.append(ThinkingPart(reasoning))
    content = msg.get("content")
    if isinstance(content, str):
        if content:
            parts.append(TextPart(content))
    elif content is not None:
        for i, item in enumerate(as_list(content, join(path, "content"))):
            block = as_obj(item, join(join(path, "content"), i))
            text = opt_str(block, "text") or opt_str(block, "refusal")
            if text:
                parts.append(TextPart(text))
    refusal = opt_str(msg, "refusal", path)
    if refusal:
        parts.append(TextPart(refusal))
    for i, item in enumerate(opt_list(msg, "tool_calls", path)):
        call_path = join(join(path, "tool_calls"), i)
        call = as_obj(item, call_path)
        if call.get("type", "function") != "function":
            raise untranslatable(join(call_path, "type"), "a non-function tool call")
        function = as_obj(call.get("function"), join(call_path, "function"))
        google = obj_or_none((obj_or_none(call.get("extra_content")) or {}).get("google"))
        signature = str_or_none(google.get("thought_signature")) if google else None
        if signature:
            parts.append(ThinkingPart("", signature, "gemini"))
        arguments = function.get("arguments")
        parts.append(
            ToolCallPart(
                id=req_str(call, "id", call_path),
                name=req_str(function, "name", join(call_path, "function")),
                arguments=arguments if isinstance(arguments, str) else dumps_str(arguments or {}),
            )
        )
    if msg.get("audio") is not None:
        raise untranslatable(join(path, "audio"), "a reference to an earlier audio reply")
    return parts


def _messages(body: JSONObject, request: IRRequest) -> None:
    for i, item in enumerate(as_list(body.get("messages"), "messages")):
        path = join("messages", i)
        msg = as_obj(item, path)
        role = opt_str(msg, "role", path)
        if role in ("system", "developer"):
            request.system.append(_text_of(msg.get("content"), join(path, "content")))
        elif role == "user":
            request.messages.append(Message("user", _user_parts(msg.get("content"), join(path, "content"))))
        elif role == "assistant":
            request.messages.append(Message("assistant", _assistant_parts(msg, path)))
        elif role == "tool":
            result = ToolResultPart(
                call_id=req_str(msg, "tool_call_id", path),
                name=None,
                content=[TextPart(_text_of(msg.get("content"), join(path, "content")))],
            )
            last = request.messages[-1] if request.messages else None
            if last is not None and last.role == "user" and all(isinstance(p, ToolResultPart) for p in last.parts):
                last.parts.append(result)
            else:
                request.messages.append(Message("user", [result]))
        else:
            raise untranslatable(join(path, "role"), f"role {role!r}")
    resolve_tool_names(request.messages)


def _tools(body: JSONObject, request: IRRequest) -> None:
    for i, item in enumerate(opt_list(body, "tools")):
        path = join("tools", i)
        tool = as_obj(item, path)
        if tool.get("type", "function") != "function":
            request.extras.append(VendorExtra("openai", path, tool, kind="tool"))
            continue
        function = as_obj(tool.get("function"), join(path, "function"))
        fpath = join(path, "function")
        request.tools.append(
            ToolDef(
                name=req_str(function, "name", fpath),
                description=opt_str(function, "description", fpath),
                parameters=opt_obj(function, "parameters", fpath),
                strict=opt_bool(function, "strict", fpath),
            )
        )
    choice = body.get("tool_choice")
    if choice is None:
        return
    if isinstance(choice, str):
        mode = TOOL_CHOICE_MODES.get(choice)
        if mode is None:
            raise untranslatable("tool_choice", f"tool_choice {choice!r}")
        request.tool_choice = ToolChoice(mode)
        return
    obj = as_obj(choice, "tool_choice")
    kind = obj.get("type")
    if kind == "function":
        function = as_obj(obj.get("function"), "tool_choice.function")
        request.tool_choice = ToolChoice("tool", (req_str(function, "name", "tool_choice.function"),))
    elif kind == "allowed_tools":
        allowed = as_obj(obj.get("allowed_tools"), "tool_choice.allowed_tools")
        names: list[str] = []
        for j, entry in enumerate(opt_list(allowed, "tools", "tool_choice.allowed_tools")):
            fn = as_obj(as_obj(entry, f"tool_choice.allowed_tools.tools[{j}]").get("function"), "function")
            names.append(req_str(fn, "name", f"tool_choice.allowed_tools.tools[{j}].function"))
        request.tool_choice = ToolChoice("required" if allowed.get("mode") == "required" else "auto", tuple(names))
    else:
        request.extras.append(VendorExtra("openai", "tool_choice", obj, kind="tool_choice"))


def _response_format(value: JSONObject) -> ResponseFormat | None:
    kind = value.get("type")
    if kind == "json_object":
        return ResponseFormat("json_object")
    if kind == "json_schema":
        spec = as_obj(value.get("json_schema"), "response_format.json_schema")
        return ResponseFormat(
            "json_schema",
            schema=opt_obj(spec, "schema", "response_format.json_schema"),
            name=opt_str(spec, "name", "response_format.json_schema"),
            strict=opt_bool(spec, "strict", "response_format.json_schema"),
            description=opt_str(spec, "description", "response_format.json_schema"),
        )
    if kind in ("text", None):
        return None
    raise untranslatable("response_format.type", f"response format {kind!r}")


HANDLED_FIELDS = frozenset(
    {
        "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "tools",
        "tool_choice", "parallel_tool_calls", "response_format", "reasoning_effort", "n", "presence_penalty",
        "frequency_penalty", "seed", "logprobs", "top_logprobs", "modalities",
    }
)  # fmt: skip


def openai_request_to_ir(body: JSONObject, *, model: str | None = None) -> IRRequest:
    request = IRRequest(model=model or opt_str(body, "model") or "", messages=[], source="openai")
    request.stream = bool(opt_bool(body, "stream"))
    stream_options = opt_obj(body, "stream_options")
    request.include_usage = bool(stream_options and stream_options.get("include_usage"))
    _messages(body, request)
    _tools(body, request)
    request.max_tokens = opt_int(body, "max_completion_tokens") or opt_int(body, "max_tokens")
    request.temperature = opt_float(body, "temperature")
    request.top_p = opt_float(body, "top_p")
    stop = body.get("stop")
    if stop is not None:
        request.stop = [stop] if isinstance(stop, str) else [as_str(s, "stop") for s in as_list(stop, "stop")]
    request.parallel_tool_calls = opt_bool(body, "parallel_tool_calls")
    response_format = opt_obj(body, "response_format")
    request.response_format = _response_format(response_format) if response_format else None
    effort = opt_str(body, "reasoning_effort")
    if effort is not None:
        request.reasoning = Reasoning(enabled=False) if effort == "none" else Reasoning(effort=effort)
    request.n = opt_int(body, "n")
    request.presence_penalty = opt_float(body, "presence_penalty")
    request.frequency_penalty = opt_float(body, "frequency_penalty")
    request.seed = opt_int(body, "seed")
    request.logprobs = opt_bool(body, "logprobs")
    request.top_logprobs = opt_int(body, "top_logprobs")
    modalities = [as_str(m, "modalities") for m in opt_list(body, "modalities")]
    if "audio" in modalities:
        request.extras.append(VendorExtra("openai", "modalities", modalities, reason="audio output"))
    elif "image" in modalities:
        # Image output is Gemini's (its image models); the Gemini encoder turns this into responseModalities.
        request.extras.append(VendorExtra("gemini", "modalities", modalities, reason="image output"))
    for key, value in body.items():
        if key in HANDLED_FIELDS or key in DROPPED_FIELDS or value is None:
            continue
        reason = OPENAI_ONLY_FIELDS.get(key, "the gateway does not know how to translate it")
        request.extras.append(VendorExtra("openai", key, value, reason=reason))
    return request


# --- IR → request


def _media_to_openai(part: MediaPart | OpaquePart, request: IRRequest) -> JSONObject:
    if isinstance(part, OpaquePart):
        return check_opaque(part, "openai")
    url = part.url
    if url is not None and (is_gemini_uri(url) or not is_http(url)):
        raise unsupported(request, part.kind, "openai", f"OpenAI cannot read {url}")
    media_type = part.media_type or "application/octet-stream"
    if part.kind == "image":
        return {"type": "image_url", "image_url": {"url": url or to_data_url(media_type, part.data or "")}}
    if part.kind == "audio" and part.data is not None and media_type in AUDIO_TYPES:
        return {"type": "input_audio", "input_audio": {"data": part.data, "format": AUDIO_TYPES[media_type]}}
    if part.kind in ("document", "file") and part.data is not None:
        filename = part.filename or "document.pdf"
        return {
            "type": "file",
            "file": {"filename": filename, "file_data": to_data_url(media_type, part.data)},
        }
    raise unsupported(request, part.kind, "openai", f"OpenAI chat does not take {media_type} input")


def _content(parts: list[TextPart | MediaPart | OpaquePart], request: IRRequest) -> str | list[JSONObject]:
    if len(parts) == 1 and isinstance(parts[0], TextPart):
        return parts[0].text
    return [
        {"type": "text", "text": p.text} if isinstance(p, TextPart) else _media_to_openai(p, request) for p in parts
    ]


def _user_to_openai(message: Message, request: IRRequest, out: list[JSONObject]) -> None:
    rest: list[TextPart | MediaPart | OpaquePart] = []
    moved_media: list[TextPart | MediaPart | OpaquePart] = []
    for part in message.parts:
        if isinstance(part, ToolResultPart):
            texts = [p.text for p in part.content if isinstance(p, TextPart)]
            media = [p for p in part.content if isinstance(p, MediaPart)]
            text = "".join(texts)
            if part.is_error and not text.startswith("Error"):
                text = f"Error: {text}"
            out.append({"role": "tool", "tool_call_id": part.call_id, "content": text})
            # OpenAI tool messages are text-only; their images follow as a user message.
            moved_media.extend(media)
        elif isinstance(part, TextPart | MediaPart | OpaquePart):
            rest.append(part)
    rest = moved_media + rest
    if rest:
        out.append({"role": "user", "content": _content(rest, request)})


def _assistant_to_openai(message: Message, *, reasoning_out: bool) -> JSONObject:
    """``reasoning_out``: show reasoning and Gemini signatures (responses). Requests leave them out: OpenAI
    refuses unknown message fields and DeepSeek refuses ``reasoning_content`` in the history."""
    out: JSONObject = {"role": "assistant"}
    texts: list[str] = []
    reasoning: list[str] = []
    blocks: list[JSONObject] = []
    calls: list[JSONObject] = []
    images: list[JSONObject] = []
    signature: str | None = None
    for part in message.parts:
        if isinstance(part, TextPart):
            texts.append(part.text)
            signature = None
        elif isinstance(part, MediaPart) and reasoning_out and part.kind == "image" and part.data is not None:
            images.append(image_output_entry(part))
        elif isinstance(part, ThinkingPart):
            if reasoning_out and not part.redacted and part.text:
                reasoning.append(part.text)
            if reasoning_out and part.origin == "anthropic" and (part.signature or part.redacted):
                blocks.append(thinking_block_entry(len(blocks), part))
            signature = part.signature if part.origin == "gemini" and reasoning_out else None
        elif isinstance(part, OpaquePart):
            check_opaque(part, "openai")
        elif isinstance(part, ToolCallPart):
            call: JSONObject = {
                "id": part.id,
                "type": "function",
                "function": {"name": part.name, "arguments": part.arguments},
            }
            if signature:
                call["extra_content"] = {"google": {"thought_signature": signature}}
            signature = None
            calls.append(call)
    out["content"] = "".join(texts) if texts else None
    if reasoning:
        out["reasoning_content"] = "".join(reasoning)
    if blocks:
        out["thinking_blocks"] = blocks
    if calls:
        out["tool_calls"] = calls
    if images:
        out["images"] = images
    return out


def image_output_entry(part: MediaPart) -> JSONObject:
    """A generated image in an OpenAI-shaped answer: ``message.images`` / ``delta.images``, as OpenRouter and
    Vercel's gateway show Gemini image models' output."""
    return {"type": "image_url", "image_url": {"url": to_data_url(part.media_type or "image/png", part.data or "")}}


def _tool_choice_to_openai(choice: ToolChoice) -> object:
    if choice.mode == "tool":
        return {"type": "function", "function": {"name": choice.names[0]}}
    if choice.names and choice.mode in ("auto", "required"):
        tools = [{"type": "function", "function": {"name": n}} for n in choice.names]
        return {"type": "allowed_tools", "allowed_tools": {"mode": choice.mode, "tools": tools}}
    return choice.mode


def ir_to_openai_request(request: IRRequest, *, fetched: Mapping[str, FetchedMedia] | None = None) -> JSONObject:
    """Image URLs pass by reference; other media given by URL must be fetched (NeedsFetch, then ``fetched=``).
    Inlines fetched media into ``request`` in place."""
    if request.source != "openai" and (request.logprobs or request.top_logprobs is not None):
        feature = "logprobs" if request.logprobs else "top_logprobs"
        raise unsupported(request, feature, "openai", "log-probabilities are not translated back")
    inline_media(request, "openai", fetched)
    extras = check_extras(request, "openai")
    if request.top_k is not None:
        raise unsupported(request, "top_k", "openai", "OpenAI has no top-k sampling")
    messages: list[JSONObject] = [{"role": "system", "content": text} for text in request.system]
    for message in request.messages:
        if message.role == "user":
            _user_to_openai(message, request, messages)
        else:
            messages.append(_assistant_to_openai(message, reasoning_out=False))
    body: JSONObject = {"model": request.model, "messages": messages}
    if request.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    if request.max_tokens is not None:
        key = "max_completion_tokens" if request.model.startswith(MAX_COMPLETION_TOKENS_PREFIXES) else "max_tokens"
        body[key] = request.max_tokens
    optional: dict[str, object] = {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "n": request.n,
        "presence_penalty": request.presence_penalty,
        "frequency_penalty": request.frequency_penalty,
        "seed": request.seed,
        "logprobs": request.logprobs,
        "top_logprobs": request.top_logprobs,
        "parallel_tool_calls": request.parallel_tool_calls if request.tools else None,
    }
    body.update((k, v) for k, v in optional.items() if v is not None)
    if request.stop:
        body["stop"] = request.stop
    tools: list[JSONObject] = []
    for tool in request.tools:
        function: JSONObject = {"name": tool.name}
        if tool.description is not None:
            function["description"] = tool.description
        if tool.parameters is not None:
            function["parameters"] = tool.parameters
        if tool.strict is not None:
            function["strict"] = tool.strict
        tools.append({"type": "function", "function": function})
    tools.extend(extra_tools(extras))
    if tools:
        body["tools"] = tools
    if request.tool_choice is not None:
        body["tool_choice"] = _tool_choice_to_openai(request.tool_choice)
    fmt = request.response_format
    if fmt is not None:
        if fmt.kind == "json_object":
            body["response_format"] = {"type": "json_object"}
        else:
            spec: JSONObject = {"name": fmt.name or "response", "schema": fmt.schema or {"type": "object"}}
            if fmt.strict is not None:
                spec["strict"] = fmt.strict
            if fmt.description is not None:
                spec["description"] = fmt.description
            body["response_format"] = {"type": "json_schema", "json_schema": spec}
    if request.reasoning is not None and request.reasoning.enabled:
        effort = reasoning_effort(request.reasoning)
        if effort is not None:
            body["reasoning_effort"] = effort
    for extra in extras:
        if extra.kind != "tool":
            body[extra.field] = extra.value
    return body


# --- responses


def openai_response_to_ir(body: JSONObject) -> IRResponse:
    choices: list[Choice] = []
    for i, item in enumerate(list_or_empty(body.get("choices"))):
        choice = obj_or_none(item) or {}
        message = obj_or_none(choice.get("message")) or {}
        parts = _assistant_parts(message, f"choices[{i}].message")
        refusal = str_or_none(message.get("refusal"))
        if refusal:
            parts = [p for p in parts if not (isinstance(p, TextPart) and p.text == refusal)]
        finish = str_or_none(choice.get("finish_reason"))
        index = choice.get("index")
        choices.append(
            Choice(
                index=index if isinstance(index, int) else i,
                parts=parts,
                finish=FINISH_TO_IR.get(finish, FinishReason.OTHER) if finish else None,
                refusal=refusal,
            )
        )
    usage = obj_or_none(body.get("usage"))
    created = body.get("created")
    return IRResponse(
        id=str_or_none(body.get("id")) or "",
        model=str_or_none(body.get("model")) or "",
        choices=choices,
        usage=openai_usage_to_ir(usage) if usage else None,
        created=created if isinstance(created, int) else None,
    )


def ir_to_openai_response(response: IRResponse, *, created: int = 0) -> JSONObject:
    choices: list[JSONObject] = []
    for choice in response.choices:
        message = _assistant_to_openai(Message("assistant", choice.parts), reasoning_out=True)
        message["refusal"] = choice.refusal
        finish = choice.finish or FinishReason.END_TURN
        choices.append(
            {
                "index": choice.index,
                "message": message,
                "logprobs": None,
                "finish_reason": FINISH_FROM_IR[finish],
            }
        )
    body: JSONObject = {
        "id": response.id,
        "object": "chat.completion",
        "created": response.created or created,
        "model": response.model,
        "choices": choices,
    }
    if response.usage is not None:
        body["usage"] = ir_usage_to_openai(response.usage)
    return body
