"""The façade the gateway calls for a cross-format call: request out; response, stream or error back.

    upstream = translate_request("openai", "anthropic", raw_body, created=int(time.time()))
    # send upstream.body (for Gemini: to models/{upstream.model}:streamGenerateContent?alt=sse when streaming)
    client_bytes = translate_response(upstream.context, upstream_body)          # non-stream
    translator = StreamTranslator(upstream.context)                             # stream
    for chunk in upstream_chunks: send(translator.feed(chunk))
    send(translator.finish()); bill(translator.usage or count(translator.produced))
    status, body = translate_error(upstream.context, upstream_status, upstream_error_body)

Translation errors (``InvalidRequest``, ``UnsupportedField``, ``NeedsFetch``: the client's 400) come from
``translate_request`` only. ``translate_response`` reads upstream bodies leniently and raises only
``UpstreamUnreadable`` (a 502) for one it cannot read at all; a stream never raises: a broken event becomes the
client's error event.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from omnirelay.formats._json import loads_object
from omnirelay.formats.anthropic_messages import (
    JSON_TOOL,
    anthropic_request_to_ir,
    anthropic_response_to_ir,
    ir_to_anthropic_request,
    ir_to_anthropic_response,
)
from omnirelay.formats.anthropic_stream import AnthropicStreamDecoder, AnthropicStreamEncoder
from omnirelay.formats.errors import CODE_STATUS, error_body, upstream_error
from omnirelay.formats.gemini import (
    gemini_request_to_ir,
    gemini_response_to_ir,
    ir_to_gemini_request,
    ir_to_gemini_response,
)
from omnirelay.formats.gemini_stream import GeminiFrameReader, GeminiStreamDecoder, GeminiStreamEncoder
from omnirelay.formats.ir import (
    FetchedMedia,
    Format,
    InvalidRequest,
    IRRequest,
    IRResponse,
    JSONObject,
    StreamEnd,
    StreamError,
    StreamEvent,
    StreamStart,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    UnsupportedField,
    UpstreamUnreadable,
    UsageUpdate,
)
from omnirelay.formats.openai_chat import (
    ir_to_openai_request,
    ir_to_openai_response,
    openai_request_to_ir,
    openai_response_to_ir,
)
from omnirelay.formats.openai_responses import ir_to_responses_response, response_echo, responses_request_to_ir
from omnirelay.formats.openai_stream import OpenAIStreamDecoder, OpenAIStreamEncoder
from omnirelay.formats.responses_stream import ResponsesStreamEncoder
from omnirelay.formats.sse import SSEParser
from omnirelay.formats.usage import Usage


@dataclass(frozen=True, slots=True)
class CallContext:
    """What translating the answer needs to know about the request. Built by :func:`translate_request`."""

    client: Format
    upstream: Format
    stream: bool
    model: str | None = None
    """Model name shown to the client; None shows the upstream's own."""
    include_usage: bool = False
    """OpenAI clients: send the usage chunk (``stream_options.include_usage``)."""
    json_tool: bool = False
    """Anthropic upstream: structured output rides on the forced ``json_output`` tool."""
    gemini_sse: bool = True
    """Gemini clients: ``alt=sse`` framing, else the JSON-array stream."""
    created: int = 0
    """Unix seconds for OpenAI's ``created``; the gateway passes its clock (translators read none)."""
    input_tokens_estimate: int = 0
    """Anthropic clients of upstreams that report input usage late: the ``message_start`` figure."""
    responses: JSONObject | None = None
    """OpenAI Responses clients: the request fields their Response object echoes; None for Chat Completions."""


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    body: bytes
    model: str
    """The upstream model id (Gemini puts it in the URL)."""
    stream: bool
    context: CallContext
    request: IRRequest = field(repr=False)


REQUEST_PARSERS: dict[Format, Callable[[JSONObject, str | None, bool | None], IRRequest]] = {
    "openai": lambda body, model, stream: openai_request_to_ir(body, model=model),
    "anthropic": lambda body, model, stream: anthropic_request_to_ir(body, model=model),
    "gemini": lambda body, model, stream: gemini_request_to_ir(body, model=model or "", stream=bool(stream)),
}

REQUEST_ENCODERS: dict[Format, Callable[[IRRequest, Mapping[str, FetchedMedia] | None], JSONObject]] = {
    "openai": lambda request, fetched: ir_to_openai_request(request, fetched=fetched),
    "anthropic": lambda request, fetched: ir_to_anthropic_request(request, fetched=fetched),
    "gemini": lambda request, fetched: ir_to_gemini_request(request, fetched=fetched),
}


def translate_request(
    client: Format,
    upstream: Format,
    body: bytes | JSONObject,
    *,
    model: str | None = None,
    upstream_model: str | None = None,
    stream: bool | None = None,
    gemini_sse: bool = True,
    fetched: Mapping[str, FetchedMedia] | None = None,
    created: int = 0,
    input_tokens_estimate: int = 0,
    response_model: str | None = None,
) -> UpstreamRequest:
    """``model``/``stream``: the client's values when its format keeps them out of the body (Gemini's URL).
    ``upstream_model``: the name to send upstream (after ``model_map``). Raises InvalidRequest,
    UnsupportedField, or NeedsFetch (fetch ``exc.urls``, then call again with ``fetched=``)."""
    request = REQUEST_PARSERS[client](loads_object(body), model, stream)
    if stream is not None:
        request.stream = stream
    return _encode_for(
        upstream,
        request,
        upstream_model,
        fetched,
        client=client,
        model=response_model,
        include_usage=request.include_usage,
        gemini_sse=gemini_sse,
        created=created,
        input_tokens_estimate=input_tokens_estimate,
    )


def _encode_for(
    upstream: Format,
    request: IRRequest,
    upstream_model: str | None,
    fetched: Mapping[str, FetchedMedia] | None,
    **context: Any,
) -> UpstreamRequest:
    """The canonical request in the upstream's format, with the context its answer is translated back with."""
    if upstream_model:
        request.model = upstream_model
    out = REQUEST_ENCODERS[upstream](request, fetched)
    tools = out.get("tools")
    json_tool = (
        upstream == "anthropic"
        and isinstance(tools, list)
        and any(isinstance(t, dict) and t.get("name") == JSON_TOOL for t in tools)
    )
    call_context = CallContext(upstream=upstream, stream=request.stream, json_tool=json_tool, **context)
    return UpstreamRequest(orjson.dumps(out), request.model, request.stream, call_context, request)


def translate_responses_request(
    upstream: Format,
    body: bytes | JSONObject,
    *,
    upstream_model: str | None = None,
    fetched: Mapping[str, FetchedMedia] | None = None,
    created: int = 0,
    response_model: str | None = None,
) -> UpstreamRequest:
    """An OpenAI Responses request for a channel without ``/v1/responses`` (any format, chat-only OpenAI
    vendors included). Raises like :func:`translate_request`."""
    data = loads_object(body)
    request = responses_request_to_ir(data)
    return _encode_for(
        upstream,
        request,
        upstream_model,
        fetched,
        client="openai",
        model=response_model,
        created=created,
        responses=response_echo(data),
    )


# --- non-stream responses -----------------------------------------------------------------------------------


def parse_response(context: CallContext, body: bytes | JSONObject) -> IRResponse:
    """Raises UpstreamUnreadable when the body is not a response of the upstream's format."""
    try:
        data = body if isinstance(body, dict) else orjson.loads(body)
        if not isinstance(data, dict):
            raise UpstreamUnreadable("the upstream answered with something other than a JSON object")
        if context.upstream == "anthropic":
            return anthropic_response_to_ir(data, json_tool=context.json_tool)
        if context.upstream == "gemini":
            return gemini_response_to_ir(data)
        return openai_response_to_ir(data)
    except orjson.JSONDecodeError:
        raise UpstreamUnreadable("the upstream answered with invalid JSON") from None
    except (InvalidRequest, UnsupportedField) as exc:
        raise UpstreamUnreadable(f"the upstream answer could not be read: {exc}") from None


def render_response(context: CallContext, response: IRResponse) -> JSONObject:
    if context.model:
        response.model = context.model
    if context.responses is not None:
        return ir_to_responses_response(response, created=context.created, echo=context.responses)
    if context.client == "anthropic":
        return ir_to_anthropic_response(response)
    if context.client == "gemini":
        return ir_to_gemini_response(response)
    return ir_to_openai_response(response, created=context.created)


def translate_response(context: CallContext, body: bytes | JSONObject) -> bytes:
    """A 2xx upstream body → the client's body. Usage for billing: ``parse_response(...).usage``."""
    return orjson.dumps(render_response(context, parse_response(context, body)))


def translate_error(context: CallContext, status: int, body: bytes | JSONObject) -> tuple[int, bytes]:
    """A non-2xx upstream answer → (status, body) in the client's format. 529 stays 529 only for Anthropic."""
    parsed = upstream_error(context.upstream, status, body)
    out_status = CODE_STATUS.get(parsed.code, 502)
    if parsed.code == "overloaded" and context.client == "anthropic":
        out_status = 529
    return out_status, error_body(context.client, out_status, parsed.code, parsed.message, parsed.param)


# --- streams ------------------------------------------------------------------------------------------------


class _SSEFrames:
    __slots__ = ("_parser",)

    def __init__(self) -> None:
        self._parser = SSEParser()

    def feed(self, chunk: bytes) -> list[str]:
        return [event.data for event in self._parser.feed(chunk)]

    def flush(self) -> list[str]:
        return [event.data for event in self._parser.flush()]


Decoder = OpenAIStreamDecoder | AnthropicStreamDecoder | GeminiStreamDecoder
Encoder = OpenAIStreamEncoder | AnthropicStreamEncoder | GeminiStreamEncoder | ResponsesStreamEncoder


def stream_decoder(context: CallContext) -> Decoder:
    if context.upstream == "anthropic":
        return AnthropicStreamDecoder(json_tool=context.json_tool)
    if context.upstream == "gemini":
        return GeminiStreamDecoder()
    return OpenAIStreamDecoder()


def stream_encoder(context: CallContext) -> Encoder:
    if context.responses is not None:
        return ResponsesStreamEncoder(model=context.model, created=context.created, echo=context.responses)
    if context.client == "anthropic":
        return AnthropicStreamEncoder(model=context.model, input_tokens_estimate=context.input_tokens_estimate)
    if context.client == "gemini":
        return GeminiStreamEncoder(model=context.model, sse=context.gemini_sse)
    return OpenAIStreamEncoder(model=context.model, created=context.created, include_usage=context.include_usage)


class StreamReader:
    """Upstream stream bytes → IR events, recording along the way ``usage`` (the upstream's latest cumulative
    figures, None if it gave none), ``produced`` (text, reasoning and tool arguments, for counting when usage is
    missing), ``finished`` (the upstream ended properly) and ``error``. One per call."""

    __slots__ = ("_decoder", "_frames", "error", "finished", "produced", "usage")

    def __init__(self, upstream: Format, decoder: Decoder) -> None:
        self._frames: _SSEFrames | GeminiFrameReader = GeminiFrameReader() if upstream == "gemini" else _SSEFrames()
        self._decoder = decoder
        self.usage: Usage | None = None
        self.produced: list[str] = []
        self.finished = False
        self.error: StreamError | None = None

    def read(self, data: bytes) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for payload in self._frames.feed(data):
            events.extend(self._decoder.feed(payload))
        self._note(events)
        return events

    def close(self) -> list[StreamEvent]:
        """The upstream body ended (or the relay gave up on it)."""
        events: list[StreamEvent] = []
        for payload in self._frames.flush():
            events.extend(self._decoder.feed(payload))
        events.extend(self._decoder.close())
        self._note(events)
        return events

    def _note(self, events: list[StreamEvent]) -> None:
        for event in events:
            if isinstance(event, TextDelta | ThinkingDelta):
                self.produced.append(event.text)
            elif isinstance(event, ToolCallDelta):
                self.produced.append(event.arguments)
            elif isinstance(event, UsageUpdate):
                self.usage = event.usage
            elif isinstance(event, StreamStart):
                if event.usage is not None:
                    self.usage = event.usage
            elif isinstance(event, StreamEnd):
                self.finished = event.complete
            elif isinstance(event, StreamError):
                self.error = event


class StreamTranslator(StreamReader):
    """Upstream stream bytes → client stream bytes, incrementally; one per call.

    ``feed`` returns whatever the bytes so far complete (possibly ``b""``), ``finish`` ends the client stream:
    properly if the upstream did, else with the client format's error event.
    """

    __slots__ = ("_encoder",)

    def __init__(self, context: CallContext) -> None:
        super().__init__(context.upstream, stream_decoder(context))
        self._encoder = stream_encoder(context)

    def feed(self, data: bytes) -> bytes:
        return b"".join(self._encoder.encode(event) for event in self.read(data))

    def finish(self) -> bytes:
        return b"".join(self._encoder.encode(event) for event in self.close())
