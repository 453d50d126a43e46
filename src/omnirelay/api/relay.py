"""One relayed call, end to end: choose channels, send, fail over before the first byte, stream back, meter.

When the client's format equals the channel's, bytes pass through (``formats.passthrough``): only the model name
changes, and the answer is forwarded as it arrives while usage is read from it on the way. Otherwise
``formats.translate`` converts the request, the answer and every stream event. Either way a usage row is queued
for the batch writer when the call ends, however it ends: success, upstream error, client disconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import structlog
from starlette.responses import Response

from omnirelay.api import request_id as request_ids
from omnirelay.api.admission import Admission, Ticket
from omnirelay.api.front import RelayResponse, RelayStream, content_type
from omnirelay.api.request_id import new_request_id
from omnirelay.billing import tokens
from omnirelay.billing.meters import Meter
from omnirelay.errors import Blame, ErrorCode, GatewayError
from omnirelay.formats.anthropic_messages import anthropic_usage_to_ir
from omnirelay.formats.errors import error_event
from omnirelay.formats.gemini import gemini_usage_to_ir
from omnirelay.formats.ir import FetchedMedia, NeedsFetch, TranslationError, UnsupportedField
from omnirelay.formats.ir import InvalidRequest as TranslationInvalid
from omnirelay.formats.openai_chat import openai_usage_to_ir
from omnirelay.formats.openai_responses import responses_field, responses_usage_to_ir
from omnirelay.formats.passthrough import ObservedStream, OpenAIPassthroughStream, ensure_stream_usage, replace_model
from omnirelay.formats.rerank import rerank_usage_to_ir
from omnirelay.formats.responses_stream import ResponsesPassthroughStream
from omnirelay.formats.translate import (
    CallContext,
    StreamTranslator,
    parse_response,
    render_response,
    translate_request,
    translate_responses_request,
)
from omnirelay.formats.usage import Usage
from omnirelay.gateway import Gateway
from omnirelay.metrics import CallStats
from omnirelay.providers.http1 import UpstreamResponse
from omnirelay.providers.kinds import CHANNEL_KINDS, TRANSLATABLE, WireFormat
from omnirelay.providers.media import fetch_media
from omnirelay.providers.upstream import (
    StreamWatchdog,
    classify_answer,
    first_chunk,
    open_upstream,
    read_answer,
    read_error_body,
)
from omnirelay.providers.wire import upstream_path
from omnirelay.routing.registry import Candidate, RoutePlan
from omnirelay.store.snapshot import KeyRecord
from omnirelay.tracing import CallTrace, create_tracer

log = structlog.get_logger(__name__)


STREAM_HEADERS = ((b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no"))
"""A stream's answer: not to be cached or held back by a proxy (nginx buffers unless told)."""

# Where each format keeps usage in a whole (non-stream) response body.
USAGE_FIELDS: dict[WireFormat, tuple[str, Any]] = {
    "openai": ("usage", openai_usage_to_ir),
    "anthropic": ("usage", anthropic_usage_to_ir),
    "gemini": ("usageMetadata", gemini_usage_to_ir),
}

# Usage in whole bodies of OpenAI endpoints whose shape differs from chat's: a reader of the parsed body.
ENDPOINT_USAGE: dict[str, Callable[[dict[str, Any]], Usage | None]] = {
    "responses": lambda body: responses_usage_to_ir(body["usage"]) if isinstance(body.get("usage"), dict) else None,
    "rerank": rerank_usage_to_ir,
}

# Offline prompt counters per client format, for calls whose upstream reports no usage.
PROMPT_COUNTERS: dict[WireFormat, Any] = {
    "openai": tokens.count_openai_chat_prompt,
    "anthropic": tokens.count_anthropic_prompt,
    "gemini": tokens.count_gemini_prompt,
}


@contextlib.contextmanager
def translation_errors(
    fetched: dict[str, FetchedMedia] | None, *, media_param: str, field_name: Callable[[str], str] = str
) -> Iterator[None]:
    """A translator's refusals as the client's 400, naming the field as the client's format spells it
    (``field_name``). ``NeedsFetch`` goes on up, unless the media were fetched already and still did not fit."""
    try:
        yield
    except UnsupportedField as exc:
        field = field_name(exc.field)
        message = exc.message if field == exc.field else exc.message.replace(f"'{exc.field}'", f"'{field}'", 1)
        raise GatewayError(ErrorCode.invalid_request, message, param=field) from None
    except TranslationInvalid as exc:
        raise GatewayError(ErrorCode.invalid_request, exc.message, param=exc.param) from None
    except NeedsFetch:
        if fetched is not None:
            raise GatewayError(
                ErrorCode.invalid_request, "Images given by URL could not all be inlined.", param=media_param
            ) from None
        raise
    except TranslationError as exc:
        raise GatewayError(ErrorCode.invalid_request, str(exc)) from None


def call_request_id() -> str:
    """The id ``RelayFront`` bound for this request (the client's, when sane), else a new one."""
    return request_ids.current.get() or new_request_id()


class StreamTap(Protocol):
    """What the relay needs of a stream handler, passthrough or translating."""

    @property
    def usage(self) -> Usage | None: ...

    @property
    def produced(self) -> list[str]: ...

    @property
    def finished(self) -> bool: ...

    @property
    def error(self) -> object | None:
        """The upstream's mid-stream error event, if it sent one."""

    def feed(self, chunk: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class RawStream:
    """A binary answer (speech audio, or its SSE form) relayed chunk by chunk as it arrives. Its cost comes from
    the call's meter, which reads the end of the stream once it is complete (SSE speech reports usage last)."""

    finished = True
    error: object | None = None
    TAIL = 65536

    def __init__(self, meter: Meter | None = None) -> None:
        self.usage: Usage | None = Usage()
        self.produced: list[str] = []
        self._meter = meter
        self._tail = b""

    def feed(self, chunk: bytes) -> bytes:
        self._tail = (self._tail + chunk)[-self.TAIL :]
        return chunk

    def finish(self) -> bytes:
        if self._meter is not None:
            self.usage = self._meter.read(self._tail)
        return b""


@dataclass(slots=True)
class Call:
    """What the surface parsed from the client's request, plus what the relay learns on the way."""

    surface: WireFormat
    endpoint: str
    """``chat`` (any format's chat call), or a format-specific operation (``embeddings``, ``completions``...)."""
    key: KeyRecord
    model: str
    stream: bool
    body: dict[str, Any]
    raw: bytes
    client_ip: str | None
    gemini_sse: bool = True
    """Gemini clients: ``alt=sse`` framing, else the JSON-array stream."""
    forward_headers: dict[str, str] = field(default_factory=dict)
    """Client headers for an upstream of the client's own format (``anthropic-version``, ``anthropic-beta``)."""
    request_id: str = field(default_factory=call_request_id)
    started: float = field(default_factory=time.perf_counter)
    candidate: Candidate | None = None
    ticket: Ticket | None = None
    prompt_tokens: int | None = None
    upstream_seconds: float = 0.0
    first_token_at: float | None = None
    finished: bool = False
    """Set by ``Relay._finish``: a call is settled and logged once, however many attempts it took."""
    meter: Meter | None = None
    """Unit-priced calls (images, audio, speech, moderations): reserves and settles instead of token pricing."""
    raw_stream: bool = False
    """The answer is binary (speech): relayed as it arrives with the upstream's content type, no SSE handling."""
    rebuild: Callable[[str], bytes] | None = None
    """The body for another upstream model name, when it is not JSON (a multipart upload)."""
    streaming: bool = False
    """A stream is being relayed to the client (counted in ``CallStats.streams`` until ``_finish``)."""
    trace: CallTrace | None = None
    """The call's spans, when tracing is on (``omnirelay.tracing``)."""

    def overhead_ms(self, now: float | None = None) -> float:
        end = now if now is not None else time.perf_counter()
        spent = (end - self.started - self.upstream_seconds) * 1000
        return spent if spent > 0.0 else 0.0  # not max(): builtins parsing keyword arguments cost more than this


@dataclass(slots=True)
class Prepared:
    """The upstream request for one attempt and how to read its answer."""

    path: str
    body: bytes
    upstream_format: WireFormat
    context: CallContext | None = None
    """Set when translating."""
    hide_usage: bool = False


class Relay:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.admission = Admission(gateway.billing, gateway.limiter)
        self.stats = CallStats()
        self.tracer = create_tracer(gateway.settings.tracing)
        """None when tracing is off: then a None check is all tracing costs a call."""

    async def handle(self, call: Call) -> Response:
        plan = self.gateway.router.plan(call.model)
        if self.tracer is not None:
            call.trace = self.tracer.start(call.surface, call.endpoint, call.model, call.stream, call.started)
        self.stats.in_flight += 1  # back down in ``_finish``
        try:
            call.ticket = await self.admission.admit(
                # A client's id may repeat (retries, a tracing system's reuse): the budget hold needs a unique one.
                request_id=new_request_id() if request_ids.supplied.get() else call.request_id,
                key=call.key,
                surface=call.surface,
                model=call.model,
                upstream_model=plan.primary_upstream_model,
                body=call.body,
                prompt_tokens=lambda: self._prompt_tokens(call),
                meter=call.meter,
            )
        except GatewayError as err:
            self._finish(call, Usage(), err.status, err.code.name)
            self.stats.refused(err.status, "admission")
            err.headers["x-request-id"] = call.request_id  # the front counts errors without one as pre-call refusals
            raise
        try:
            return await self._try_candidates(call, plan)
        except GatewayError as err:
            err.headers.update(call.ticket.headers)
            err.headers["x-request-id"] = call.request_id
            raise

    async def _try_candidates(self, call: Call, plan: RoutePlan) -> Response:
        """Attempts in the plan's order until one answers, or a failure the next candidate cannot help with, or
        ``max_attempts``, or the deadline. Only failures before the first byte reach this loop, so the call is
        billed once, for the attempt that answered (or for nothing)."""
        router = self.gateway.router
        policy = router.policy
        loop = asyncio.get_running_loop()
        deadline = loop.time() + policy.deadline_s - (time.perf_counter() - call.started)
        last_error: GatewayError | None = None
        unfit: GatewayError | None = None
        blame: Blame | None = None
        attempts = 0
        try:
            while attempts < policy.max_attempts and (not attempts or loop.time() < deadline):
                candidate = plan.next(blame)
                if candidate is None:
                    break
                try:
                    prepared = await self._prepare_fetching(call, candidate)
                except GatewayError as err:  # this channel's format cannot carry the call; another one may
                    unfit, blame = unfit or err, Blame.channel
                    continue
                attempts += 1
                call.candidate = candidate
                if call.trace is not None:
                    call.trace.attempt(candidate)
                try:
                    return await self._attempt(call, candidate, prepared, deadline)
                except GatewayError as err:
                    if call.trace is not None:
                        call.trace.attempt_failed(err.code.name, err.status)
                    router.failed(candidate, err)
                    last_error, blame = err, err.code.spec.blame
                    if not err.retryable:
                        break
                    log.info(
                        "upstream_failover", channel=candidate.channel.name, code=err.code.name, request=call.request_id
                    )
        except asyncio.CancelledError:  # the client left (or the server gave up on the call) before an answer
            self._finish(call, Usage(), 499, "client_disconnected")
            raise
        error = last_error or unfit or plan.unavailable()
        self._finish(call, Usage(), error.status, error.code.name)
        raise error

    async def _prepare_fetching(self, call: Call, candidate: Candidate) -> Prepared:
        """``_prepare``, fetching image URLs first when the channel's format only takes inline bytes."""
        if candidate.channel.type not in CHANNEL_KINDS:  # a task vendor's channel: no chat-shaped call fits it
            raise GatewayError(
                ErrorCode.invalid_request,
                f"The model '{call.model}' is an asynchronous task model: submit it on its task route "
                "(POST /task/submit, /mj/submit/..., /v1/video/generations...).",
                param="model",
            )
        try:
            return self._prepare(call, candidate)
        except NeedsFetch as need:
            settings = self.gateway.settings
            fetched = await fetch_media(
                self.gateway.http,
                need.urls,
                max_bytes=settings.media_fetch_max_bytes,
                timeout_s=settings.media_fetch_timeout_s,
                allow_private=settings.media_fetch_allow_private,
            )
            return self._prepare(call, candidate, fetched)

    def _prepare(self, call: Call, candidate: Candidate, fetched: dict[str, FetchedMedia] | None = None) -> Prepared:
        """The upstream request for one attempt. Raises ``NeedsFetch`` when images given by URL must be inlined
        (and ``fetched`` does not have them yet)."""
        upstream_format = CHANNEL_KINDS[candidate.channel.type].wire_format
        model = candidate.upstream_model
        kind = CHANNEL_KINDS[candidate.channel.type]
        if call.endpoint == "responses" and not kind.responses_api:
            return self._translate_responses(call, candidate, upstream_format, fetched)
        if upstream_format == call.surface:
            body, hide_usage = call.raw, False
            if upstream_format == "openai" and call.stream and call.endpoint in ("chat", "completions"):
                body, hide_usage = ensure_stream_usage(body, call.body)
            if call.rebuild is not None:
                body = call.rebuild(model)
            elif upstream_format != "gemini":  # Gemini names the model in the URL
                body = replace_model(body, call.body, model)
            path = upstream_path(upstream_format, call.endpoint, model, call.stream, gemini_sse=call.gemini_sse)
            return Prepared(path, body, upstream_format, hide_usage=hide_usage)
        if call.endpoint != "chat" or upstream_format not in TRANSLATABLE:  # image vendors only pass through
            raise GatewayError(
                ErrorCode.not_implemented,
                f"'{call.endpoint}' calls to a {upstream_format} channel are not supported "
                f"(model '{call.model}' is served by one).",
            )
        with translation_errors(fetched, media_param="messages"):
            translated = translate_request(
                call.surface,
                upstream_format,
                call.body,
                model=call.model,
                upstream_model=model,
                stream=call.stream,
                gemini_sse=call.gemini_sse,
                created=int(time.time()),
                # Only an Anthropic client's message_start shows input tokens before the upstream reports them.
                input_tokens_estimate=self._prompt_tokens(call) if call.surface == "anthropic" else 0,
                response_model=call.model,
                fetched=fetched,
            )
        path = upstream_path(upstream_format, "chat", translated.model, translated.stream)
        return Prepared(path, translated.body, upstream_format, context=translated.context)

    def _translate_responses(
        self, call: Call, candidate: Candidate, upstream_format: WireFormat, fetched: dict[str, FetchedMedia] | None
    ) -> Prepared:
        """A Responses call to a channel without ``/v1/responses``: translated to the channel's chat."""
        with translation_errors(fetched, media_param="input", field_name=responses_field):
            translated = translate_responses_request(
                upstream_format,
                call.body,
                upstream_model=candidate.upstream_model,
                fetched=fetched,
                created=int(time.time()),
                response_model=call.model,
            )
        path = upstream_path(upstream_format, "chat", translated.model, translated.stream)
        return Prepared(path, translated.body, upstream_format, context=translated.context)

    async def _attempt(self, call: Call, candidate: Candidate, prepared: Prepared, deadline: float) -> Response:
        """One upstream call. Returns once the answer can go to the client: a whole body, or a stream whose first
        chunk arrived (so a channel that answers headers and then nothing still fails over)."""
        sent = time.perf_counter()
        sent_at = asyncio.get_running_loop().time()
        forward = call.forward_headers if prepared.context is None else None
        response = await open_upstream(
            self.gateway.upstreams,
            candidate,
            prepared.path,
            prepared.body,
            extra_headers=forward or None,
            deadline=deadline,
        )
        if response.status >= 400:
            call.upstream_seconds += time.perf_counter() - sent
            raise await self._upstream_error(call, candidate, prepared, response)
        if not call.stream:
            call.upstream_seconds += time.perf_counter() - sent
            return await self._complete(call, candidate, prepared, response, sent_at)
        watchdog = StreamWatchdog(response, candidate.channel, sent_at)
        first = await first_chunk(response, watchdog, candidate.channel)
        call.upstream_seconds += time.perf_counter() - sent
        if not first:
            watchdog.stop()
            response.release()
            raise GatewayError(
                ErrorCode.upstream_error, f"upstream channel '{candidate.channel.name}' sent an empty stream"
            )
        self.gateway.router.succeeded(candidate)
        if call.meter is not None:
            call.meter.delivered()
        tap: StreamTap
        if call.raw_stream:
            tap = RawStream(call.meter)
        elif prepared.context is not None:
            tap = StreamTranslator(prepared.context)
        elif call.endpoint == "responses":
            tap = ResponsesPassthroughStream()
        elif prepared.upstream_format == "openai":
            tap = OpenAIPassthroughStream(prepared.hide_usage)
        else:
            tap = ObservedStream(prepared.upstream_format)
        return self._stream(call, candidate, response, tap, watchdog, first)

    async def _complete(
        self, call: Call, candidate: Candidate, prepared: Prepared, response: UpstreamResponse, sent_at: float
    ) -> Response:
        reading = time.perf_counter()
        payload = await read_answer(response, candidate.channel, sent_at)
        call.upstream_seconds += time.perf_counter() - reading
        if prepared.context is not None:
            try:
                answer = parse_response(prepared.context, payload)
            except TranslationError as exc:
                raise GatewayError(
                    ErrorCode.upstream_error, "The upstream answered with a body it cannot read."
                ) from exc
            usage = answer.usage if answer.usage is not None else self._estimate(call, [])
            payload = orjson.dumps(render_response(prepared.context, answer))
        elif call.meter is not None:
            usage = call.meter.read(payload)
        else:
            usage = self._usage_of_body(call, prepared.upstream_format, payload)
        self.gateway.router.succeeded(candidate)
        headers = self._headers(call)
        self._finish(call, usage, 200, None)
        if call.meter is not None:  # transcripts may be text, srt or vtt
            return RelayResponse(payload, headers, content_type(response.headers.get("content-type")))
        return RelayResponse(payload, headers)

    def _usage_of_body(self, call: Call, fmt: WireFormat, payload: bytes) -> Usage:
        try:
            parsed = orjson.loads(payload)
        except orjson.JSONDecodeError:
            parsed = None
        special = ENDPOINT_USAGE.get(call.endpoint) if fmt == "openai" else None
        if special is not None and isinstance(parsed, dict):
            found = special(parsed)
            if found is not None:
                return found
        name, reader = USAGE_FIELDS[fmt]
        raw_usage = parsed.get(name) if isinstance(parsed, dict) else None
        if isinstance(raw_usage, dict):
            return reader(raw_usage)  # type: ignore[no-any-return]
        produced: list[str] = []
        if isinstance(parsed, dict) and fmt == "openai":
            for choice in parsed.get("choices") or ():
                message = choice.get("message") or {}
                produced.append(message.get("content") or choice.get("text") or "")
        return self._estimate(call, produced)

    def _prompt_tokens(self, call: Call) -> int:
        """Counted offline once per call: the reservation, the token window and any estimate use it."""
        if call.prompt_tokens is None:
            if call.endpoint in ("embeddings", "completions"):
                value = call.body.get("input", call.body.get("prompt"))
                call.prompt_tokens = tokens.count_openai_text_input(call.model, value)
            elif call.endpoint in ENDPOINT_PROMPTS:
                texts = ENDPOINT_PROMPTS[call.endpoint](call.body)
                call.prompt_tokens = tokens.count_openai_text_input(call.model, texts)
            else:
                call.prompt_tokens = int(PROMPT_COUNTERS[call.surface](call.model, call.body))
        return call.prompt_tokens

    def _estimate(self, call: Call, produced: list[str]) -> Usage:
        """The upstream gave no usage: count both sides offline so the call is still billed."""
        text = "".join(produced)
        completion = tokens.count_completion_text(call.model, text) if text else 0
        return Usage(input_tokens=self._prompt_tokens(call), output_tokens=completion, estimated=True)

    def _stream(
        self,
        call: Call,
        candidate: Candidate,
        response: UpstreamResponse,
        tap: StreamTap,
        watchdog: StreamWatchdog,
        first: bytes,
    ) -> Response:
        headers = self._headers(call)
        headers += STREAM_HEADERS
        media_type = b"text/event-stream; charset=utf-8"
        if call.surface == "gemini" and not call.gemini_sse:
            media_type = b"application/json; charset=utf-8"
        if call.raw_stream:
            media_type = content_type(response.headers.get("content-type"), b"application/octet-stream")
        stream = self._relay_stream(call, candidate, response, tap, watchdog, first)
        call.streaming = True
        self.stats.streams += 1
        return RelayStream(stream, headers, media_type)

    async def _relay_stream(
        self,
        call: Call,
        candidate: Candidate,
        response: UpstreamResponse,
        tap: StreamTap,
        watchdog: StreamWatchdog,
        first: bytes,
    ) -> AsyncIterator[bytes]:
        """Bytes reached the client from here on: a failure cannot fail over any more. It ends the stream with an
        error event in the client's format and counts against the channel; the call is billed for what was
        produced. A client that leaves closes the upstream connection at once."""
        status, error_code = 200, None
        failure: GatewayError | None = None
        try:
            out = tap.feed(first)
            if out:
                call.first_token_at = time.perf_counter()
                yield out
            while chunk := await response.readany():
                out = tap.feed(chunk)
                if out:
                    if call.first_token_at is None:
                        call.first_token_at = time.perf_counter()
                    yield out
            tail = tap.finish()
            if tail:
                yield tail
            if tap.error is not None:
                status, error_code = 502, "upstream_stream_error"
                failure = GatewayError(ErrorCode.upstream_error, "the upstream sent an error event")
            elif not tap.finished:
                status, error_code = 502, "upstream_stream_cut"
                failure = GatewayError(ErrorCode.upstream_error, "the upstream ended its stream early")
        except OSError as exc:
            failure = watchdog.error(exc)
            stalled = failure.code is ErrorCode.upstream_timeout
            status, error_code = (504, "upstream_stream_stalled") if stalled else (502, "upstream_stream_broken")
            tail = tap.finish() if isinstance(tap, StreamTranslator | ResponsesPassthroughStream) else b""
            if call.raw_stream:
                return  # audio has no error event: the client sees the body end early
            yield tail or error_event(
                call.surface,
                "upstream_timeout" if stalled else "upstream_error",
                "The upstream stream stalled and was ended."
                if stalled
                else "The upstream stream broke off before it finished.",
                gemini_sse=call.gemini_sse,
            )
        except (asyncio.CancelledError, GeneratorExit):
            status, error_code = 499, "client_disconnected"
            response.close()  # at once: the upstream stops generating for nobody
            raise
        finally:
            watchdog.stop()
            response.release()
            if failure is not None:
                self.gateway.router.failed(candidate, failure)
            usage = tap.usage if tap.usage is not None else self._estimate(call, tap.produced)
            self._finish(call, usage, status, error_code)

    async def _upstream_error(
        self, call: Call, candidate: Candidate, prepared: Prepared, response: UpstreamResponse
    ) -> GatewayError:
        raw = await read_error_body(response, candidate.channel)
        code, parsed, retry_after = classify_answer(prepared.upstream_format, response.status, response.headers, raw)
        channel = candidate.channel.name
        if code is ErrorCode.upstream_auth or response.status in (401, 403):
            return GatewayError(
                code, f"Upstream channel '{channel}' rejected its credentials.", upstream_status=response.status
            )
        if code is ErrorCode.upstream_quota:
            return GatewayError(
                code, f"Upstream channel '{channel}' has no credit left.", upstream_status=response.status
            )
        message = _scrub(parsed.message or f"Upstream channel '{channel}' answered HTTP {response.status}.", candidate)
        status = response.status if 400 <= response.status < 500 else None
        if code is ErrorCode.overloaded and call.surface != "anthropic":
            status = 503  # 529 is Anthropic's own; OpenAI and Google say overloaded with 503
        same_format = prepared.upstream_format == call.surface
        return GatewayError(
            code,
            message,
            param=parsed.param,
            status=status,
            retry_after=retry_after,
            type_override=parsed.vendor_type if same_format and call.surface == "openai" else None,
            upstream_status=response.status,
        )

    def _headers(self, call: Call) -> list[tuple[bytes, bytes]]:
        """The answer's own header lines, encoded once here (the front sends them as they are)."""
        headers = [
            (request_ids.HEADER, call.request_id.encode("latin-1")),
            (b"x-omnirelay-overhead-ms", b"%.2f" % call.overhead_ms()),
        ]
        ticket = call.ticket
        if ticket is not None and ticket.decision is not None:
            headers += ticket.header_lines()
        return headers

    def _finish(self, call: Call, usage: Usage, status: int, error_code: str | None) -> None:
        """The one place a call ends: settle its cost and queue its usage row (and ledger entry). Once."""
        if call.finished:
            return
        call.finished = True
        now = time.perf_counter()
        overhead_ms = call.overhead_ms(now)
        candidate = call.candidate
        cost = self.admission.settle(call.ticket, call.key, usage) if call.ticket is not None else 0
        stats = self.stats
        stats.in_flight -= 1
        if call.streaming:
            stats.streams -= 1
        stats.record(
            call.surface,
            call.endpoint,
            call.model,
            candidate.channel.name if candidate else None,
            status,
            error_code,
            usage,
            cost,
            now - call.started,
            call.first_token_at - call.started if call.first_token_at else None,
            overhead_ms / 1000,
        )
        if call.trace is not None:
            call.trace.end(status, error_code, usage)
        self.gateway.writer.record(
            (  # a UsageRow: the columns in store/usage_row.py's USAGE_COLUMNS order
                time.time_ns() // 1000,  # created_at, microseconds since the epoch
                call.stream,
                usage.estimated,
                call.request_id,
                call.key.id,
                call.key.account_id,
                f"{call.surface}.{call.endpoint}",
                call.model,
                candidate.upstream_model if candidate else None,
                candidate.channel.id if candidate else None,
                status,
                error_code,
                usage.input_tokens,
                usage.output_tokens,
                usage.cached_input_tokens,
                usage.reasoning_tokens,
                cost,
                round((now - call.started) * 1000),  # latency_ms
                round((call.first_token_at - call.started) * 1000) if call.first_token_at else None,  # ttft_ms
                round(overhead_ms),
                call.client_ip,
            )
        )


def _texts_of(value: object, out: list[str]) -> list[str]:
    """Every string inside a JSON value: a rough prompt for endpoints whose bodies are not chat messages."""
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, list):
        for item in value:
            _texts_of(item, out)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in ("type", "role", "id", "call_id", "image_url", "file_data", "data"):
                _texts_of(item, out)
    return out


# What to count as the prompt of endpoints with their own body shape (reservation and token limits only: the
# upstream's usage, or its own estimate, is what gets billed).
ENDPOINT_PROMPTS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "responses": lambda body: _texts_of([body.get("instructions"), body.get("input"), body.get("tools")], []),
    "rerank": lambda body: _texts_of([body.get("query"), body.get("documents")], []),
}


def _scrub(message: str, candidate: Candidate) -> str:
    """An upstream may quote its key back (in full or in part); never let that reach a client."""
    key = candidate.api_key
    if key and len(key) >= 8:
        for fragment in (key, key[:8], key[-6:]):
            message = message.replace(fragment, "***")
    return message
