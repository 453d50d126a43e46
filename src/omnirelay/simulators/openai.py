"""The fake OpenAI upstream: Chat Completions, legacy Completions, Embeddings and Models over real HTTP.

Every test, ``omnirelay demo`` and the load benchmark talk to this instead of api.openai.com, so it copies
what the official SDK and real clients depend on (the recorded framing of wire-examples O1-O7: chunk order,
``usage: null`` on non-final chunks, the usage chunk after the finish chunks, ``[DONE]``, error bodies and
headers) and is deterministic: the same prompt gets the same reply. Knobs, faults and the request log come
from ``common``; what the model says comes from ``openai_content``.

A response is built once as choices and usage, then serialized either as one JSON body or as SSE frames;
delays and faults are applied by the sender, never by the builders.
"""

from __future__ import annotations

import asyncio
import base64
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from random import Random
from typing import Any, TypeVar

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
    RecordedRequest,
    SimKnobs,
    SimulatorState,
    control_routes,
    strip_directives,
)
from omnirelay.simulators.openai_audio import ChatAudio, audio_request, input_audio_tokens, spoken_answer
from omnirelay.simulators.openai_content import (
    InvalidRequest,
    JSONObject,
    Piece,
    Prompt,
    argument_fragments,
    chat_prompt,
    count_tokens,
    cut_reply,
    embedding_base64,
    embedding_inputs,
    embedding_vector,
    int_param,
    legacy_prompts,
    logprob_entry,
    reply_pieces,
    require,
    text_pieces,
    tool_arguments,
    tools_to_call,
    warm_tokenizers,
    word_pieces,
)
from omnirelay.simulators.openai_media import MediaEndpoints
from omnirelay.simulators.openai_rerank import RerankEndpoint
from omnirelay.simulators.openai_responses import ResponsesEndpoint

RawHeaders = list[tuple[bytes, bytes]]
Frame = tuple[bytes, bool]
"""One SSE event and whether it carries a token (only those wait for ``ttft_ms``/``tokens_per_second``)."""
T = TypeVar("T")

DEFAULT_MODELS: tuple[str, ...] = tuple(
    "gpt-4o gpt-4o-mini gpt-4.1 gpt-4.1-mini gpt-4.1-nano o3-mini o4-mini gpt-3.5-turbo "
    "gpt-3.5-turbo-instruct text-embedding-3-small text-embedding-3-large text-embedding-ada-002".split()
)
_MODEL_CREATED = {"gpt-4o-mini": 1721172741, "gpt-4o": 1715367049, "text-embedding-3-small": 1705948997}
EMBEDDING_DIMENSIONS = {"text-embedding-3-large": 3072}
"""Native sizes that differ from 1536 (``-3-small``, ``ada-002`` and anything unknown)."""
FINGERPRINT = "fp_5f0e1a9c3d"
_ID_ALPHABET = bytes.maketrans(b"+/", b"Ab")
_TOKEN_DETAILS = {
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
_STATIC_HEADERS: RawHeaders = [
    (b"openai-version", b"2020-10-01"),
    (b"openai-organization", b"org-simulator"),
    (b"x-ratelimit-limit-requests", b"10000"),
    (b"x-ratelimit-limit-tokens", b"30000000"),
    (b"x-ratelimit-remaining-requests", b"9999"),
    (b"x-ratelimit-remaining-tokens", b"29999000"),
    (b"x-ratelimit-reset-requests", b"6ms"),
    (b"x-ratelimit-reset-tokens", b"0s"),
]
_SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"
_KEY_ERROR = (
    "Incorrect API key provided: {key}. You can find your API key at https://platform.openai.com/account/api-keys."
)
_RATE_ERROR = (
    "Rate limit reached for {model} in organization org-simulator on tokens per min (TPM): Limit 30000, "
    "Used 29000, Requested 1500. Please try again in {retry}s. Visit "
    "https://platform.openai.com/account/rate-limits to learn more."
)
_CONTEXT_ERROR = (
    "This model's maximum context length is 128000 tokens. However, your messages resulted in 130415 tokens. "
    "Please reduce the length of the messages."
)
_FAULT_ERRORS: dict[str, tuple[str, str, str | None, str | None]] = {
    "400": (_CONTEXT_ERROR, "invalid_request_error", "messages", "context_length_exceeded"),
    "401": (_KEY_ERROR, "invalid_request_error", None, "invalid_api_key"),
    "403": ("Country, region, or territory not supported", "request_forbidden", None, "unsupported_country"),
    "404": (
        "The model `{model}` does not exist or you do not have access to it.",
        "invalid_request_error",
        "model",
        "model_not_found",
    ),
    "408": ("Request timed out.", "server_error", None, None),
    "413": ("Request too large.", "invalid_request_error", None, "request_too_large"),
    "422": ("Unprocessable request.", "invalid_request_error", None, None),
    "429": (_RATE_ERROR, "tokens", None, "rate_limit_exceeded"),
    "500": (_SERVER_ERROR, "server_error", None, None),
    "502": ("Bad gateway.", "server_error", None, None),
    "503": ("The engine is currently overloaded, please try again later.", "server_error", None, None),
    "529": ("Overloaded", "server_error", None, None),
}
"""Status fault -> (message, type, param, code); the 4xx/5xx wording of wire-examples O5."""
_STREAM_ERROR = orjson.dumps({"error": {"message": _SERVER_ERROR, "type": "server_error", "param": None, "code": None}})


class SimulatedConnectionReset(ConnectionResetError):
    """Raised inside a response on purpose, so the server drops the connection mid-body (``reset``)."""


@dataclass(slots=True)
class _Call:
    """One request in flight: its body and when it arrived (for ``openai-processing-ms``)."""

    request: Request
    started: float
    body: JSONObject = field(default_factory=dict)
    recorded: RecordedRequest | None = None

    @property
    def stream(self) -> bool:
        return self.body.get("stream") is True

    @property
    def include_usage(self) -> bool:
        options = self.body.get("stream_options")
        return isinstance(options, dict) and options.get("include_usage") is True


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
    audio: ChatAudio | None = None
    """A spoken answer (``modalities: ["audio"]``): the pieces are its transcript, ``content`` is null."""

    @property
    def content(self) -> str | None:
        return None if self.tool_calls or self.audio else "".join(text for text, _ in self.pieces)

    @property
    def tokens(self) -> int:
        calls = sum(count_tokens(c.name) + count_tokens(c.arguments) for c in self.tool_calls)
        return calls + sum(n for _, n in self.pieces) + (self.audio.tokens if self.audio else 0)

    def logprobs(self, pieces: Iterable[Piece]) -> JSONObject | None:
        if self.top_logprobs is None:
            return None
        return {"content": [logprob_entry(text, self.top_logprobs) for text, _ in pieces], "refusal": None}


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


def _usage(prompt_tokens: int, choices: list[_Choice], details: bool) -> JSONObject:
    completion = sum(c.tokens for c in choices)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
    }
    return {**usage, **_TOKEN_DETAILS} if details else usage


def _split_audio_usage(usage: JSONObject, prompt_audio: int, choices: list[_Choice]) -> None:
    """Usage details as gpt-4o-audio-preview reports them: audio and text tokens apart on both sides."""
    answer_audio = sum(c.audio.tokens for c in choices if c.audio)
    prompt_tokens, completion_tokens = int(usage["prompt_tokens"]), int(usage["completion_tokens"])  # type: ignore[call-overload]
    usage["prompt_tokens_details"] = {
        "cached_tokens": 0,
        "audio_tokens": prompt_audio,
        "text_tokens": prompt_tokens - prompt_audio,
        "image_tokens": 0,
    }
    usage["completion_tokens_details"] = {
        "reasoning_tokens": 0,
        "audio_tokens": answer_audio,
        "text_tokens": completion_tokens - answer_audio,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    }


# ------------------------------------------------------------------------------------------------ results


def _interleave(sequences: list[list[T]]) -> list[T]:
    """O4's order for n>1: each choice's role chunk with its first token, then a token per choice in turn."""
    if len(sequences) == 1:
        return sequences[0]
    rounds = [[seq[:2], *([item] for item in seq[2:])] for seq in sequences]
    ordered: list[T] = []
    for r in range(max(len(groups) for groups in rounds)):
        for groups in rounds:
            if r < len(groups):
                ordered.extend(groups[r])
    return ordered


@dataclass(slots=True)
class _Completion(ABC):
    """Choices plus usage, serialized either way; subclasses say how a choice looks in a body and a stream."""

    envelope: _Envelope
    choices: list[_Choice]
    usage: JSONObject | None
    """``None`` under the ``no_usage`` knob: the key is then left out everywhere."""

    def body(self) -> JSONObject:
        body = self.envelope.head(self.envelope.body_object)
        body["choices"] = [self.body_choice(c) for c in self.choices]
        if self.usage is not None:
            body["usage"] = self.usage
        return body

    def frames(self, include_usage: bool) -> list[Frame]:
        """Choice chunks (interleaved for n>1), finish chunks, the usage chunk if asked, then ``[DONE]``."""
        head = self.envelope.head(self.envelope.chunk_object)
        with_usage = self.usage is not None and include_usage
        prefix = orjson.dumps(head)[:-1] + b',"choices":['
        suffix = b'],"usage":null}' if with_usage else b"]}"
        chunks = _interleave([self.stream_choices(c) for c in self.choices])
        chunks += [(self.finish_choice(c), False) for c in self.choices]
        frames = [(encode_data(prefix + chunk + suffix), paced) for chunk, paced in chunks]
        if with_usage:
            frames.append((encode_data(orjson.dumps({**head, "choices": [], "usage": self.usage})), False))
        frames.append((DONE, False))
        return frames

    @abstractmethod
    def body_choice(self, choice: _Choice) -> JSONObject: ...

    @abstractmethod
    def stream_choices(self, choice: _Choice) -> list[tuple[bytes, bool]]:
        """The serialized ``choices[0]`` of each chunk of one choice, and whether it carries a token."""

    @abstractmethod
    def finish_choice(self, choice: _Choice) -> bytes: ...


def _delta(index: int, delta: JSONObject, logprobs: Any = None, finish: str | None = None) -> bytes:
    return orjson.dumps({"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish})


@lru_cache(maxsize=4096)
def _content_delta(index: int, text: str) -> bytes:
    """A token chunk's choice without logprobs; cached, because replies reuse a small vocabulary."""
    return _delta(index, {"content": text})


class _ChatCompletion(_Completion):
    __slots__ = ()

    def body_choice(self, choice: _Choice) -> JSONObject:
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
        if choice.audio is not None:
            message["audio"] = choice.audio.message_field()
        logprobs = choice.logprobs(choice.pieces)
        return {
            "index": choice.index,
            "message": message,
            "logprobs": logprobs,
            "finish_reason": choice.finish_reason,
        }

    def stream_choices(self, choice: _Choice) -> list[tuple[bytes, bool]]:
        """The role chunk, then a chunk per token or argument fragment (O2, O3)."""
        i = choice.index
        if choice.audio is not None:
            role = _delta(i, {"role": "assistant", "content": None, "refusal": None})
            deltas = choice.audio.deltas([text for text, _ in choice.pieces])
            return [(role, False), *((_delta(i, {"audio": audio}), paced) for audio, paced in deltas)]
        if not choice.tool_calls:
            role = _delta(i, {"role": "assistant", "content": "", "refusal": None})
            if choice.top_logprobs is None:
                return [(role, False), *((_content_delta(i, text), True) for text, _ in choice.pieces)]
            tokens = [(_delta(i, {"content": p[0]}, choice.logprobs([p])), True) for p in choice.pieces]
            return [(role, False), *tokens]
        chunks = [(_delta(i, {"role": "assistant", "content": None}), False)]
        for k, call in enumerate(choice.tool_calls):
            opening = {
                "index": k,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            chunks.append((_delta(i, {"tool_calls": [opening]}), True))
            chunks += [
                (_delta(i, {"tool_calls": [{"index": k, "function": {"arguments": fragment}}]}), True)
                for fragment in argument_fragments(call.arguments)
            ]
        return chunks

    def finish_choice(self, choice: _Choice) -> bytes:
        return _delta(choice.index, {}, None, choice.finish_reason)


class _TextCompletion(_Completion):
    """A legacy ``/v1/completions`` answer: choices carry text only, and no role chunk is streamed."""

    __slots__ = ()

    def body_choice(self, choice: _Choice) -> JSONObject:
        return _text_choice(choice.index, choice.content or "", choice.finish_reason)

    def stream_choices(self, choice: _Choice) -> list[tuple[bytes, bool]]:
        return [(_text_delta(choice.index, text), True) for text, _ in choice.pieces]

    def finish_choice(self, choice: _Choice) -> bytes:
        return orjson.dumps(_text_choice(choice.index, "", choice.finish_reason))


def _text_choice(index: int, text: str, finish: str | None) -> JSONObject:
    return {"text": text, "index": index, "logprobs": None, "finish_reason": finish}


@lru_cache(maxsize=4096)
def _text_delta(index: int, text: str) -> bytes:
    return orjson.dumps(_text_choice(index, text, None))


# ------------------------------------------------------------------------------------------------ sending


async def _until_disconnect(receive: Receive, recorded: RecordedRequest | None = None) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    if recorded is not None:
        recorded.mark_disconnected()


class _FrameStream(Response):
    """Sends prepared frames with the knobs' timing, and breaks off the way a stream fault asks.

    Without ``ttft_ms``/``tokens_per_second`` all frames go out in one write: at benchmark rates that is much
    cheaper, and a relay must cope with any split of the byte stream anyway.
    """

    def __init__(
        self,
        frames: list[Frame],
        knobs: SimKnobs,
        headers: RawHeaders,
        media_type: str,
        recorded: RecordedRequest | None = None,
    ) -> None:
        self.status_code, self.media_type, self.background = 200, media_type, None
        self.init_headers()
        self.raw_headers += headers
        self.frames, self.knobs, self.recorded = frames, knobs, recorded

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        knobs = self.knobs
        fault = knobs.fault if knobs.fault in STREAM_FAULTS or knobs.fault in ("hang", "error") else None
        frames = self.frames if fault is None else self.frames[: knobs.fault_after]
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if knobs.ttft_ms or knobs.tokens_per_second or fault == "hang":
            disconnected = asyncio.ensure_future(_until_disconnect(receive, self.recorded))
            try:
                if not await self._send_paced(frames, send, disconnected) or fault == "hang":
                    await disconnected
                    return
            finally:
                disconnected.cancel()
        elif frames:
            await send({"type": "http.response.body", "body": b"".join(f for f, _ in frames), "more_body": True})
        if fault == "reset":
            raise SimulatedConnectionReset(f"simulated reset after {len(frames)} events")
        tail = {"malformed": b"data: {not json\n\n", "error": encode_data(_STREAM_ERROR)}.get(fault or "", b"")
        await send({"type": "http.response.body", "body": tail, "more_body": False})

    async def _send_paced(self, frames: list[Frame], send: Send, disconnected: asyncio.Future[None]) -> bool:
        """False if the client went away. ``ttft_ms`` goes before the first token, pacing before the rest."""
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


# ------------------------------------------------------------------------------------------------ the app


def _mask(key: str) -> str:
    """How OpenAI shows a wrong key: never the whole of it."""
    return key[:3] + "*" * (len(key) - 7) + key[-4:] if len(key) >= 12 else "*" * len(key)


def _bearer(request: Request) -> str | None:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return (key.strip() or None) if scheme.lower() == "bearer" else None


def _parse_body(raw: bytes) -> JSONObject:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        raise InvalidRequest(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
            "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not "
            "valid JSON.)",
            None,
        )
    return body


class _OpenAISimulator:
    """The routes and their shared machinery: auth, parsing, knobs, faults, headers and ids."""

    def __init__(self, state: SimulatorState, models: Sequence[str]) -> None:
        self.state = state
        self._rng = Random()
        self._models = {
            m: {
                "id": m,
                "object": "model",
                "created": _MODEL_CREATED.get(m, 1698785189),
                "owned_by": "system",
            }
            for m in models
        }
        self._model_list = orjson.dumps({"object": "list", "data": list(self._models.values())})

    def _id(self, prefix: str, length: int) -> str:
        return prefix + base64.b64encode(self._rng.randbytes(length)).translate(_ID_ALPHABET)[:length].decode()

    def headers(self, call: _Call, **extra: str) -> RawHeaders:
        """Headers of every response (O5): a request id, the processing time, version and rate limits."""
        elapsed = int((time.perf_counter() - call.started) * 1000)
        dynamic = [
            (b"x-request-id", b"req_%032x" % self._rng.getrandbits(128)),
            (b"openai-processing-ms", b"%d" % elapsed),
        ]
        if not extra:
            return dynamic + _STATIC_HEADERS
        merged = {k.decode(): v.decode() for k, v in _STATIC_HEADERS} | extra
        return dynamic + [(k.encode("latin-1"), v.encode("latin-1")) for k, v in merged.items()]

    def json_response(self, call: _Call, content: bytes, status: int = 200, **extra: str) -> Response:
        response = Response(content, status, media_type="application/json")
        response.raw_headers += self.headers(call, **extra)
        return response

    def error(
        self, call: _Call, status: int, spec: tuple[str, str, str | None, str | None], **headers: str
    ) -> Response:
        message, kind, param, code = spec
        body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
        return self.json_response(call, orjson.dumps(body, option=orjson.OPT_INDENT_2), status, **headers)

    def endpoint(self, handler: Callable[[_Call], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a route: record the request, check the key, parse the body, ``InvalidRequest`` -> 400."""

        async def run(request: Request) -> Response:
            call = _Call(request, time.perf_counter())
            raw = await request.body()
            call.recorded = self.state.record(request, raw)
            key = _bearer(request)
            if not self.state.key_ok(key):
                return self._unauthorized(call, key)
            try:
                if request.method == "POST":
                    call.body = _parse_body(raw)
                return await handler(call)
            except InvalidRequest as invalid:
                return self.error(call, 400, (invalid.message, "invalid_request_error", invalid.param, invalid.code))

        return run

    def _unauthorized(self, call: _Call, key: str | None) -> Response:
        message = (
            _KEY_ERROR.format(key=_mask(key))
            if key
            else "You didn't provide an API key. You need to provide your API key in an Authorization header "
            "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
        return self.error(call, 401, (message, "invalid_request_error", None, "invalid_api_key"))

    def _fault(self, call: _Call, fault: str, knobs: SimKnobs) -> Response:
        message, kind, param, code = _FAULT_ERRORS[fault]
        retry = knobs.retry_after or 1
        model, key = call.body.get("model", "gpt-4o"), _mask(_bearer(call.request) or "")
        headers: dict[str, str] = {}
        if fault == "429":
            headers = {"retry-after": str(retry), "x-ratelimit-remaining-tokens": "0"}
        elif fault in ("503", "529") and knobs.retry_after is not None:
            headers = {"retry-after": str(retry)}
        spec = (message.format(model=model, key=key, retry=retry), kind, param, code)
        return self.error(call, int(fault), spec, **headers)

    async def _prelude(self, call: _Call, knobs: SimKnobs) -> Response | None:
        """``latency_ms``, then status faults and a non-stream ``hang``: what answers before generating."""
        if knobs.latency_ms:
            await asyncio.sleep(knobs.latency_ms / 1000)
        fault = "500" if knobs.fault == "error" and not call.stream else knobs.fault
        if fault in STATUS_FAULTS:
            return self._fault(call, fault, knobs)
        if fault == "hang" and not call.stream:
            await _until_disconnect(call.request.receive, call.recorded)
            return Response(status_code=499)
        return None

    async def _respond(self, call: _Call, knobs: SimKnobs, build: Callable[[], _Completion]) -> Response:
        """The common tail of the generating routes: prelude, build once, then a stream or one JSON body."""
        early = await self._prelude(call, knobs)
        if early is not None:
            return early
        result = build()
        if call.stream:
            frames = result.frames(call.include_usage)
            return _FrameStream(frames, knobs, self.headers(call), "text/event-stream; charset=utf-8", call.recorded)
        # A non-stream answer takes as long as generating the stream would have.
        generation = knobs.ttft_ms / 1000
        if knobs.tokens_per_second > 0:
            generation += sum(c.tokens for c in result.choices) / knobs.tokens_per_second
        if generation:
            await asyncio.sleep(generation)
        return self._json(call, knobs, result.body())

    def _json(self, call: _Call, knobs: SimKnobs, body: JSONObject) -> Response:
        content = orjson.dumps(body)
        if knobs.fault not in STREAM_FAULTS:
            return self.json_response(call, content)
        # A stream fault on a JSON body: half of it then a dropped connection (reset), half (cut), or junk.
        half = len(content) // 2
        frames = [(b"{not json", False)] if knobs.fault == "malformed" else [(content[:half], False)]
        broken = SimKnobs(fault="reset" if knobs.fault == "reset" else "cut", fault_after=1)
        return _FrameStream(frames, broken, self.headers(call), "application/json")

    def _envelope(self, body: JSONObject, chat: bool) -> _Envelope:
        model, created = str(body["model"]), int(time.time())
        if chat:
            extra = {"service_tier": "default", "system_fingerprint": FINGERPRINT}
            return _Envelope(
                self._id("chatcmpl-", 29), created, model, "chat.completion", "chat.completion.chunk", extra
            )
        return _Envelope(self._id("cmpl-", 29), created, model, "text_completion", "text_completion")

    # ---------------------------------------------------------------------------------------- routes

    async def chat_completions(self, call: _Call) -> Response:
        require(call.body, "model", "messages")
        prompt = chat_prompt(call.body["messages"], call.body.get("tools"))
        knobs = self.state.knobs_for(call.request, prompt.text)
        return await self._respond(call, knobs, lambda: self._chat(call.body, prompt, knobs))

    def _chat(self, body: JSONObject, prompt: Prompt, knobs: SimKnobs) -> _ChatCompletion:
        n = int_param(body, "n", 1, 1, 128)
        limit = int_param(body, "max_tokens", int_param(body, "max_completion_tokens", 0, 1, 1 << 30), 1, 1 << 30)
        top = int_param(body, "top_logprobs", 0, 0, 20) if body.get("logprobs") is True else None
        tools = tools_to_call(body, prompt, knobs)
        spoken = audio_request(body)
        choices: list[_Choice] = []
        for i in range(n):
            seed = prompt.seed if i == 0 else f"{prompt.seed}\x00{i}"
            if tools:
                calls = [_ToolCall(self._id("call_", 24), str(t.get("name")), tool_arguments(t, seed)) for t in tools]
                choices.append(_Choice(i, tool_calls=calls, finish_reason="tool_calls"))
            else:
                pieces, finish = cut_reply(body, reply_pieces(body, prompt, knobs, seed), limit)
                audio = None
                if spoken is not None:
                    transcript = "".join(text for text, _ in pieces)
                    audio = spoken_answer(spoken, transcript, seed, self._id("audio_", 24))
                choices.append(_Choice(i, pieces, finish_reason=finish, top_logprobs=top, audio=audio))
        usage = None if knobs.no_usage else _usage(prompt.tokens, choices, details=True)
        if usage is not None and (spoken is not None or input_audio_tokens(body["messages"])):
            _split_audio_usage(usage, input_audio_tokens(body["messages"]), choices)
        return _ChatCompletion(self._envelope(body, chat=True), choices, usage)

    async def completions(self, call: _Call) -> Response:
        require(call.body, "model", "prompt")
        prompts = legacy_prompts(call.body["prompt"])
        knobs = self.state.knobs_for(call.request, "\n".join(text for text, _ in prompts))
        return await self._respond(call, knobs, lambda: self._text(call.body, prompts, knobs))

    def _text(self, body: JSONObject, prompts: list[tuple[str, int]], knobs: SimKnobs) -> _TextCompletion:
        n, limit = int_param(body, "n", 1, 1, 128), int_param(body, "max_tokens", 0, 1, 1 << 30)
        choices: list[_Choice] = []
        for text, _ in prompts:
            for i in range(n):
                seed = strip_directives(text) + (f"\x00{i}" if i else "")
                reply = text_pieces(knobs.reply) if knobs.reply is not None else word_pieces(seed, knobs.output_tokens)
                pieces, finish = cut_reply(body, reply, limit)
                choices.append(_Choice(len(choices), pieces, finish_reason=finish))
        usage = None if knobs.no_usage else _usage(sum(t for _, t in prompts), choices, details=False)
        return _TextCompletion(self._envelope(body, chat=False), choices, usage)

    async def embeddings(self, call: _Call) -> Response:
        require(call.body, "model", "input")
        inputs = embedding_inputs(call.body["input"])
        knobs = self.state.knobs_for(call.request, "\n".join(key for key, _ in inputs))
        early = await self._prelude(call, knobs)
        return early or self._json(call, knobs, _embedding_body(call.body, inputs))

    async def list_models(self, call: _Call) -> Response:
        return self.json_response(call, self._model_list)

    async def retrieve_model(self, call: _Call) -> Response:
        model_id = call.request.path_params["model_id"]
        if model_id not in self._models:
            message = f"The model `{model_id}` does not exist or you do not have access to it."
            return self.error(call, 404, (message, "invalid_request_error", "model", "model_not_found"))
        return self.json_response(call, orjson.dumps(self._models[model_id]))


def _embedding_body(body: JSONObject, inputs: list[tuple[str, int]]) -> JSONObject:
    model = str(body["model"])
    native = EMBEDDING_DIMENSIONS.get(model, 1536)
    dimensions = int_param(body, "dimensions", native, 1, native)
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise InvalidRequest("Invalid 'encoding_format': expected 'float' or 'base64'.", "encoding_format")
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


def create_openai_simulator(state: SimulatorState | None = None, models: Sequence[str] = DEFAULT_MODELS) -> Starlette:
    """Build the fake OpenAI upstream (routes under ``/v1`` plus ``/_sim/*``) around one ``SimulatorState``.

    ``models`` is what ``GET /v1/models`` lists; chat and embeddings accept any model name, because deciding
    which models exist is the gateway's job. Models routes read no knobs, so they never take a queued fault.
    """
    sim = _OpenAISimulator(state or SimulatorState(), models)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await asyncio.get_running_loop().run_in_executor(None, warm_tokenizers)
        yield

    async def no_route(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        message = f"Invalid URL ({request.method} {request.url.path})"
        return sim.error(_Call(request, time.perf_counter()), status, (message, "invalid_request_error", None, None))

    routes = [
        Route("/v1/chat/completions", sim.endpoint(sim.chat_completions), methods=["POST"]),
        Route("/v1/completions", sim.endpoint(sim.completions), methods=["POST"]),
        Route("/v1/embeddings", sim.endpoint(sim.embeddings), methods=["POST"]),
        Route("/v1/responses", sim.endpoint(ResponsesEndpoint(sim).handle), methods=["POST"]),
        Route("/v1/rerank", sim.endpoint(RerankEndpoint(sim).handle), methods=["POST"]),
        Route("/v1/models", sim.endpoint(sim.list_models), methods=["GET"]),
        Route("/v1/models/{model_id:path}", sim.endpoint(sim.retrieve_model), methods=["GET"]),
        *MediaEndpoints(sim).routes(),
        *control_routes(sim.state),
    ]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: no_route, 405: no_route})
