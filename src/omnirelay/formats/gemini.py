"""Gemini generateContent ⇄ IR: requests, responses, usage. Streams are in ``gemini_stream.py``.

Function calls may come without ids (Developer API): the gateway invents stable ones
(:func:`~omnirelay.formats.ir.synthetic_call_id`, from the response id and position) and never sends those
back to Gemini; results without ids are matched to calls by name and order. Tool schemas are sent as
``parametersJsonSchema`` and structured output as ``responseJsonSchema`` (full JSON Schema, as google-genai
allows); Gemini's own ``Schema`` dialect from clients is converted (gemini_schema). A ``thoughtSignature``
belongs to the part it sits on; foreign signatures shown to a Gemini client are wrapped in base64 (the field
is bytes) so they can be told apart when they come back.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from omnirelay.formats._json import (
    as_list,
    as_obj,
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
from omnirelay.formats.gemini_schema import gemini_schema_to_json_schema
from omnirelay.formats.images import inline_media, is_gemini_uri, kind_of
from omnirelay.formats.ir import (
    SYNTHETIC_ID_PREFIX,
    Choice,
    FetchedMedia,
    FinishReason,
    Format,
    InvalidRequest,
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
    ToolChoiceMode,
    ToolDef,
    ToolResultPart,
    VendorExtra,
    check_extras,
    check_opaque,
    extra_tools,
    reasoning_budget,
    reasoning_effort,
    synthetic_call_id,
    tag_signature,
    unsupported,
    untag_signature,
)
from omnirelay.formats.usage import Usage

FINISH_TO_IR: dict[str, FinishReason] = {
    "STOP": FinishReason.END_TURN,
    "MAX_TOKENS": FinishReason.MAX_TOKENS,
    **dict.fromkeys(
        (
            "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
            "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "MODEL_ARMOR",
        ),
        FinishReason.CONTENT_FILTER,
    ),
    **dict.fromkeys(
        (
            "MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS",
            "MISSING_THOUGHT_SIGNATURE", "MALFORMED_RESPONSE",
        ),
        FinishReason.TOOL_ERROR,
    ),
}  # fmt: skip
"""Everything else (LANGUAGE, OTHER, NO_IMAGE, IMAGE_OTHER, FINISH_REASON_UNSPECIFIED, new values) is
OTHER."""

FINISH_FROM_IR: dict[FinishReason, str] = {
    FinishReason.END_TURN: "STOP",
    FinishReason.STOP_SEQUENCE: "STOP",
    FinishReason.TOOL_USE: "STOP",
    FinishReason.PAUSE_TURN: "STOP",
    FinishReason.MAX_TOKENS: "MAX_TOKENS",
    FinishReason.CONTEXT_WINDOW: "MAX_TOKENS",
    FinishReason.CONTENT_FILTER: "SAFETY",
    FinishReason.TOOL_ERROR: "MALFORMED_FUNCTION_CALL",
    FinishReason.OTHER: "OTHER",
}

DROPPED_FIELDS: dict[str, str] = {
    "safetySettings": "Gemini's own harm thresholds; other vendors apply their fixed policies",
    "labels": "Vertex billing labels",
    "model": "read from the URL",
}
"""Gemini request fields other upstreams never need; ``generationConfig.mediaResolution`` (token cost of
media) likewise. Going *to* Gemini, a tool's ``strict`` flag is dropped (Gemini has none; its calls follow the
declared schema) and so is ``parallel_tool_calls: true`` (its default); ``false`` raises."""

DROPPED_CONFIG: frozenset[str] = frozenset({"mediaResolution"})

TOOL_MODES: dict[str, ToolChoiceMode] = {"AUTO": "auto", "VALIDATED": "auto", "ANY": "required", "NONE": "none"}

LEVEL_EFFORT: dict[str, str] = {"MINIMAL": "minimal", "LOW": "low", "MEDIUM": "medium", "HIGH": "high"}
EFFORT_LEVEL: dict[str, str] = {
    "minimal": "MINIMAL",
    "low": "LOW",
    "medium": "MEDIUM",
    "high": "HIGH",
    "xhigh": "HIGH",
    "max": "HIGH",
}
THINKING_LEVEL_PREFIXES = ("gemini-3",)
"""Models that take ``thinkingLevel``; older ones take ``thinkingBudget``."""

SKIP_SIGNATURE = "skip_thought_signature_validator"
"""Google's documented placeholder for function calls a Gemini 3 model did not produce itself (history from
another vendor); those models reject an unsigned call otherwise."""

WRAP_PREFIX = "b21yMS"
"""Start of the base64 of ``omr1.``: a wrapped foreign signature."""


# --- signatures and usage -----------------------------------------------------------------------------------


def wrap_signature(signature: str, origin: Format) -> str:
    if origin == "gemini":
        return signature
    return base64.b64encode(tag_signature(signature, origin, "gemini").encode()).decode()


def unwrap_signature(value: str) -> tuple[str, Format]:
    if value.startswith(WRAP_PREFIX):
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return value, "gemini"
        raw, origin = untag_signature(decoded, "gemini")
        if origin != "gemini":
            return raw, origin
    return value, "gemini"


def gemini_usage_to_ir(usage: JSONObject) -> Usage:
    thoughts = int_or_zero(usage, "thoughtsTokenCount")
    return Usage(
        input_tokens=int_or_zero(usage, "promptTokenCount") + int_or_zero(usage, "toolUsePromptTokenCount"),
        output_tokens=int_or_zero(usage, "candidatesTokenCount") + thoughts,
        cached_input_tokens=int_or_zero(usage, "cachedContentTokenCount"),
        reasoning_tokens=thoughts,
    )


def ir_usage_to_gemini(usage: Usage) -> JSONObject:
    out: JSONObject = {
        "promptTokenCount": usage.input_tokens,
        "candidatesTokenCount": max(usage.output_tokens - usage.reasoning_tokens, 0),
        "totalTokenCount": usage.total_tokens,
    }
    if usage.reasoning_tokens:
        out["thoughtsTokenCount"] = usage.reasoning_tokens
    if usage.cached_input_tokens:
        out["cachedContentTokenCount"] = usage.cached_input_tokens
    return out


# --- parts → IR (requests and responses share this) --------------------------------------------------------


class _CallIds:
    """Ids for calls that came without one, and results matched to them by name and order."""

    __slots__ = ("_pending", "_scope", "_turn")

    def __init__(self, scope: str) -> None:
        self._scope = scope
        self._turn = 0
        self._pending: dict[str, list[str]] = {}

    def new_turn(self) -> None:
        self._turn += 1
        self._pending = {}

    def call(self, given: str | None, name: str, position: int) -> str:
        call_id = given or synthetic_call_id(f"{self._scope}{self._turn}", position)
        self._pending.setdefault(name, []).append(call_id)
        return call_id

    def result(self, given: str | None, name: str) -> str:
        queue = self._pending.get(name)
        if given:
            if queue and given in queue:
                queue.remove(given)
            return given
        if queue:
            return queue.pop(0)
        return synthetic_call_id(f"{self._scope}{self._turn}r", 0)


def _function_response(value: JSONObject, path: str, ids: _CallIds) -> ToolResultPart:
    name = req_str(value, "name", path)
    response = opt_obj(value, "response", path) or {}
    content: list[TextPart | MediaPart] = []
    is_error = False
    if set(response) == {"output"} and isinstance(response["output"], str):
        content.append(TextPart(response["output"]))
    elif set(response) == {"error"} and isinstance(response["error"], str):
        content.append(TextPart(response["error"]))
        is_error = True
    elif response:
        content.append(TextPart(dumps_str(response)))
    for i, raw in enumerate(opt_list(value, "parts", path)):
        media = _media(as_obj(raw, join(join(path, "parts"), i)), join(join(path, "parts"), i))
        if media is not None:
            content.append(media)
    return ToolResultPart(ids.result(opt_str(value, "id", path), name), name, content, is_error)


URLSAFE_TO_STANDARD = str.maketrans("-_", "+/")


def standard_base64(data: str) -> str:
    """Gemini's ``bytes`` fields take URL-safe base64 too (google-genai sends it); the other vendors and data
    URLs want the standard alphabet with padding."""
    if "-" in data or "_" in data:
        data = data.translate(URLSAFE_TO_STANDARD)
    return data + "=" * (-len(data) % 4)


def _media(part: JSONObject, path: str) -> MediaPart | None:
    inline = opt_obj(part, "inlineData", path)
    if inline is not None:
        media_type = req_str(inline, "mimeType", join(path, "inlineData"))
        data = req_str(inline, "data", join(path, "inlineData"))
        return MediaPart(kind_of(media_type), media_type, data=standard_base64(data))
    file = opt_obj(part, "fileData", path)
    if file is not None:
        file_type = opt_str(file, "mimeType", join(path, "fileData"))
        uri = req_str(file, "fileUri", join(path, "fileData"))
        return MediaPart(kind_of(file_type), file_type, url=uri)
    return None


def _signature_part(parts: list[Part], signature: str) -> None:
    """A Gemini signature on a non-thought part belongs to that part: it becomes an empty ThinkingPart just
    before it. A foreign (Anthropic) one came from a thinking block, so it rejoins the thoughts before it."""
    raw, origin = unwrap_signature(signature)
    last = parts[-1] if parts else None
    if origin != "gemini" and isinstance(last, ThinkingPart) and last.signature is None and not last.redacted:
        last.signature, last.origin = raw, origin
    else:
        parts.append(ThinkingPart("", raw, origin))


def _parts(raw_parts: list[object], path: str, ids: _CallIds, model_turn: bool) -> list[Part]:
    parts: list[Part] = []
    calls = 0
    for i, raw in enumerate(raw_parts):
        ppath = join(path, i)
        part = as_obj(raw, ppath)
        signature = opt_str(part, "thoughtSignature", ppath)
        text = opt_str(part, "text", ppath)
        if part.get("thought") is True:
            last = parts[-1] if parts else None
            if isinstance(last, ThinkingPart) and last.signature is None and last.origin == "gemini":
                last.text += text or ""
            else:
                parts.append(ThinkingPart(text or "", None, "gemini"))
            if signature:
                thought = parts[-1]
                assert isinstance(thought, ThinkingPart)
                thought.signature, thought.origin = unwrap_signature(signature)
            continue
        if signature:
            _signature_part(parts, signature)
        call = opt_obj(part, "functionCall", ppath)
        result = opt_obj(part, "functionResponse", ppath)
        media = _media(part, ppath)
        if text is not None:
            if text or not signature:
                parts.append(TextPart(text))
        elif call is not None:
            name = req_str(call, "name", join(ppath, "functionCall"))
            call_id = ids.call(opt_str(call, "id", join(ppath, "functionCall")), name, calls)
            calls += 1
            parts.append(ToolCallPart(call_id, name, dumps_str(call.get("args") or {})))
        elif result is not None:
            parts.append(_function_response(result, join(ppath, "functionResponse"), ids))
        elif media is not None:
            parts.append(media)
        elif model_turn or set(part) - {"videoMetadata", "thoughtSignature", "partMetadata"}:
            parts.append(OpaquePart("gemini", ppath, part))
    return parts


# --- request → IR -------------------------------------------------------------------------------------------


def _tools(body: JSONObject, request: IRRequest) -> None:
    for i, raw in enumerate(opt_list(body, "tools")):
        path = join("tools", i)
        tool = as_obj(raw, path)
        for key, value in tool.items():
            if key != "functionDeclarations":
                request.extras.append(VendorExtra("gemini", join(path, key), {key: value}, kind="tool"))
                continue
            for j, decl_raw in enumerate(as_list(value, join(path, key))):
                dpath = join(join(path, key), j)
                decl = as_obj(decl_raw, dpath)
                schema = opt_obj(decl, "parametersJsonSchema", dpath)
                if schema is None:
                    given = opt_obj(decl, "parameters", dpath)
                    schema = gemini_schema_to_json_schema(given) if given is not None else None
                request.tools.append(ToolDef(req_str(decl, "name", dpath), opt_str(decl, "description", dpath), schema))
    config = opt_obj(opt_obj(body, "toolConfig") or {}, "functionCallingConfig", "toolConfig")
    if config is not None:
        path = "toolConfig.functionCallingConfig"
        mode = TOOL_MODES.get((opt_str(config, "mode", path) or "AUTO").upper(), "auto")
        names = tuple(str_or_none(n) or "" for n in opt_list(config, "allowedFunctionNames", path))
        if mode == "required" and len(names) == 1:
            request.tool_choice = ToolChoice("tool", names)
        else:
            request.tool_choice = ToolChoice(mode, names if mode != "none" else ())


def _thinking(config: JSONObject, request: IRRequest) -> None:
    thinking = opt_obj(config, "thinkingConfig", "generationConfig")
    if thinking is None:
        return
    path = "generationConfig.thinkingConfig"
    budget = opt_int(thinking, "thinkingBudget", path)
    level = opt_str(thinking, "thinkingLevel", path)
    include = opt_bool(thinking, "includeThoughts", path)
    if budget == 0:
        request.reasoning = Reasoning(enabled=False, include_thoughts=include)
        return
    effort = LEVEL_EFFORT.get(level.upper()) if level else None
    request.reasoning = Reasoning(
        effort=effort, budget_tokens=budget if budget and budget > 0 else None, include_thoughts=include
    )


CONFIG_FIELDS = frozenset(
    {
        "temperature", "topP", "topK", "candidateCount", "maxOutputTokens", "stopSequences",
        "presencePenalty", "frequencyPenalty", "seed", "responseMimeType", "responseSchema",
        "responseJsonSchema", "_responseJsonSchema", "responseLogprobs", "logprobs", "thinkingConfig",
        "responseModalities",
    }
)  # fmt: skip


def _generation_config(body: JSONObject, request: IRRequest) -> None:
    config = opt_obj(body, "generationConfig")
    if config is None:
        return
    p = "generationConfig"
    request.temperature = opt_float(config, "temperature", p)
    request.top_p = opt_float(config, "topP", p)
    request.top_k = opt_int(config, "topK", p)
    request.n = opt_int(config, "candidateCount", p)
    request.max_tokens = opt_int(config, "maxOutputTokens", p)
    request.stop = [str_or_none(s) or "" for s in opt_list(config, "stopSequences", p)]
    request.presence_penalty = opt_float(config, "presencePenalty", p)
    request.frequency_penalty = opt_float(config, "frequencyPenalty", p)
    request.seed = opt_int(config, "seed", p)
    request.logprobs = opt_bool(config, "responseLogprobs", p)
    request.top_logprobs = opt_int(config, "logprobs", p)
    _thinking(config, request)
    mime = opt_str(config, "responseMimeType", p)
    schema = opt_obj(config, "responseJsonSchema", p) or opt_obj(config, "_responseJsonSchema", p)
    if schema is None and opt_obj(config, "responseSchema", p) is not None:
        schema = gemini_schema_to_json_schema(as_obj(config["responseSchema"], p))
    if mime == "application/json":
        request.response_format = ResponseFormat("json_schema" if schema else "json_object", schema=schema)
    elif mime not in (None, "text/plain"):
        request.extras.append(VendorExtra("gemini", "generationConfig.responseMimeType", mime))
    modalities = [str_or_none(m) or "" for m in opt_list(config, "responseModalities", p)]
    if any(m.upper() != "TEXT" for m in modalities):
        request.extras.append(VendorExtra("gemini", "generationConfig.responseModalities", modalities))
    for key, value in config.items():
        if key not in CONFIG_FIELDS and key not in DROPPED_CONFIG and value is not None:
            request.extras.append(VendorExtra("gemini", join(p, key), value))


FREE_FORM_KEYS: frozenset[str] = frozenset(
    {"args", "response", "parameters", "parametersJsonSchema", "responseSchema", "responseJsonSchema", "labels"}
)
"""Values that are the client's own data (call arguments, results, schemas, labels): their keys are kept as
they are. Gemini ``Schema`` objects take snake_case on their own way in (gemini_schema)."""


def _camel(key: str) -> str:
    if "_" not in key or key.startswith("_"):
        return key
    head, *rest = key.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def camel_request_keys(value: object) -> object:
    """The request with proto field names in camelCase. Google's JSON parser takes ``mime_type`` as well as
    ``mimeType``, and google-genai sends some snake_case (``inlineData.mime_type``); the readers here speak
    camelCase only. Returns ``value`` itself when nothing needed renaming."""
    if isinstance(value, list):
        items = [camel_request_keys(item) for item in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    if not isinstance(value, dict):
        return value
    out: JSONObject = {}
    changed = False
    for key, item in value.items():
        name = _camel(key)
        new = item if name in FREE_FORM_KEYS else camel_request_keys(item)
        changed = changed or name != key or new is not item
        out[name] = new
    return out if changed else value


def gemini_request_to_ir(body: JSONObject, *, model: str, stream: bool = False) -> IRRequest:
    """Gemini carries the model and the streaming choice in the URL; the caller passes them. Field names may
    be camelCase or snake_case, as the Gemini API allows."""
    normalized = camel_request_keys(body)
    assert isinstance(normalized, dict)
    body = normalized
    request = IRRequest(model=model, messages=[], source="gemini", stream=stream)
    system = opt_obj(body, "systemInstruction")
    if system is not None:
        for i, raw in enumerate(opt_list(system, "parts", "systemInstruction")):
            part = as_obj(raw, f"systemInstruction.parts[{i}]")
            request.system.append(opt_str(part, "text", f"systemInstruction.parts[{i}]") or "")
    ids = _CallIds("h")
    for i, raw in enumerate(as_list(body.get("contents"), "contents")):
        path = join("contents", i)
        content = as_obj(raw, path)
        model_turn = opt_str(content, "role", path) == "model"
        if model_turn:
            ids.new_turn()
        parts = _parts(opt_list(content, "parts", path), join(path, "parts"), ids, model_turn)
        request.messages.append(Message("assistant" if model_turn else "user", parts))
    _tools(body, request)
    _generation_config(body, request)
    for key in ("cachedContent", "toolConfig"):
        value = body.get(key)
        if key == "toolConfig" and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k != "functionCallingConfig"} or None
        if value is not None:
            request.extras.append(VendorExtra("gemini", key, value))
    handled = {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "cachedContent"}
    for key, value in body.items():
        if key not in handled and key not in DROPPED_FIELDS and value is not None:
            request.extras.append(VendorExtra("gemini", key, value, reason="the gateway cannot translate it"))
    return request


# --- IR → request -------------------------------------------------------------------------------------------


def _media_part(part: MediaPart) -> JSONObject:
    if part.url is not None:
        file: JSONObject = {"fileUri": part.url}
        if part.media_type:
            file["mimeType"] = part.media_type
        return {"fileData": file}
    return {"inlineData": {"mimeType": part.media_type or "application/octet-stream", "data": part.data}}


def _result_part(part: ToolResultPart) -> JSONObject:
    if part.name is None:
        param = f"tool result {part.call_id}"
        raise InvalidRequest(f"{param} answers no earlier tool call, and Gemini needs its name", param)
    text = "".join(p.text for p in part.content if isinstance(p, TextPart))
    result: JSONObject = {"name": part.name, "response": {"error" if part.is_error else "output": text}}
    if not part.call_id.startswith(SYNTHETIC_ID_PREFIX):
        result["id"] = part.call_id
    media = [_media_part(p) for p in part.content if isinstance(p, MediaPart)]
    if media:
        result["parts"] = media
    return {"functionResponse": result}


def _content_parts(message: Message, request: IRRequest) -> list[JSONObject]:
    parts: list[JSONObject] = []
    signature: str | None = None
    first_call = True
    for part in message.parts:
        out: JSONObject | None = None
        if isinstance(part, ThinkingPart):
            if part.origin == "gemini" and part.signature:
                if part.text:
                    parts.append({"text": part.text, "thought": True, "thoughtSignature": part.signature})
                else:
                    signature = part.signature
            elif part.origin == "gemini" and part.text:
                parts.append({"text": part.text, "thought": True})
            continue  # other vendors' reasoning: Gemini cannot verify it
        if isinstance(part, TextPart):
            out = {"text": part.text}
        elif isinstance(part, MediaPart):
            if part.url is not None and not is_gemini_uri(part.url):
                raise unsupported(request, part.kind, "gemini", f"Gemini cannot read {part.url}")
            out = _media_part(part)
        elif isinstance(part, ToolCallPart):
            call: JSONObject = {"name": part.name, "args": parse_arguments(part.arguments, "arguments")}
            if not part.id.startswith(SYNTHETIC_ID_PREFIX):
                call["id"] = part.id
            out = {"functionCall": call}
            if signature is None and first_call and request.model.startswith(THINKING_LEVEL_PREFIXES):
                signature = SKIP_SIGNATURE
            first_call = False
        elif isinstance(part, ToolResultPart):
            out = _result_part(part)
        elif isinstance(part, OpaquePart):
            out = check_opaque(part, "gemini")
        if out is not None:
            if signature is not None:
                out["thoughtSignature"] = signature
                signature = None
            parts.append(out)
    return parts


def _thinking_config(request: IRRequest) -> JSONObject | None:
    reasoning = request.reasoning
    if reasoning is None:
        return None
    levels = request.model.startswith(THINKING_LEVEL_PREFIXES)
    config: JSONObject = {}
    if not reasoning.enabled:
        config["thinkingLevel" if levels else "thinkingBudget"] = "MINIMAL" if levels else 0
    elif levels:
        effort = reasoning_effort(reasoning)
        if effort is not None:
            config["thinkingLevel"] = EFFORT_LEVEL.get(effort, "HIGH")
    elif reasoning.effort is None and reasoning.budget_tokens is None:
        config["thinkingBudget"] = -1
    else:
        config["thinkingBudget"] = reasoning_budget(reasoning)
    if reasoning.include_thoughts is not None:
        config["includeThoughts"] = reasoning.include_thoughts
    return config


def _tool_config(request: IRRequest) -> tuple[list[JSONObject], JSONObject | None]:
    choice = request.tool_choice
    allowed = set(choice.names) if choice and choice.mode == "auto" else set()
    declarations: list[JSONObject] = []
    for tool in request.tools:
        if allowed and tool.name not in allowed:
            continue  # an allow-list under AUTO: offer only those
        decl: JSONObject = {"name": tool.name}
        if tool.description is not None:
            decl["description"] = tool.description
        if tool.parameters is not None:
            decl["parametersJsonSchema"] = tool.parameters
        declarations.append(decl)
    config: JSONObject | None = None
    if choice is not None:
        mode = {"auto": "AUTO", "none": "NONE", "required": "ANY", "tool": "ANY"}[choice.mode]
        config = {"mode": mode}
        if mode == "ANY" and choice.names:
            config["allowedFunctionNames"] = list(choice.names)
    return ([{"functionDeclarations": declarations}] if declarations else []), config


def _reject_logprobs(request: IRRequest, target: Format) -> None:
    """Log-probabilities are requested fine elsewhere, but no response translator carries them back."""
    if request.source != target:
        if request.logprobs:
            raise unsupported(request, "logprobs", target, "log-probabilities are not translated back")
        if request.top_logprobs is not None:
            raise unsupported(request, "top_logprobs", target, "log-probabilities are not translated back")


def ir_to_gemini_request(request: IRRequest, *, fetched: Mapping[str, FetchedMedia] | None = None) -> JSONObject:
    """The body only: model and streaming go in the URL (``:streamGenerateContent?alt=sse``).
    Media given by a plain URL must be fetched (NeedsFetch, then ``fetched=``); inlined into ``request`` in
    place."""
    if request.parallel_tool_calls is False and request.tools:
        raise unsupported(request, "parallel_tool_calls", "gemini", "Gemini cannot be told to call one at a time")
    _reject_logprobs(request, "gemini")
    inline_media(request, "gemini", fetched)
    extras = check_extras(request, "gemini")
    contents: list[JSONObject] = []
    for message in request.messages:
        parts = _content_parts(message, request)
        if parts:
            contents.append({"role": "model" if message.role == "assistant" else "user", "parts": parts})
    body: JSONObject = {"contents": contents}
    if request.system:
        body["systemInstruction"] = {"parts": [{"text": s} for s in request.system]}
    tools, tool_config = _tool_config(request)
    tools.extend(extra_tools(extras))
    if tools:
        body["tools"] = tools
    if tool_config is not None:
        body["toolConfig"] = {"functionCallingConfig": tool_config}
    config: JSONObject = {}
    optional: dict[str, object] = {
        "temperature": request.temperature,
        "topP": request.top_p,
        "topK": request.top_k,
        "candidateCount": request.n,
        "maxOutputTokens": request.max_tokens,
        "stopSequences": request.stop or None,
        "presencePenalty": request.presence_penalty,
        "frequencyPenalty": request.frequency_penalty,
        "seed": request.seed,
        "responseLogprobs": request.logprobs,
        "logprobs": request.top_logprobs,
        "thinkingConfig": _thinking_config(request),
    }
    config.update((k, v) for k, v in optional.items() if v is not None)
    if request.response_format is not None:
        config["responseMimeType"] = "application/json"
        if request.response_format.schema is not None:
            config["responseJsonSchema"] = request.response_format.schema
    for extra in extras:
        if extra.kind == "tool":
            continue
        if extra.field.startswith("generationConfig."):
            config[extra.field.split(".", 1)[1]] = extra.value
        elif extra.field == "modalities" and isinstance(extra.value, list):  # an OpenAI client asking for images
            config["responseModalities"] = [str(m).upper() for m in extra.value]
        elif extra.field == "toolConfig" and isinstance(extra.value, dict):
            body["toolConfig"] = {**extra.value, **as_obj(body.get("toolConfig") or {}, "toolConfig")}
        else:
            body[extra.field] = extra.value
    if config:
        body["generationConfig"] = config
    return body


# --- responses ----------------------------------------------------------------------------------------------


def gemini_response_to_ir(body: JSONObject) -> IRResponse:
    response_id = str_or_none(body.get("responseId")) or ""
    choices: list[Choice] = []
    for i, raw in enumerate(list_or_empty(body.get("candidates"))):
        candidate = obj_or_none(raw) or {}
        index = candidate.get("index")
        idx = index if isinstance(index, int) else i
        content = obj_or_none(candidate.get("content")) or {}
        ids = _CallIds(response_id if idx == 0 else f"{response_id}_c{idx}")
        parts = _parts(list_or_empty(content.get("parts")), "content.parts", ids, model_turn=False)
        parts = [p for p in parts if not isinstance(p, OpaquePart)]
        finish = str_or_none(candidate.get("finishReason"))
        reason = FINISH_TO_IR.get(finish, FinishReason.OTHER) if finish else None
        if reason == FinishReason.END_TURN and any(isinstance(p, ToolCallPart) for p in parts):
            reason = FinishReason.TOOL_USE
        choices.append(Choice(idx, parts, reason))
    feedback = obj_or_none(body.get("promptFeedback"))
    if not choices and feedback is not None and feedback.get("blockReason"):
        choices.append(Choice(0, [], FinishReason.CONTENT_FILTER))
    usage = obj_or_none(body.get("usageMetadata"))
    return IRResponse(
        id=response_id,
        model=str_or_none(body.get("modelVersion")) or "",
        choices=choices,
        usage=gemini_usage_to_ir(usage) if usage else None,
    )


def loose_arguments(arguments: str) -> JSONObject:
    """Upstream tool arguments as an object, never failing (a model may emit broken JSON)."""
    try:
        return parse_arguments(arguments, "arguments")
    except InvalidRequest:
        return {"arguments": arguments}


def output_parts(parts: list[Part]) -> list[JSONObject]:
    """IR parts as a Gemini client sees them in a response."""
    out: list[JSONObject] = []
    signature: str | None = None
    for part in parts:
        if isinstance(part, ThinkingPart):
            if part.redacted:
                continue
            wrapped = wrap_signature(part.signature, part.origin or "gemini") if part.signature else None
            if part.text:
                thought: JSONObject = {"text": part.text, "thought": True}
                if wrapped:
                    thought["thoughtSignature"] = wrapped
                out.append(thought)
            else:
                signature = wrapped
            continue
        item: JSONObject
        if isinstance(part, TextPart):
            item = {"text": part.text}
        elif isinstance(part, ToolCallPart):
            call: JSONObject = {"name": part.name, "args": loose_arguments(part.arguments)}
            if not part.id.startswith(SYNTHETIC_ID_PREFIX):
                call["id"] = part.id
            item = {"functionCall": call}
        else:
            continue
        if signature is not None:
            item["thoughtSignature"] = signature
            signature = None
        out.append(item)
    if signature is not None:
        out.append({"text": "", "thoughtSignature": signature})
    return out


def ir_to_gemini_response(response: IRResponse) -> JSONObject:
    candidates: list[JSONObject] = []
    for choice in response.choices:
        parts = output_parts(choice.parts)
        if choice.refusal:
            parts.append({"text": choice.refusal})
        candidate: JSONObject = {"content": {"parts": parts, "role": "model"}, "index": choice.index}
        candidate["finishReason"] = FINISH_FROM_IR[choice.finish or FinishReason.END_TURN]
        candidates.append(candidate)
    body: JSONObject = {"candidates": candidates}
    if response.usage is not None:
        body["usageMetadata"] = ir_usage_to_gemini(response.usage)
    body["modelVersion"] = response.model
    body["responseId"] = response.id
    return body
