"""A faithful fake of the Gemini Developer API (generativelanguage.googleapis.com) on ``/v1beta`` and ``/v1``.

``models/{m}:generateContent``, ``:streamGenerateContent`` (``?alt=sse`` or a streamed JSON array),
``:countTokens``, ``:embedContent``, ``:batchEmbedContents``, ``GET models`` and ``GET models/{m}``. Wire
shapes follow ``reference/wire-examples.md`` (G1-G8): pretty-printed bodies, SSE chunks in Google's compact
style (``"key": value`` joined by a bare ``,``) framed ``data: ...\\r\\n\\r\\n``, a full response with
running ``usageMetadata`` in every chunk and ``finishReason`` on the last, errors as
``{"error":{code,message,status}}``.

What the fake model does, deterministically from the prompt text (system instruction + text parts):
- thinking (``thinkingConfig`` with ``includeThoughts``, a budget or a level): ``THINKING_TOKENS`` thought
  tokens, counted in ``thoughtsTokenCount`` and shown as ``thought: true`` parts only with
  ``includeThoughts``; the first answer part carries a ``thoughtSignature``;
- function declarations allowed by ``toolConfig``: ``knobs.tool_calls`` parallel ``functionCall`` parts (no
  ``id``, as on the Developer API), ``finishReason: STOP``; a last turn with ``functionResponse`` parts is
  answered in text quoting them;
- ``responseMimeType: application/json``: JSON valid for ``responseSchema``/``responseJsonSchema``;
- otherwise ``knobs.reply`` or ``knobs.output_tokens`` generated words, cut by ``stopSequences`` or
  ``maxOutputTokens`` (which, as on the real API, thinking also spends); ``candidateCount`` candidates.

Tokens are counted with cl100k the same way for ``countTokens`` and ``usageMetadata``; each inline or file
part costs ``MEDIA_TOKENS``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from itertools import zip_longest
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from omnirelay.simulators.common import (
    ABORT,
    STATUS_FAULTS,
    STREAM_FAULTS,
    Abort,
    BreakableStream,
    SimKnobs,
    SimulatorState,
    cl100k_tokens,
    control_routes,
    generated_words,
    pace,
    strip_directives,
)
from omnirelay.simulators.media import jpeg, png
from omnirelay.simulators.schema_values import value_for_schema

MEDIA_TOKENS = 258
"""Prompt tokens per inline or file part (Gemini charges 258 for an image up to 384 px)."""
THINKING_TOKENS = 12
IMAGE_TOKENS = 1290
"""What Gemini image models report per generated image, whatever its aspect ratio (the 1K sizes below)."""
IMAGE_SIZES: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024), "2:3": (832, 1248), "3:2": (1248, 832), "3:4": (864, 1184), "4:3": (1184, 864),
    "4:5": (896, 1152), "5:4": (1152, 896), "9:16": (768, 1344), "16:9": (1344, 768), "21:9": (1536, 672),
}  # fmt: skip
"""``imageConfig.aspectRatio`` → pixels, as gemini-2.5-flash-image draws them."""
EMBEDDING_DIMENSIONS = 768
API_VERSIONS = ("v1beta", "v1")

_GENERATE = ["generateContent", "countTokens", "createCachedContent", "batchGenerateContent"]
_THINKING_MODEL = {"temperature": 1, "topP": 0.95, "topK": 64, "maxTemperature": 2, "thinking": True}
MODELS: tuple[dict[str, Any], ...] = tuple(
    {
        "name": f"models/{model_id}",
        "version": "001",
        "displayName": display,
        "description": f"Simulated {display}",
        "inputTokenLimit": limit_in,
        "outputTokenLimit": limit_out,
        "supportedGenerationMethods": methods,
        **(_THINKING_MODEL if thinks else {}),
    }
    for model_id, display, limit_in, limit_out, methods, thinks in (
        ("gemini-2.5-pro", "Gemini 2.5 Pro", 1048576, 65536, _GENERATE, True),
        ("gemini-2.5-flash", "Gemini 2.5 Flash", 1048576, 65536, _GENERATE, True),
        ("gemini-2.5-flash-lite", "Gemini 2.5 Flash-Lite", 1048576, 65536, _GENERATE, True),
        ("gemini-2.0-flash", "Gemini 2.0 Flash", 1048576, 8192, _GENERATE, False),
        ("gemini-embedding-001", "Gemini Embedding 001", 2048, 1, ["embedContent", "countTokens"], False),
        ("text-embedding-004", "Text Embedding 004", 2048, 1, ["embedContent"], False),
    )
)

_STATUS = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    404: ("NOT_FOUND", "Requested entity was not found."),
    408: ("DEADLINE_EXCEEDED", "The request timed out."),
    413: ("INVALID_ARGUMENT", "Request payload size exceeds the limit: 20971520 bytes."),
    422: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    429: ("RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan and billing."),
    500: ("INTERNAL", "An internal error has occurred. Please retry or report in "
                      "https://developers.generativeai.google/guide/troubleshooting"),
    502: ("UNAVAILABLE", "Bad gateway."),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
}  # fmt: skip
_REQUEST_FIELDS = frozenset(
    "model contents tools toolConfig tool_config safetySettings safety_settings systemInstruction "
    "system_instruction generationConfig generation_config cachedContent cached_content labels".split()
)
_ROLES = frozenset({"user", "model", "function", "tool"})
"""Roles the API takes; "function"/"tool" for function results appear in recorded traffic (G3)."""
_QUOTA_DOCS = "https://ai.google.dev/gemini-api/docs/rate-limits"
_PIECE = re.compile(r"\s*\S+|\s+$")
_KEY_END = re.compile(rb'(?<!\\)":')
_SNAKE = re.compile(r"(?<!^)(?=[A-Z])")
_STREAM_FAULTS = STREAM_FAULTS | {"error"}


class _InvalidRequest(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


count_tokens = cl100k_tokens


def _field(obj: object, name: str) -> Any:
    """A request field by its camelCase name or its snake_case twin: the API accepts both."""
    if not isinstance(obj, dict):
        return None
    value = obj.get(name)
    return value if value is not None else obj.get(_snake(name))


@cache
def _snake(name: str) -> str:
    return _SNAKE.sub("_", name).lower()


# ----------------------------------------------------------------------------------------------- JSON styles


def _google_json(value: object) -> bytes:
    """Compact JSON the way Google's stream chunks are written: ``": "`` after keys, ``,`` with no space."""
    # In compact JSON an unescaped `":` ends a key (in strings a quote is always \"); a key ending in a
    # backslash would just keep no space, which is still the same JSON.
    return _KEY_END.sub(b'": ', orjson.dumps(value))


def _escape_angles(raw: bytes) -> bytes:
    # Google's encoder escapes < and > (G2); outside strings JSON has neither, so a byte swap is safe.
    return raw.replace(b"<", b"\\u003c").replace(b">", b"\\u003e")


def _pretty(value: object) -> bytes:
    return _escape_angles(orjson.dumps(value, option=orjson.OPT_INDENT_2))


def _json_response(value: object, status: int = 200) -> Response:
    return Response(_pretty(value), status, media_type="application/json; charset=UTF-8")


# ---------------------------------------------------------------------------------------------------- prompt


@dataclass(slots=True)
class _Prompt:
    text: str
    text_tokens: int
    media_tokens: dict[str, int]
    """Tokens per modality of inline and file parts (IMAGE, AUDIO, VIDEO, DOCUMENT)."""
    function_responses: list[str]
    """JSON of the ``functionResponse`` parts in the last content."""

    @property
    def tokens(self) -> int:
        return self.text_tokens + sum(self.media_tokens.values())

    def details(self) -> list[dict[str, Any]]:
        counts = {"TEXT": self.text_tokens, **self.media_tokens}
        return [{"modality": m, "tokenCount": n} for m, n in counts.items() if n or m == "TEXT"]


def _modality(mime: str) -> str:
    kind = mime.split("/", 1)[0].upper()
    return kind if kind in {"IMAGE", "AUDIO", "VIDEO"} else "DOCUMENT"


def _read_prompt(request: dict[str, Any]) -> _Prompt:
    texts: list[str] = []
    tokens = 0
    media: dict[str, int] = {}
    responses: list[str] = []
    system = _field(request, "systemInstruction")
    contents = [system] if isinstance(system, dict) else []
    contents += [c for c in _field(request, "contents") or [] if isinstance(c, dict)]
    for tool in _field(request, "tools") or []:
        tokens += count_tokens(json.dumps(tool))
    for content in contents:
        responses = []
        for part in content.get("parts") or []:
            if not isinstance(part, dict) or part.get("thought"):
                continue  # earlier thoughts are not sent back to the model
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
                tokens += count_tokens(part["text"])
            elif (blob := _field(part, "inlineData") or _field(part, "fileData")) is not None:
                modality = _modality(str(_field(blob, "mimeType") or ""))
                media[modality] = media.get(modality, 0) + MEDIA_TOKENS
            elif (call := _field(part, "functionCall")) is not None:
                tokens += count_tokens(json.dumps(call, ensure_ascii=False))
            elif (result := _field(part, "functionResponse")) is not None:
                text = json.dumps(result.get("response"), ensure_ascii=False)
                texts.append(text)
                responses.append(text)
                tokens += count_tokens(str(result.get("name", ""))) + count_tokens(text)
    return _Prompt("\n".join(texts), tokens, media, responses)


def _validate(body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _InvalidRequest("Invalid JSON payload received. Expected an object.")
    unknown = sorted(set(body) - _REQUEST_FIELDS)
    if unknown:
        raise _InvalidRequest(f'Invalid JSON payload received. Unknown name "{unknown[0]}": Cannot find field.')
    contents = _field(body, "contents")
    if not isinstance(contents, list) or not contents:
        raise _InvalidRequest("* GenerateContentRequest.contents: contents is not specified\n")
    for index, content in enumerate(contents):
        if not isinstance(content, dict) or content.get("role", "user") not in _ROLES:
            raise _InvalidRequest("Please use a valid role: user, model.")
        if not content.get("parts"):
            raise _InvalidRequest(
                f"* GenerateContentRequest.contents[{index}].parts: contents.parts must not be empty.\n"
            )
    return body


# ------------------------------------------------------------------------------------------------------ plan


@dataclass(frozen=True, slots=True)
class _Candidate:
    thoughts: tuple[str, ...]
    pieces: tuple[tuple[str, int], ...]
    """Answer text as (piece, tokens); one stream chunk each."""
    calls: tuple[dict[str, Any], ...]
    call_tokens: int
    finish_reason: str
    image: str | None = None
    """Base64 of a generated PNG (image models), sent after the text."""

    @property
    def output_tokens(self) -> int:
        return sum(n for _, n in self.pieces) + self.call_tokens + (IMAGE_TOKENS if self.image else 0)

    @property
    def image_part(self) -> dict[str, Any]:
        return {"inlineData": {"mimeType": "image/png", "data": self.image}}


@dataclass(frozen=True, slots=True)
class _Plan:
    """The whole reply, decided before anything is sent; the JSON and the stream are two renderings of it."""

    candidates: tuple[_Candidate, ...]
    prompt: _Prompt
    show_thoughts: bool
    signature: str | None


def _thinking(config: dict[str, Any]) -> tuple[bool, bool]:
    """(whether the model thinks, whether thoughts are shown)."""
    thinking = _field(config, "thinkingConfig") or {}
    budget = _field(thinking, "thinkingBudget")
    show = bool(_field(thinking, "includeThoughts"))
    thinks = (show or budget is not None or _field(thinking, "thinkingLevel") is not None) and budget != 0
    return thinks, show and thinks


def _image_size(body: dict[str, Any], model: str) -> tuple[int, int] | None:
    """The picture an answer carries: asked for with ``responseModalities``, or by default from image models."""
    config = _field(body, "generationConfig") or {}
    modalities = [str(m).upper() for m in _field(config, "responseModalities") or []]
    if not ("IMAGE" in modalities if modalities else "-image" in model):
        return None
    aspect = _field(_field(config, "imageConfig") or {}, "aspectRatio") or "1:1"
    if aspect not in IMAGE_SIZES:
        raise _InvalidRequest(f"Unsupported aspect ratio: {aspect}. Supported: {', '.join(IMAGE_SIZES)}.")
    return IMAGE_SIZES[aspect]


def _chosen_functions(body: dict[str, Any], knobs: SimKnobs, answering: bool) -> list[dict[str, Any]]:
    declared = [
        d
        for tool in _field(body, "tools") or []
        for d in _field(tool, "functionDeclarations") or []
        if isinstance(d, dict) and d.get("name")
    ]
    calling = _field(_field(body, "toolConfig"), "functionCallingConfig") or {}
    mode = str(calling.get("mode", "AUTO")).upper()
    allowed = _field(calling, "allowedFunctionNames")
    if allowed and mode in {"ANY", "VALIDATED"}:
        declared = [d for d in declared if d["name"] in allowed]
    if not declared or mode == "NONE" or (answering and mode != "ANY"):
        return []
    count = max(1, knobs.tool_calls) if mode == "ANY" else knobs.tool_calls
    return [declared[i % len(declared)] for i in range(count)]


def _answer_text(body: dict[str, Any], prompt: _Prompt, knobs: SimKnobs, seed: str) -> str:
    config = _field(body, "generationConfig") or {}
    mime = _field(config, "responseMimeType")
    schema = (
        _field(config, "responseJsonSchema") or config.get("_responseJsonSchema") or _field(config, "responseSchema")
    )
    if knobs.reply is not None:
        return knobs.reply
    if prompt.function_responses:
        return "The tool returned: " + " ".join(prompt.function_responses)
    words = "".join(generated_words(seed, knobs.output_tokens))
    if mime == "application/json":
        value = value_for_schema(schema, seed) if isinstance(schema, dict) else {"answer": words}
        return json.dumps(value, ensure_ascii=False)
    if mime == "text/x.enum" and isinstance(schema, dict) and schema.get("enum"):
        return str(value_for_schema(schema, seed))
    return words


def _candidate(
    body: dict[str, Any], prompt: _Prompt, knobs: SimKnobs, seed: str, thinks: bool, size: tuple[int, int] | None
) -> _Candidate:
    config = _field(body, "generationConfig") or {}
    budget = int(_field(config, "maxOutputTokens") or 65536)
    thoughts = tuple(generated_words("thinking " + seed, min(THINKING_TOKENS, budget))) if thinks else ()
    budget -= len(thoughts)
    functions = _chosen_functions(body, knobs, bool(prompt.function_responses))
    text = "" if functions and knobs.reply is None else _answer_text(body, prompt, knobs, seed)
    stops = [s for s in _field(config, "stopSequences") or [] if s]
    cut_at = min([found for s in stops if (found := text.find(s)) >= 0], default=len(text))
    pieces: list[tuple[str, int]] = []
    for piece in _PIECE.findall(text[:cut_at]):
        tokens = count_tokens(piece)
        if tokens > budget:
            return _Candidate(thoughts, tuple(pieces), (), 0, "MAX_TOKENS")
        pieces.append((piece, tokens))
        budget -= tokens
    calls = tuple(
        {"name": f["name"], "args": value_for_schema(_parameters(f), f"{seed}/{f['name']}/{i}")}
        for i, f in enumerate(functions)
    )
    call_tokens = sum(count_tokens(json.dumps(c)) for c in calls)
    if call_tokens > budget:
        return _Candidate(thoughts, tuple(pieces), (), 0, "MAX_TOKENS")
    image = None
    if size is not None and not calls:
        image = base64.b64encode(png(size[0], size[1], seed)).decode()
    return _Candidate(thoughts, tuple(pieces), calls, call_tokens, "STOP", image)


def _parameters(declaration: dict[str, Any]) -> dict[str, Any]:
    schema = _field(declaration, "parametersJsonSchema") or declaration.get("parameters")
    return schema if isinstance(schema, dict) else {"type": "object", "properties": {}}


def _plan(body: dict[str, Any], prompt: _Prompt, knobs: SimKnobs, model: str = "") -> _Plan:
    seed = strip_directives(prompt.text)
    config = _field(body, "generationConfig") or {}
    thinks, show = _thinking(config)
    count = max(1, int(_field(config, "candidateCount") or 1))
    size = _image_size(body, model)
    candidates = tuple(
        _candidate(body, prompt, knobs, seed if i == 0 else f"{seed}#{i}", thinks, size) for i in range(count)
    )
    signature = base64.b64encode(hashlib.sha256(("signature:" + seed).encode()).digest() * 2).decode()
    return _Plan(candidates, prompt, show, signature if thinks else None)


# ------------------------------------------------------------------------------------------------- rendering


def _answer_parts(plan: _Plan, candidate: _Candidate, pieces: list[str], calls: bool) -> list[dict[str, Any]]:
    """Text parts then function calls; the first carries the thought signature when the model thought."""
    parts: list[dict[str, Any]] = [{"text": piece} for piece in pieces]
    if calls:
        parts += [{"functionCall": call} for call in candidate.calls]
    if parts and plan.signature:
        parts[0]["thoughtSignature"] = plan.signature
    return parts


def _candidate_json(index: int, parts: list[dict[str, Any]], finish: str | None, calls: bool) -> dict[str, Any]:
    content: dict[str, Any] = {"parts": parts, "role": "model"} if parts else {"role": "model"}
    result: dict[str, Any] = {"content": content}
    if finish:
        result["finishReason"] = finish
    result["index"] = index
    if finish and calls:
        result["finishMessage"] = "Model generated function call(s)."
    return result


def _usage_json(plan: _Plan, candidates_tokens: int) -> dict[str, Any]:
    thoughts = sum(len(c.thoughts) for c in plan.candidates)
    usage: dict[str, Any] = {"promptTokenCount": plan.prompt.tokens}
    if candidates_tokens:
        usage["candidatesTokenCount"] = candidates_tokens
    usage["totalTokenCount"] = plan.prompt.tokens + candidates_tokens + thoughts
    usage["promptTokensDetails"] = plan.prompt.details()
    images = sum(IMAGE_TOKENS for c in plan.candidates if c.image)
    if images and candidates_tokens == sum(c.output_tokens for c in plan.candidates):  # once the image was sent
        text = candidates_tokens - images
        usage["candidatesTokensDetails"] = [
            *([{"modality": "TEXT", "tokenCount": text}] if text else []),
            {"modality": "IMAGE", "tokenCount": images},
        ]
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def _response_json(
    candidates: list[dict[str, Any]], plan: _Plan, tokens: int, model: str, response_id: str, knobs: SimKnobs
) -> dict[str, Any]:
    response: dict[str, Any] = {"candidates": candidates}
    if not knobs.no_usage:
        response["usageMetadata"] = _usage_json(plan, tokens)
    response["modelVersion"] = model
    response["responseId"] = response_id
    return response


def _full_response(plan: _Plan, model: str, response_id: str, knobs: SimKnobs) -> dict[str, Any]:
    candidates = []
    for index, candidate in enumerate(plan.candidates):
        parts = [{"text": "".join(candidate.thoughts), "thought": True}] if plan.show_thoughts else []
        answer = ["".join(p for p, _ in candidate.pieces)] if candidate.pieces else []
        parts += _answer_parts(plan, candidate, answer, calls=True)
        if candidate.image:
            parts.append(candidate.image_part)
        candidates.append(_candidate_json(index, parts, candidate.finish_reason, bool(candidate.calls)))
    tokens = sum(c.output_tokens for c in plan.candidates)
    return _response_json(candidates, plan, tokens, model, response_id, knobs)


def _candidate_steps(plan: _Plan, candidate: _Candidate) -> list[tuple[list[dict[str, Any]], int]]:
    """One candidate's chunks as (parts, answer tokens): thoughts, a chunk per text piece, the calls."""
    steps: list[tuple[list[dict[str, Any]], int]] = []
    if plan.show_thoughts:
        steps += [([{"text": word, "thought": True}], 0) for word in candidate.thoughts]
    answers = _answer_parts(plan, candidate, [p for p, _ in candidate.pieces], calls=bool(candidate.calls))
    steps += [([part], tokens) for part, (_, tokens) in zip(answers, candidate.pieces, strict=False)]
    if candidate.image:
        steps.append(([candidate.image_part], IMAGE_TOKENS))
    if candidate.calls:
        steps.append((answers[len(candidate.pieces) :], candidate.call_tokens))
    return steps or [([{"text": ""}], 0)]


def _stream_chunks(plan: _Plan, model: str, response_id: str, knobs: SimKnobs) -> list[dict[str, Any]]:
    """Every chunk of the stream, each a full response with running usage; each one is paced as a token."""
    per_candidate = [_candidate_steps(plan, c) for c in plan.candidates]
    chunks: list[dict[str, Any]] = []
    tokens = 0
    for step, entries in enumerate(zip_longest(*per_candidate)):
        candidates = []
        for index, entry in enumerate(entries):
            if entry is None:
                continue
            parts, step_tokens = entry
            tokens += step_tokens
            candidate = plan.candidates[index]
            last = step == len(per_candidate[index]) - 1
            finish = candidate.finish_reason if last else None
            candidates.append(_candidate_json(index, parts, finish, bool(candidate.calls)))
        chunks.append(_response_json(candidates, plan, tokens, model, response_id, knobs))
    return chunks


async def _chunk_stream(chunks: list[dict[str, Any]], knobs: SimKnobs, sse: bool) -> AsyncIterator[bytes | Abort]:
    # A requested stream fault always fires, at the last chunk at the latest.
    fault_at = min(knobs.fault_after, len(chunks) - 1) if knobs.fault in _STREAM_FAULTS else -1
    for number, chunk in enumerate(chunks):
        if number == fault_at:
            async for piece in _stream_fault(knobs.fault or "", sse, first=number == 0):
                yield piece
            return
        if number == 0 and knobs.ttft_ms:
            await asyncio.sleep(knobs.ttft_ms / 1000)
        await pace(knobs)
        if sse:
            yield b"data: " + _escape_angles(_google_json(chunk)) + b"\r\n\r\n"
        else:
            yield (b"[" if number == 0 else b"\n,\r\n") + _pretty(chunk)
    if not sse:
        yield b"\n]"


async def _stream_fault(fault: str, sse: bool, first: bool) -> AsyncIterator[bytes | Abort]:
    separator = b"" if sse else (b"[" if first else b"\n,\r\n")
    if fault == "reset":
        yield ABORT
    elif fault == "malformed":
        yield separator + (b'data: {"candidates": [{"content": {"parts": [{"te\r\n\r\n' if sse else b'{"candidates": [')
    elif fault == "error":
        # Under alt=sse the API writes the error as bare pretty-printed JSON lines, without "data: " (G2).
        yield separator + _pretty(_error_body(503)) + (b"\n" if sse else b"\n]")
    elif not sse:  # "cut": the array still closes, the last chunks are just missing
        yield b"[]" if first else b"\n]"


# ---------------------------------------------------------------------------------------------------- errors


def _error_body(status: int, message: str | None = None, retry_after: int | None = None) -> dict[str, Any]:
    code = 503 if status == 529 else status
    name, default = _STATUS.get(code, ("INTERNAL" if code >= 500 else "INVALID_ARGUMENT", f"Error {code}"))
    error: dict[str, Any] = {"code": code, "message": message or default, "status": name}
    if code == 429:
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [{"description": "Learn more about Gemini API quotas", "url": _QUOTA_DOCS}],
            },
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after or 1}s"},
        ]  # fmt: skip
    return {"error": error}


def _error(status: int, message: str | None = None, retry_after: int | None = None) -> Response:
    body = _error_body(status, message, retry_after)
    return _json_response(body, body["error"]["code"])


def _bad_key() -> Response:
    message = "API key not valid. Please pass a valid API key."
    body = _error_body(400, message)
    body["error"]["details"] = [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"},
        },
        {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": message},
    ]
    return _json_response(body, 400)


def _auth_error(request: Request, state: SimulatorState) -> Response | None:
    key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
    if not key:
        return _error(
            403,
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API.",
        )
    return None if state.key_ok(key) else _bad_key()


# -------------------------------------------------------------------------------------------------- handlers


async def _before_answer(request: Request, knobs: SimKnobs) -> Response | None:
    """Latency, then the faults that replace the answer; None when the answer should go ahead."""
    if knobs.latency_ms:
        await asyncio.sleep(knobs.latency_ms / 1000)
    if knobs.fault == "hang":
        # Never answer, but end once the client gives up, so hung calls don't pile up in load runs.
        while (await request.receive())["type"] != "http.disconnect":
            pass
        return Response(status_code=499)
    if knobs.fault in STATUS_FAULTS:
        return _error(int(knobs.fault or 500), retry_after=knobs.retry_after)
    return None


def _broken_body(raw: bytes, knobs: SimKnobs) -> Response:
    """A non-stream answer under a stream fault: cut in half, and dropped mid-transfer for ``reset``."""

    async def body() -> AsyncIterator[bytes | Abort]:
        yield raw[: len(raw) // 2]
        if knobs.fault == "reset":
            yield ABORT

    return BreakableStream(body(), media_type="application/json; charset=UTF-8")


def _embedding(text: str, dimensions: int) -> list[float]:
    """Feature hashing of the words plus a little text-seeded noise: shared words mean nearby vectors."""
    noise = random.Random(hashlib.sha256(text.encode()).digest())
    values = [noise.uniform(-0.05, 0.05) for _ in range(dimensions)]
    for word in re.findall(r"\w+", text.lower()):
        digest = hashlib.sha256(word.encode()).digest()
        for j in range(0, 16, 2):
            slot = int.from_bytes(digest[j : j + 2], "big") % dimensions
            values[slot] += 1.0 if digest[16 + j // 2] & 1 else -1.0
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return [round(v / norm, 8) for v in values]


def _embed_text(request: dict[str, Any]) -> str:
    content = request.get("content")
    if not isinstance(content, dict):
        raise _InvalidRequest("* EmbedContentRequest.content: content is not specified\n")
    return " ".join(str(p.get("text", "")) for p in content.get("parts") or [] if isinstance(p, dict))


def _embed_one(request: dict[str, Any]) -> dict[str, Any]:
    text = _embed_text(request)
    dimensions = int(_field(request, "outputDimensionality") or EMBEDDING_DIMENSIONS)
    return {"values": _embedding(text, dimensions)}


_IMAGEN_SIZES = {"1:1": (1024, 1024), "3:4": (896, 1280), "4:3": (1280, 896), "9:16": (768, 1408), "16:9": (1408, 768)}
"""Imagen's pixel sizes per ``aspectRatio`` at ``imageSize`` 1K (2K doubles both sides)."""


def create_gemini_simulator(state: SimulatorState | None = None) -> Starlette:
    """The Gemini Developer API simulator as a Starlette app, with ``/_sim/*`` control routes."""
    state = state or SimulatorState()

    async def generate(request: Request, body: Any, model: str, stream: bool) -> Response:
        body = _validate(body)
        prompt = _read_prompt(body)
        knobs = state.knobs_for(request, prompt.text)
        if (early := await _before_answer(request, knobs)) is not None:
            return early
        plan = _plan(body, prompt, knobs, model)
        response_id = secrets.token_urlsafe(17)
        if stream:
            sse = request.query_params.get("alt") == "sse"
            chunks = _stream_chunks(plan, model, response_id, knobs)
            media = "text/event-stream" if sse else "application/json; charset=UTF-8"
            # Set as a header: Starlette would append "; charset=utf-8" to a text/* media_type.
            return BreakableStream(_chunk_stream(chunks, knobs, sse), headers={"content-type": media})
        await asyncio.sleep(knobs.ttft_ms / 1000)
        if knobs.tokens_per_second > 0:
            total = sum(c.output_tokens + len(c.thoughts) for c in plan.candidates)
            await asyncio.sleep(total / knobs.tokens_per_second)
        if knobs.fault == "error":
            return _error(503)
        raw = _pretty(_full_response(plan, model, response_id, knobs))
        if knobs.fault in STREAM_FAULTS:
            return _broken_body(raw, knobs)
        return Response(raw, media_type="application/json; charset=UTF-8")

    async def count(request: Request, body: Any, model: str, stream: bool) -> Response:
        inner = _field(body, "generateContentRequest") if isinstance(body, dict) else None
        prompt = _read_prompt(_validate(inner or body))
        knobs = state.knobs_for(request, prompt.text)
        if (early := await _before_answer(request, knobs)) is not None:
            return early
        return _json_response({"totalTokens": prompt.tokens, "promptTokensDetails": prompt.details()})

    async def embed(request: Request, body: Any, model: str, stream: bool) -> Response:
        if not isinstance(body, dict):
            raise _InvalidRequest("Invalid JSON payload received. Expected an object.")
        requests = body["requests"] if isinstance(body.get("requests"), list) else [body]
        knobs = state.knobs_for(request, " ".join(_embed_text(r) for r in requests if isinstance(r, dict)))
        if (early := await _before_answer(request, knobs)) is not None:
            return early
        if "requests" in body:
            return _json_response({"embeddings": [_embed_one(r) for r in body["requests"] if isinstance(r, dict)]})
        return _json_response({"embedding": _embed_one(body)})

    async def predict(request: Request, body: Any, model: str, stream: bool) -> Response:
        """Imagen: ``{"instances": [{"prompt"}], "parameters": {"sampleCount", "aspectRatio", "imageSize",
        "outputOptions": {"mimeType"}}}`` → ``{"predictions": [{"bytesBase64Encoded", "mimeType"}]}``."""
        if not model.startswith("imagen-"):
            return _error(400, f"models/{model} does not support predict.")
        instances = body.get("instances") if isinstance(body, dict) else None
        if not isinstance(instances, list) or not instances:
            raise _InvalidRequest("* instances: must not be empty")
        parameters = body.get("parameters") or {}
        prompts = [str((i or {}).get("prompt") or "") for i in instances if isinstance(i, dict)]
        if not all(p.strip() for p in prompts) or len(prompts) != len(instances):
            raise _InvalidRequest("* instances[0].prompt: is required")
        knobs = state.knobs_for(request, " ".join(prompts))
        if (early := await _before_answer(request, knobs)) is not None:
            return early
        count = parameters.get("sampleCount", 4 if model.startswith("imagen-3") else 1)
        if not isinstance(count, int) or not 1 <= count <= 4:
            raise _InvalidRequest("* parameters.sampleCount: must be from 1 to 4")
        ratio = parameters.get("aspectRatio", "1:1")
        if ratio not in _IMAGEN_SIZES:
            raise _InvalidRequest(f"* parameters.aspectRatio: unsupported value {ratio!r}")
        width, height = _IMAGEN_SIZES[ratio]
        if parameters.get("imageSize") == "2K":
            width, height = width * 2, height * 2
        mime = (parameters.get("outputOptions") or {}).get("mimeType", "image/png")
        if mime not in ("image/png", "image/jpeg"):
            raise _InvalidRequest(f"* parameters.outputOptions.mimeType: unsupported value {mime!r}")
        encode = png if mime == "image/png" else jpeg
        predictions = [
            {
                "bytesBase64Encoded": base64.b64encode(
                    encode(width, height, f"{model}\x00{strip_directives(prompt)}\x00{index}")
                ).decode(),
                "mimeType": mime,
            }
            for prompt in prompts
            for index in range(count)
        ]
        return _json_response({"predictions": predictions})

    methods: dict[str, Callable[[Request, Any, str, bool], Awaitable[Response]]] = {
        "predict": predict,
        "generateContent": generate,
        "streamGenerateContent": generate,
        "countTokens": count,
        "embedContent": embed,
        "batchEmbedContents": embed,
    }

    async def model_route(request: Request) -> Response:
        raw = await request.body()
        state.record(request, raw)
        if (denied := _auth_error(request, state)) is not None:
            return denied
        model, _, method = request.path_params["name"].partition(":")
        if request.method == "GET":
            found = [m for m in MODELS if m["name"] == f"models/{model}"]
            return _json_response(found[0]) if found else _error(404, f"models/{model} is not found.")
        handler = methods.get(method)
        if handler is None:
            return _error(404, f"Method {method} is not found for models/{model}.")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _error(400, "Invalid JSON payload received. Unexpected token.")
        try:
            return await handler(request, body, model, method == "streamGenerateContent")
        except _InvalidRequest as exc:
            return _error(400, exc.message)

    async def list_models(request: Request) -> Response:
        state.record(request, b"")
        if (denied := _auth_error(request, state)) is not None:
            return denied
        return _json_response(_model_page(request))

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return _error(status, f"The requested URL {request.url.path} was not found on this server.")

    routes = [
        route
        for version in API_VERSIONS
        for route in (
            Route(f"/{version}/models", list_models, methods=["GET"]),
            Route(f"/{version}/models/{{name:str}}", model_route, methods=["GET", "POST"]),
        )
    ]
    return Starlette(routes=[*routes, *control_routes(state)], exception_handlers={HTTPException: not_found})


def _model_page(request: Request) -> dict[str, Any]:
    """``GET models?pageSize=&pageToken=``; the token is the base64 offset, absent on the last page."""
    size = request.query_params.get("pageSize", "50")
    page_size = max(1, min(1000, int(size))) if size.isdigit() else 50
    token = request.query_params.get("pageToken")
    try:
        start = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
    except ValueError:
        start = 0
    page: dict[str, Any] = {"models": list(MODELS[start : start + page_size])}
    if start + page_size < len(MODELS):
        page["nextPageToken"] = base64.urlsafe_b64encode(str(start + page_size).encode()).decode()
    return page
