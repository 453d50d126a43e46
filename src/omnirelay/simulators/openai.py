"""The fake OpenAI upstream: Chat Completions, legacy Completions, Embeddings and Models over real HTTP.

Every test, ``omnirelay demo`` and the load benchmark talk to this instead of api.openai.com, so it copies what the
official SDK and real clients depend on (the recorded framing of wire-examples O1-O7: chunk order, ``usage: null``
on non-final chunks, the usage chunk after the finish chunks, ``[DONE]``, error bodies and headers) and is
deterministic: the same prompt gets the same reply. Knobs, faults and the request log come from ``common``.

A response is built once as choices and usage, then serialized either as one JSON body or as SSE frames; faults
and timing are applied by the sender, never by the builders.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from omnirelay.formats.sse import DONE, encode_data
from omnirelay.simulators.common import (
    STATUS_FAULTS,
    STREAM_FAULTS,
    SimKnobs,
    SimulatorState,
    control_routes,
    strip_directives,
)
from omnirelay.simulators.openai_content import (
    EMBEDDING_ENCODING,
    Piece,
    argument_fragments,
    count_tokens,
    embedding_base64,
    embedding_vector,
    logprob_entry,
    text_pieces,
    value_for_schema,
    warm_tokenizers,
    word_pieces,
)

JSONObject = dict[str, Any]
Frame = tuple[bytes, bool]
"""One SSE event and whether it carries a token (only those are paced by ``tokens_per_second``)."""
T = TypeVar("T")

DEFAULT_MODELS: tuple[str, ...] = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "o3-mini",
    "o4-mini",
    "gpt-3.5-turbo",
    "gpt-3.5-turbo-instruct",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
)
_MODEL_CREATED = {"gpt-4o-mini": 1721172741, "gpt-4o": 1715367049, "text-embedding-3-small": 1705948997}
IMAGE_TOKENS = 85
"""Prompt tokens an image part costs (OpenAI's low-detail price)."""
AUDIO_TOKENS = 100
"""Prompt tokens an ``input_audio`` part costs; the real count depends on duration."""
EMBEDDING_DIMENSIONS = {"text-embedding-3-large": 3072}
DEFAULT_EMBEDDING_DIMENSIONS = 1536
FINGERPRINT = "fp_5f0e1a9c3d"
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_TOKEN_DETAILS = {
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
_RATE_LIMIT_HEADERS = {
    "x-ratelimit-limit-requests": "10000",
    "x-ratelimit-limit-tokens": "30000000",
    "x-ratelimit-remaining-requests": "9999",
    "x-ratelimit-remaining-tokens": "29999000",
    "x-ratelimit-reset-requests": "6ms",
    "x-ratelimit-reset-tokens": "0s",
}
_MALFORMED_EVENT = b"data: {not json\n\n"

# Status fault -> (message, type, param, code). ``{model}`` and ``{key}`` are filled in per request.
_FAULT_ERRORS: dict[str, tuple[str, str, str | None, str | None]] = {
    "400": (
        "This model's maximum context length is 128000 tokens. However, your messages resulted in 130415 "
        "tokens. Please reduce the length of the messages.",
        "invalid_request_error",
        "messages",
        "context_length_exceeded",
    ),
    "401": (
        "Incorrect API key provided: {key}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        None,
        "invalid_api_key",
    ),
    "403": ("Country, region, or territory not supported", "request_forbidden", None, "unsupported_country"),
    "404": (
        "The model `{model}` does not exist or you do not have access to it.",
        "invalid_request_error",
        None,
        "model_not_found",
    ),
    "408": ("Request timed out.", "server_error", None, None),
    "413": ("Request too large.", "invalid_request_error", None, "request_too_large"),
    "422": ("Unprocessable request.", "invalid_request_error", None, None),
    "429": (
        "Rate limit reached for {model} in organization org-simulator on tokens per min (TPM): Limit 30000, "
        "Used 29000, Requested 1500. Please try again in 1.0s. Visit "
        "https://platform.openai.com/account/rate-limits to learn more.",
        "tokens",
        None,
        "rate_limit_exceeded",
    ),
    "500": (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
        None,
    ),
    "502": ("Bad gateway.", "server_error", None, None),
    "503": ("The engine is currently overloaded, please try again later.", "server_error", None, None),
    "529": ("Overloaded", "server_error", None, None),
}


class SimulatedConnectionReset(ConnectionResetError):
    """Raised inside a response on purpose: the server then drops the connection mid-body (the ``reset`` fault)."""


class _Invalid(Exception):
    """A request the real API would refuse with 400 ``invalid_request_error``."""

    def __init__(self, message: str, param: str | None, code: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param, self.code = message, param, code


def _missing(name: str) -> _Invalid:
    return _Invalid(f"Missing required parameter: '{name}'.", name, "missing_required_parameter")


@dataclass(slots=True)
class _Call:
    """One request in flight: its body, whether it streams, and when it arrived (for ``openai-processing-ms``)."""

    request: Request
    started: float
    body: JSONObject = field(default_factory=dict)

    @property
    def stream(self) -> bool:
        return self.body.get("stream") is True

    @property
    def include_usage(self) -> bool:
        options = self.body.get("stream_options")
        return isinstance(options, dict) and options.get("include_usage") is True


# ------------------------------------------------------------------------------------------------ prompts


@dataclass(slots=True)
class _Prompt:
    text: str
    """All prompt text, directives included (knobs are read from it)."""
    tokens: int
    tool_result: str | None = None
    """Content of the trailing ``tool`` messages: the model answers from it instead of calling tools again."""

    @property
    def seed(self) -> str:
        return strip_directives(self.text)


def _part_text(part: Any) -> tuple[str, int]:
    """Text of one content part and the extra prompt tokens it costs (images and audio)."""
    if not isinstance(part, dict):
        return "", 0
    kind = part.get("type")
    if kind == "image_url":
        return "", IMAGE_TOKENS
    if kind == "input_audio":
        return "", AUDIO_TOKENS
    return str(part.get("text") or part.get("refusal") or ""), 0


def _content_text(content: Any) -> tuple[str, int]:
    if isinstance(content, str):
        return content, 0
    if not isinstance(content, list):
        return "", 0
    parts = [_part_text(p) for p in content]
    return "\n".join(t for t, _ in parts if t), sum(extra for _, extra in parts)


def _chat_prompt(messages: Any, tools: Any) -> _Prompt:
    """Prompt text and tokens counted the OpenAI way: 3 per message, role and content, 3 to prime the reply."""
    if not isinstance(messages, list) or not messages:
        raise _Invalid("Invalid 'messages': expected a non-empty array of messages.", "messages")
    texts: list[str] = []
    tokens = 3 + (count_tokens(orjson.dumps(tools).decode()) if tools else 0)
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise _Invalid(f"Invalid 'messages[{i}]': expected an object with a 'role'.", f"messages[{i}]")
        text, extra = _content_text(message.get("content"))
        texts.append(text)
        tokens += 3 + count_tokens(message["role"]) + count_tokens(text) + extra
        if isinstance(message.get("name"), str):
            tokens += 1 + count_tokens(message["name"])
        for tool_call in message.get("tool_calls") or ():
            function = tool_call.get("function") if isinstance(tool_call, dict) else None
            if isinstance(function, dict):
                tokens += count_tokens(str(function.get("name", ""))) + count_tokens(
                    str(function.get("arguments"))
                )
    trailing = [_content_text(m.get("content"))[0] for m in _trailing_tool_messages(messages)]
    return _Prompt("\n".join(texts), tokens, "; ".join(trailing) if trailing else None)


def _trailing_tool_messages(messages: list[Any]) -> list[JSONObject]:
    found: list[JSONObject] = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        found.append(message)
    return found[::-1]


# ------------------------------------------------------------------------------------------------ choices


@dataclass(slots=True)
class _ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(slots=True)
class _Choice:
    """One generated answer, before it is serialized as a body or as chunks."""

    index: int
    pieces: Sequence[Piece] = ()
    tool_calls: list[_ToolCall] = field(default_factory=list)
    finish_reason: str = "stop"
    top_logprobs: int | None = None
    """``None`` when logprobs were not asked for."""

    @property
    def content(self) -> str | None:
        return None if self.tool_calls else "".join(text for text, _ in self.pieces)

    @property
    def tokens(self) -> int:
        calls = sum(count_tokens(c.name) + count_tokens(c.arguments) for c in self.tool_calls)
        return calls + sum(n for _, n in self.pieces)

    def logprobs(self, pieces: Iterable[Piece]) -> JSONObject | None:
        if self.top_logprobs is None:
            return None
        return {"content": [logprob_entry(text, self.top_logprobs) for text, _ in pieces], "refusal": None}


def _int_param(body: JSONObject, name: str, default: int | None, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _Invalid(f"Invalid '{name}': expected an integer from {low} to {high}, got {value!r}.", name)
    return value


def _stops(body: JSONObject) -> list[str]:
    stop = body.get("stop")
    if isinstance(stop, str):
        return [stop] if stop else []
    return [s for s in stop if isinstance(s, str) and s] if isinstance(stop, list) else []


def _cut(pieces: Sequence[Piece], stops: list[str], limit: int | None) -> tuple[Sequence[Piece], str]:
    """Apply stop sequences, then the token limit; the finish reason says which one ended the reply."""
    if stops:
        text = "".join(t for t, _ in pieces)
        hits = [at for at in (text.find(s) for s in stops) if at >= 0]
        if hits:
            pieces = text_pieces(text[: min(hits)])
    if limit is None or sum(n for _, n in pieces) <= limit:
        return pieces, "stop"
    kept: list[Piece] = []
    used = 0
    for piece in pieces:
        if used + piece[1] > limit:
            break
        kept.append(piece)
        used += piece[1]
    return kept, "length"


def _reply(body: JSONObject, prompt: _Prompt, knobs: SimKnobs, seed: str) -> Sequence[Piece]:
    """What the assistant says: a tool-result echo, the ``reply`` knob, JSON for a response_format, or words."""
    if prompt.tool_result is not None:
        return text_pieces(f"The result is: {prompt.tool_result}")
    if knobs.reply is not None:
        return text_pieces(knobs.reply)
    response_format = body.get("response_format")
    if not isinstance(response_format, dict):
        return word_pieces(seed, knobs.output_tokens)
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        return text_pieces(orjson.dumps(value_for_schema(schema, seed)).decode())
    if response_format.get("type") == "json_object":
        words = "".join(w for w, _ in word_pieces(seed, knobs.output_tokens))
        return text_pieces(orjson.dumps({"answer": words}).decode())
    return word_pieces(seed, knobs.output_tokens)


def _tools_to_call(body: JSONObject, prompt: _Prompt, knobs: SimKnobs) -> list[JSONObject]:
    """The ``function`` objects the model calls now: the forced one, or the first ``knobs.tool_calls`` offered."""
    tools = [
        t["function"] for t in body.get("tools") or () if isinstance(t, dict) and t.get("type") == "function"
    ]
    choice = body.get("tool_choice", "auto")
    if not tools or choice == "none" or prompt.tool_result is not None:
        return []
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        forced = [t for t in tools if t.get("name") == name]
        if not forced:
            raise _Invalid(f"Invalid 'tool_choice': no function named {name!r} in 'tools'.", "tool_choice")
        return forced[:1]
    count = knobs.tool_calls if choice != "required" else max(1, knobs.tool_calls)
    return tools[: 1 if body.get("parallel_tool_calls") is False else count]


# ------------------------------------------------------------------------------------------------ results


@dataclass(slots=True)
class _Envelope:
    """Fields every body and chunk of one response share."""

    id: str
    created: int
    model: str
    body_object: str
    chunk_object: str
    extra: JSONObject = field(default_factory=dict)

    def head(self, object_name: str) -> JSONObject:
        return {
            "id": self.id,
            "object": object_name,
            "created": self.created,
            "model": self.model,
            **self.extra,
        }


class _Result(Protocol):
    completion_tokens: int

    def body(self) -> JSONObject: ...

    def frames(self, include_usage: bool) -> list[Frame]: ...


def _interleave(sequences: list[list[T]]) -> list[T]:
    """O4's order for n>1: each choice's role chunk with its first token, then one token per choice in turn."""
    if len(sequences) == 1:
        return sequences[0]
    rounds = [[seq[:2], *([item] for item in seq[2:])] for seq in sequences]
    ordered: list[T] = []
    for r in range(max(len(groups) for groups in rounds)):
        for groups in rounds:
            if r < len(groups):
                ordered.extend(groups[r])
    return ordered


def _frames(
    envelope: _Envelope,
    sequences: list[list[tuple[JSONObject, bool]]],
    finishes: list[JSONObject],
    usage: JSONObject | None,
    include_usage: bool,
) -> list[Frame]:
    """SSE frames of a completion: choice chunks, finish chunks, the usage chunk if asked, then ``[DONE]``."""
    head = envelope.head(envelope.chunk_object)
    with_usage = usage is not None and include_usage
    prefix = orjson.dumps(head)[:-1] + b',"choices":['
    suffix = b'],"usage":null}' if with_usage else b"]}"
    frames = [(encode_data(prefix + orjson.dumps(c) + suffix), paced) for c, paced in _interleave(sequences)]
    frames += [(encode_data(prefix + orjson.dumps(c) + suffix), False) for c in finishes]
    if with_usage:
        frames.append((encode_data(orjson.dumps({**head, "choices": [], "usage": usage})), False))
    frames.append((DONE, False))
    return frames


def _usage(prompt_tokens: int, completion_tokens: int, details: bool) -> JSONObject:
    usage: JSONObject = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    return {**usage, **_TOKEN_DETAILS} if details else usage


def _chunk_choice(
    index: int, delta: JSONObject, logprobs: Any = None, finish: str | None = None
) -> JSONObject:
    return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}


@dataclass(slots=True)
class _ChatResult:
    envelope: _Envelope
    choices: list[_Choice]
    usage: JSONObject | None
    completion_tokens: int

    def body(self) -> JSONObject:
        body = self.envelope.head(self.envelope.body_object)
        body["choices"] = [self._message_choice(c) for c in self.choices]
        if self.usage is not None:
            body["usage"] = self.usage
        return body

    @staticmethod
    def _message_choice(choice: _Choice) -> JSONObject:
        message: JSONObject = {
            "role": "assistant",
            "content": choice.content,
            "refusal": None,
            "annotations": [],
        }
        if choice.tool_calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in choice.tool_calls
            ]
        logprobs = choice.logprobs(choice.pieces)
        return {
            "index": choice.index,
            "message": message,
            "logprobs": logprobs,
            "finish_reason": choice.finish_reason,
        }

    def frames(self, include_usage: bool) -> list[Frame]:
        sequences = [self._deltas(c) for c in self.choices]
        finishes = [_chunk_choice(c.index, {}, None, c.finish_reason) for c in self.choices]
        return _frames(self.envelope, sequences, finishes, self.usage, include_usage)

    @staticmethod
    def _deltas(choice: _Choice) -> list[tuple[JSONObject, bool]]:
        """A choice's chunks as in O2/O3: the role chunk, then one chunk per token or argument fragment."""
        i = choice.index
        if not choice.tool_calls:
            role = _chunk_choice(i, {"role": "assistant", "content": "", "refusal": None})
            tokens = [
                (_chunk_choice(i, {"content": p[0]}, choice.logprobs([p])), True) for p in choice.pieces
            ]
            return [(role, False), *tokens]
        deltas = [(_chunk_choice(i, {"role": "assistant", "content": None}), False)]
        for k, call in enumerate(choice.tool_calls):
            opening = {
                "index": k,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            deltas.append((_chunk_choice(i, {"tool_calls": [opening]}), True))
            deltas += [
                (_chunk_choice(i, {"tool_calls": [{"index": k, "function": {"arguments": fragment}}]}), True)
                for fragment in argument_fragments(call.arguments)
            ]
        return deltas


@dataclass(slots=True)
class _TextResult:
    """A legacy ``/v1/completions`` answer; choices carry text only."""

    envelope: _Envelope
    choices: list[_Choice]
    usage: JSONObject | None
    completion_tokens: int

    def body(self) -> JSONObject:
        body = self.envelope.head(self.envelope.body_object)
        body["choices"] = [self._text_choice(c.index, c.content or "", c.finish_reason) for c in self.choices]
        if self.usage is not None:
            body["usage"] = self.usage
        return body

    @staticmethod
    def _text_choice(index: int, text: str, finish: str | None) -> JSONObject:
        return {"text": text, "index": index, "logprobs": None, "finish_reason": finish}

    def frames(self, include_usage: bool) -> list[Frame]:
        sequences = [[(self._text_choice(c.index, p[0], None), True) for p in c.pieces] for c in self.choices]
        finishes = [self._text_choice(c.index, "", c.finish_reason) for c in self.choices]
        return _frames(self.envelope, sequences, finishes, self.usage, include_usage)


# ------------------------------------------------------------------------------------------------ sending


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class _FrameStream(Response):
    """Sends prepared frames with the knobs' timing, and breaks off the way a stream fault asks.

    Without ``ttft_ms``/``tokens_per_second`` all frames go out in one write: at benchmark rates that is much
    cheaper, and a relay must cope with any split of the byte stream anyway.
    """

    def __init__(
        self, frames: list[Frame], knobs: SimKnobs, headers: dict[str, str], media_type: str
    ) -> None:
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.init_headers(headers)
        self.frames = frames
        self.knobs = knobs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        knobs = self.knobs
        fault = knobs.fault if knobs.fault in STREAM_FAULTS or knobs.fault == "hang" else None
        frames = self.frames if fault is None else self.frames[: knobs.fault_after]
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if knobs.ttft_ms or knobs.tokens_per_second or fault == "hang":
            disconnected = asyncio.ensure_future(_until_disconnect(receive))
            try:
                if not await self._send_paced(frames, send, disconnected):
                    return
                if fault == "hang":
                    await disconnected
                    return
            finally:
                disconnected.cancel()
        elif frames:
            await send(
                {"type": "http.response.body", "body": b"".join(f for f, _ in frames), "more_body": True}
            )
        if fault == "reset":
            raise SimulatedConnectionReset(f"simulated reset after {len(frames)} events")
        if fault == "malformed":
            await send({"type": "http.response.body", "body": _MALFORMED_EVENT, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _send_paced(self, frames: list[Frame], send: Send, disconnected: asyncio.Future[None]) -> bool:
        """False when the client went away; ``ttft_ms`` comes before the first token, pacing before the rest."""
        gap = 1.0 / self.knobs.tokens_per_second if self.knobs.tokens_per_second > 0 else 0.0
        first_token = True
        for data, paced in frames:
            delay = (self.knobs.ttft_ms / 1000 if first_token else gap) if paced else 0.0
            first_token = first_token and not paced
            if delay:
                await asyncio.sleep(delay)
            if disconnected.done():
                return False
            await send({"type": "http.response.body", "body": data, "more_body": True})
        return True


def _broken_body(body: bytes, fault: str) -> list[Frame]:
    """A non-stream body under a stream fault: half of it (reset, cut) or nothing (malformed)."""
    if fault == "malformed":
        return [(b"{not json", False)]
    half = len(body) // 2
    return [(body[:half], False), (body[half:], False)]


# ------------------------------------------------------------------------------------------------ the app


def _mask(key: str) -> str:
    return key[:3] + "*" * (len(key) - 7) + key[-4:] if len(key) >= 12 else "*" * len(key)


def _bearer(request: Request) -> str | None:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key.strip() or None if scheme.lower() == "bearer" else None


class _OpenAISimulator:
    """The routes' shared machinery: auth, parsing, knobs, faults, headers and ids."""

    def __init__(self, state: SimulatorState, models: Sequence[str]) -> None:
        self.state = state
        self._rng = random.Random()
        self._models = {m: self._model(m) for m in models}
        self._model_list = orjson.dumps({"object": "list", "data": list(self._models.values())})

    @staticmethod
    def _model(model_id: str) -> JSONObject:
        created = _MODEL_CREATED.get(model_id, 1698785189)
        return {"id": model_id, "object": "model", "created": created, "owned_by": "system"}

    def _id(self, prefix: str, length: int) -> str:
        return prefix + "".join(self._rng.choices(_ALNUM, k=length))

    def headers(self, call: _Call, **extra: str) -> dict[str, str]:
        elapsed = int((time.perf_counter() - call.started) * 1000)
        return {
            "x-request-id": f"req_{self._rng.getrandbits(128):032x}",
            "openai-processing-ms": str(elapsed),
            "openai-version": "2020-10-01",
            "openai-organization": "org-simulator",
            **_RATE_LIMIT_HEADERS,
            **extra,
        }

    def error(
        self,
        call: _Call,
        status: int,
        message: str,
        kind: str,
        param: str | None,
        code: str | None,
        **headers: str,
    ) -> Response:
        body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
        content = orjson.dumps(body, option=orjson.OPT_INDENT_2)
        return Response(content, status, self.headers(call, **headers), media_type="application/json")

    def fault_response(self, call: _Call, fault: str, knobs: SimKnobs) -> Response:
        message, kind, param, code = _FAULT_ERRORS[fault]
        message = message.format(
            model=call.body.get("model", "gpt-4o"), key=_mask(_bearer(call.request) or "")
        )
        headers: dict[str, str] = {}
        if fault == "429":
            headers = {"retry-after": str(knobs.retry_after or 1), "x-ratelimit-remaining-tokens": "0"}
        elif fault in {"503", "529"} and knobs.retry_after is not None:
            headers = {"retry-after": str(knobs.retry_after)}
        return self.error(call, int(fault), message, kind, param, code, **headers)

    def endpoint(
        self, handler: Callable[[_Call], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """Wraps a route: record the request, check the key, parse the body, turn ``_Invalid`` into a 400."""

        async def run(request: Request) -> Response:
            call = _Call(request, time.perf_counter())
            raw = await request.body()
            self.state.record(request, raw)
            key = _bearer(request)
            if not self.state.key_ok(key):
                return self._unauthorized(call, key)
            try:
                if request.method == "POST":
                    call.body = _parse_body(raw)
                return await handler(call)
            except _Invalid as invalid:
                return self.error(
                    call, 400, invalid.message, "invalid_request_error", invalid.param, invalid.code
                )

        return run

    def _unauthorized(self, call: _Call, key: str | None) -> Response:
        if key is None:
            message = (
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
        else:
            message = _FAULT_ERRORS["401"][0].format(key=_mask(key))
        return self.error(call, 401, message, "invalid_request_error", None, "invalid_api_key")

    async def respond(self, call: _Call, knobs: SimKnobs, build: Callable[[], _Result]) -> Response:
        """The common tail of every generating route: delays and faults first, then body or stream."""
        early = await self._prelude(call, knobs)
        if early is not None:
            return early
        result = build()
        if call.stream:
            return _FrameStream(
                result.frames(call.include_usage),
                knobs,
                self.headers(call),
                "text/event-stream; charset=utf-8",
            )
        generation = knobs.ttft_ms / 1000
        if knobs.tokens_per_second > 0:
            generation += result.completion_tokens / knobs.tokens_per_second
        if generation:
            await asyncio.sleep(generation)
        return self.json(call, knobs, result.body())

    async def _prelude(self, call: _Call, knobs: SimKnobs) -> Response | None:
        if knobs.latency_ms:
            await asyncio.sleep(knobs.latency_ms / 1000)
        if knobs.fault in STATUS_FAULTS:
            return self.fault_response(call, knobs.fault, knobs)
        if knobs.fault == "hang" and not call.stream:
            await _until_disconnect(call.request.receive)
            return Response(status_code=499)
        return None

    def json(self, call: _Call, knobs: SimKnobs, body: JSONObject) -> Response:
        content = orjson.dumps(body)
        if knobs.fault in STREAM_FAULTS:
            # The broken body is already in the frames for ``malformed``; it then ends like ``cut``.
            broken = SimKnobs(fault="cut" if knobs.fault == "malformed" else knobs.fault, fault_after=1)
            return _FrameStream(
                _broken_body(content, knobs.fault), broken, self.headers(call), "application/json"
            )
        return Response(content, 200, self.headers(call), media_type="application/json")

    def envelope(self, body: JSONObject, kind: str) -> _Envelope:
        model = str(body["model"])
        if kind == "chat":
            extra = {"service_tier": "default", "system_fingerprint": FINGERPRINT}
            chat_id = self._id("chatcmpl-", 29)
            return _Envelope(
                chat_id, int(time.time()), model, "chat.completion", "chat.completion.chunk", extra
            )
        return _Envelope(self._id("cmpl-", 29), int(time.time()), model, "text_completion", "text_completion")

    # ---------------------------------------------------------------------------------------- routes

    async def chat_completions(self, call: _Call) -> Response:
        body = call.body
        for name in ("model", "messages"):
            if name not in body:
                raise _missing(name)
        prompt = _chat_prompt(body["messages"], body.get("tools"))
        knobs = self.state.knobs_for(call.request, prompt.text)
        return await self.respond(call, knobs, lambda: self._chat(body, prompt, knobs))

    def _chat(self, body: JSONObject, prompt: _Prompt, knobs: SimKnobs) -> _ChatResult:
        n = _int_param(body, "n", 1, 1, 128) or 1
        limit = _int_param(body, "max_completion_tokens", None, 1, 1 << 30)
        limit = _int_param(body, "max_tokens", limit, 1, 1 << 30)
        top = _int_param(body, "top_logprobs", 0, 0, 20) if body.get("logprobs") is True else None
        stops, tools, seed = _stops(body), _tools_to_call(body, prompt, knobs), prompt.seed
        choices: list[_Choice] = []
        for i in range(n):
            choice_seed = seed if i == 0 else f"{seed}\x00{i}"
            if tools:
                calls = [self._tool_call(t, choice_seed) for t in tools]
                choices.append(_Choice(i, tool_calls=calls, finish_reason="tool_calls"))
                continue
            pieces, finish = _cut(_reply(body, prompt, knobs, choice_seed), stops, limit)
            choices.append(_Choice(i, pieces, finish_reason=finish, top_logprobs=top))
        completion = sum(c.tokens for c in choices)
        usage = None if knobs.no_usage else _usage(prompt.tokens, completion, details=True)
        return _ChatResult(self.envelope(body, "chat"), choices, usage, completion)

    def _tool_call(self, function: JSONObject, seed: str) -> _ToolCall:
        name = str(function.get("name", "function"))
        arguments = value_for_schema(function.get("parameters") or {"type": "object"}, f"{seed}\x00{name}")
        return _ToolCall(self._id("call_", 24), name, orjson.dumps(arguments).decode())

    async def completions(self, call: _Call) -> Response:
        body = call.body
        for name in ("model", "prompt"):
            if name not in body:
                raise _missing(name)
        prompts = _legacy_prompts(body["prompt"])
        knobs = self.state.knobs_for(call.request, "\n".join(text for text, _ in prompts))
        return await self.respond(call, knobs, lambda: self._text(body, prompts, knobs))

    def _text(self, body: JSONObject, prompts: list[tuple[str, int]], knobs: SimKnobs) -> _TextResult:
        n = _int_param(body, "n", 1, 1, 128) or 1
        limit = _int_param(body, "max_tokens", None, 1, 1 << 30)
        stops = _stops(body)
        choices: list[_Choice] = []
        for text, _ in prompts:
            for i in range(n):
                seed = strip_directives(text) + (f"\x00{i}" if i else "")
                reply = (
                    text_pieces(knobs.reply)
                    if knobs.reply is not None
                    else word_pieces(seed, knobs.output_tokens)
                )
                pieces, finish = _cut(reply, stops, limit)
                choices.append(_Choice(len(choices), pieces, finish_reason=finish))
        completion = sum(c.tokens for c in choices)
        prompt_tokens = sum(tokens for _, tokens in prompts)
        usage = None if knobs.no_usage else _usage(prompt_tokens, completion, details=False)
        return _TextResult(self.envelope(body, "text"), choices, usage, completion)

    async def embeddings(self, call: _Call) -> Response:
        body = call.body
        for name in ("model", "input"):
            if name not in body:
                raise _missing(name)
        inputs = _embedding_inputs(body["input"])
        knobs = self.state.knobs_for(call.request, "\n".join(key for key, _ in inputs))
        early = await self._prelude(call, knobs)
        if early is not None:
            return early
        return self.json(call, knobs, _embedding_body(body, inputs))

    async def list_models(self, call: _Call) -> Response:
        return Response(self._model_list, 200, self.headers(call), media_type="application/json")

    async def retrieve_model(self, call: _Call) -> Response:
        model_id = call.request.path_params["model_id"]
        if model_id not in self._models:
            message = f"The model `{model_id}` does not exist or you do not have access to it."
            return self.error(call, 404, message, "invalid_request_error", "model", "model_not_found")
        return Response(
            orjson.dumps(self._models[model_id]), 200, self.headers(call), media_type="application/json"
        )


def _parse_body(raw: bytes) -> JSONObject:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        raise _Invalid(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
            "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
            None,
        )
    return body


def _legacy_prompts(prompt: Any) -> list[tuple[str, int]]:
    """Legacy ``prompt``: a string, strings, token ids or lists of token ids -> (seed text, prompt tokens)."""
    if isinstance(prompt, str):
        return [(prompt, count_tokens(prompt))]
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        return [(" ".join(map(str, prompt)), len(prompt))]
    if isinstance(prompt, list) and prompt:
        return [p for item in prompt for p in _legacy_prompts(item)]
    raise _Invalid("Invalid 'prompt': expected a string, strings, or token ids.", "prompt")


def _embedding_inputs(value: Any) -> list[tuple[str, int]]:
    """Embedding ``input`` in its four shapes -> (key the vector is derived from, input tokens) per item."""
    if isinstance(value, str) and value:
        return [(value, count_tokens(value, EMBEDDING_ENCODING))]
    if (
        isinstance(value, list)
        and value
        and all(isinstance(t, int) and not isinstance(t, bool) for t in value)
    ):
        return [("tokens:" + ",".join(map(str, value)), len(value))]
    if isinstance(value, list) and value and all(isinstance(v, str | list) for v in value):
        return [item for v in value for item in _embedding_inputs(v)]
    message = "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."
    raise _Invalid(message, "input")


def _embedding_body(body: JSONObject, inputs: list[tuple[str, int]]) -> JSONObject:
    model = str(body["model"])
    native = EMBEDDING_DIMENSIONS.get(model, DEFAULT_EMBEDDING_DIMENSIONS)
    dimensions = _int_param(body, "dimensions", native, 1, native) or native
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise _Invalid("Invalid 'encoding_format': expected 'float' or 'base64'.", "encoding_format")
    data = []
    for index, (key, _) in enumerate(inputs):
        vector = embedding_vector(key, dimensions)
        embedding: Any = embedding_base64(vector) if encoding == "base64" else vector.tolist()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = sum(n for _, n in inputs)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def create_openai_simulator(
    state: SimulatorState | None = None, models: Sequence[str] = DEFAULT_MODELS
) -> Starlette:
    """Build the fake OpenAI upstream (routes under ``/v1`` plus ``/_sim/*``) around one ``SimulatorState``.

    ``models`` is what ``GET /v1/models`` lists; chat and embeddings accept any model name, because deciding
    which models exist is the gateway's job.
    """
    sim = _OpenAISimulator(state or SimulatorState(), models)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await asyncio.get_running_loop().run_in_executor(None, warm_tokenizers)
        yield

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        message = f"Invalid URL ({request.method} {request.url.path})"
        call = _Call(request, time.perf_counter())
        return sim.error(call, status, message, "invalid_request_error", None, None)

    routes = [
        Route("/v1/chat/completions", sim.endpoint(sim.chat_completions), methods=["POST"]),
        Route("/v1/completions", sim.endpoint(sim.completions), methods=["POST"]),
        Route("/v1/embeddings", sim.endpoint(sim.embeddings), methods=["POST"]),
        Route("/v1/models", sim.endpoint(sim.list_models), methods=["GET"]),
        Route("/v1/models/{model_id:path}", sim.endpoint(sim.retrieve_model), methods=["GET"]),
        *control_routes(sim.state),
    ]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: not_found, 405: not_found})
