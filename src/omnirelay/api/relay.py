"""One relayed call, end to end: choose channels, send, fail over before the first byte, stream back, meter.

Same-format calls pass bytes through (``formats.passthrough``); the response body or stream is forwarded as it
arrives and usage is read from it on the way. A usage row is queued for the batch writer when the call ends,
whichever way it ends: success, upstream error, client disconnect.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import structlog
from starlette.responses import Response, StreamingResponse

from omnirelay.billing import tokens
from omnirelay.errors import ErrorCode, GatewayError
from omnirelay.formats.passthrough import (
    OpenAIPassthroughStream,
    ensure_stream_usage,
    openai_usage_to_usage,
    replace_model,
)
from omnirelay.formats.sse import encode_data
from omnirelay.formats.usage import Usage
from omnirelay.gateway import Gateway
from omnirelay.providers.kinds import CHANNEL_KINDS, WireFormat
from omnirelay.providers.upstream import open_upstream
from omnirelay.routing.registry import Candidate
from omnirelay.store.snapshot import KeyRecord

log = structlog.get_logger(__name__)

OPENAI_PATHS = {"chat": "/chat/completions", "completions": "/completions", "embeddings": "/embeddings"}
MAX_ATTEMPTS = 3
ERROR_BODY_LIMIT = 64 * 1024
STREAM_READ_SIZE = 64 * 1024


def new_request_id() -> str:
    return "req_" + os.urandom(12).hex()


@dataclass(slots=True)
class Call:
    """What the surface parsed from the client's request, plus what the relay learns on the way."""

    surface: WireFormat
    endpoint: str
    key: KeyRecord
    model: str
    stream: bool
    body: dict[str, Any]
    raw: bytes
    client_ip: str | None
    request_id: str = field(default_factory=new_request_id)
    started: float = field(default_factory=time.perf_counter)
    candidate: Candidate | None = None
    upstream_seconds: float = 0.0
    first_token_at: float | None = None
    status: int = 0
    error_code: str | None = None

    def overhead_ms(self, now: float | None = None) -> float:
        end = now if now is not None else time.perf_counter()
        return max(0.0, (end - self.started - self.upstream_seconds) * 1000)


class Relay:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def handle(self, call: Call) -> Response:
        candidates = self.gateway.registry.candidates(call.model)
        last_error: GatewayError | None = None
        for candidate in candidates[:MAX_ATTEMPTS]:
            call.candidate = candidate
            try:
                return await self._attempt(call, candidate)
            except GatewayError as err:
                last_error = err
                if not err.retryable:
                    break
                log.info(
                    "upstream_failover", channel=candidate.channel.name, code=err.code.name, request=call.request_id
                )
        error = last_error or GatewayError(ErrorCode.no_channel, f"No channel is available for '{call.model}'.")
        self._finish(call, Usage(), error.status, error.code.name)
        raise error

    async def _attempt(self, call: Call, candidate: Candidate) -> Response:
        upstream_format = CHANNEL_KINDS[candidate.channel.type].wire_format
        if upstream_format != call.surface:
            raise GatewayError(
                ErrorCode.not_implemented,
                f"Calling a {upstream_format} channel from the {call.surface} API is not supported yet.",
            )
        body, hide_usage = call.raw, False
        if call.stream and call.endpoint != "embeddings":
            body, hide_usage = ensure_stream_usage(body, call.body)
        body = replace_model(body, call.body, candidate.upstream_model)
        sent = time.perf_counter()
        response = await open_upstream(self.gateway.http, candidate, OPENAI_PATHS[call.endpoint], body)
        call.upstream_seconds += time.perf_counter() - sent
        if response.status >= 400:
            raise await self._upstream_error(call, candidate, response)
        if call.stream:
            return self._stream(call, response, OpenAIPassthroughStream(hide_usage))
        return await self._complete(call, response)

    async def _complete(self, call: Call, response: aiohttp.ClientResponse) -> Response:
        reading = time.perf_counter()
        try:
            payload = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise GatewayError(ErrorCode.upstream_error, "The upstream response was cut short.") from exc
        finally:
            response.release()
        call.upstream_seconds += time.perf_counter() - reading
        usage = self._usage_of_body(call, payload)
        call.status = 200
        headers = {"x-request-id": call.request_id, "x-omnirelay-overhead-ms": f"{call.overhead_ms():.2f}"}
        self._finish(call, usage, 200, None)
        return Response(payload, status_code=200, headers=headers, media_type="application/json")

    def _usage_of_body(self, call: Call, payload: bytes) -> Usage:
        try:
            parsed = orjson.loads(payload)
        except orjson.JSONDecodeError:
            parsed = None
        raw_usage = parsed.get("usage") if isinstance(parsed, dict) else None
        if isinstance(raw_usage, dict):
            return openai_usage_to_usage(raw_usage)
        produced: list[str] = []
        if isinstance(parsed, dict):
            for choice in parsed.get("choices") or ():
                message = choice.get("message") or {}
                produced.append(message.get("content") or choice.get("text") or "")
        return self._estimate(call, produced)

    def _estimate(self, call: Call, produced: list[str]) -> Usage:
        """The upstream gave no usage: count both sides offline so the call is still billed."""
        if call.endpoint == "embeddings":
            prompt = tokens.count_openai_text_input(call.model, call.body.get("input"))
        else:
            prompt = tokens.count_openai_chat_prompt(call.model, call.body)
        completion = tokens.count_completion_text(call.model, "".join(produced)) if produced else 0
        return Usage(input_tokens=prompt, output_tokens=completion, estimated=True)

    def _stream(self, call: Call, response: aiohttp.ClientResponse, tap: OpenAIPassthroughStream) -> Response:
        headers = {
            "x-request-id": call.request_id,
            "x-omnirelay-overhead-ms": f"{call.overhead_ms():.2f}",
            "cache-control": "no-cache",
            "x-accel-buffering": "no",
        }
        return StreamingResponse(
            self._relay_stream(call, response, tap), headers=headers, media_type="text/event-stream; charset=utf-8"
        )

    async def _relay_stream(
        self, call: Call, response: aiohttp.ClientResponse, tap: OpenAIPassthroughStream
    ) -> AsyncIterator[bytes]:
        status, error_code = 200, None
        try:
            async for chunk in response.content.iter_any():
                out = tap.feed(chunk)
                if tap.got_content and call.first_token_at is None:
                    call.first_token_at = time.perf_counter()
                if out:
                    yield out
            tail = tap.finish()
            if tail:
                yield tail
            if tap.error is not None:
                status, error_code = 502, "upstream_stream_error"
            elif not tap.finished:
                status, error_code = 502, "upstream_stream_cut"
        except (aiohttp.ClientError, TimeoutError):
            status, error_code = 502, "upstream_stream_broken"
            yield encode_data(
                orjson.dumps(
                    {
                        "error": {
                            "message": "The upstream stream broke off before it finished.",
                            "type": "server_error",
                            "param": None,
                            "code": "upstream_error",
                        }
                    }
                )
            )
        except asyncio.CancelledError:
            status, error_code = 499, "client_disconnected"
            raise
        finally:
            response.release()
            usage = tap.usage if tap.usage is not None else self._estimate(call, tap.produced)
            self._finish(call, usage, status, error_code)

    async def _upstream_error(self, call: Call, candidate: Candidate, response: aiohttp.ClientResponse) -> GatewayError:
        try:
            raw = await response.content.read(ERROR_BODY_LIMIT)
        except (aiohttp.ClientError, TimeoutError):
            raw = b""
        finally:
            response.release()
        code = ErrorCode.from_upstream_status(response.status)
        channel = candidate.channel.name
        if response.status in (401, 403):
            return GatewayError(code, f"Upstream channel '{channel}' rejected its credentials.")
        message, upstream_type, param = _openai_error_fields(raw)
        message = _scrub(message or f"Upstream channel '{channel}' answered HTTP {response.status}.", candidate)
        retry_after = _retry_after(response.headers.get("retry-after"))
        status = response.status if 400 <= response.status < 500 and response.status not in (401, 403) else None
        return GatewayError(
            code, message, param=param, status=status, retry_after=retry_after, type_override=upstream_type
        )

    def _finish(self, call: Call, usage: Usage, status: int, error_code: str | None) -> None:
        now = time.perf_counter()
        candidate = call.candidate
        self.gateway.usage.record(
            {
                "request_id": call.request_id,
                "created_at": datetime.now(UTC),
                "key_id": call.key.id,
                "account_id": call.key.account_id,
                "endpoint": call.endpoint,
                "model": call.model,
                "upstream_model": candidate.upstream_model if candidate else None,
                "channel_id": candidate.channel.id if candidate else None,
                "stream": call.stream,
                "status_code": status,
                "error_code": error_code,
                "prompt_tokens": usage.input_tokens,
                "completion_tokens": usage.output_tokens,
                "cached_tokens": usage.cached_input_tokens,
                "reasoning_tokens": usage.reasoning_tokens,
                "usage_estimated": usage.estimated,
                "cost_micros": 0,
                "latency_ms": round((now - call.started) * 1000),
                "ttft_ms": round((call.first_token_at - call.started) * 1000) if call.first_token_at else None,
                "overhead_ms": round(call.overhead_ms(now)),
                "client_ip": call.client_ip,
            }
        )


def _openai_error_fields(raw: bytes) -> tuple[str | None, str | None, str | None]:
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, None, None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict):
        return None, None, None
    message = error.get("message")
    return (
        message if isinstance(message, str) else None,
        error.get("type") if isinstance(error.get("type"), str) else None,
        error.get("param") if isinstance(error.get("param"), str) else None,
    )


def _scrub(message: str, candidate: Candidate) -> str:
    """An upstream may quote its key back (in full or in part); never let that reach a client."""
    key = candidate.api_key
    if key and len(key) >= 8:
        for fragment in (key, key[:8], key[-6:]):
            message = message.replace(fragment, "***")
    return message


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None
