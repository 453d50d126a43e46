"""Sending a request to an upstream over the shared connection pool (``http1``), within the channel's time limits.

Limits per channel (``ChannelRecord``): ``connect_timeout_s`` for the connection; ``first_byte_limit`` until the
response headers and, for a stream, its first chunk; ``idle_limit`` between two chunks of a stream; ``timeout_s``
for the whole call; and the call's own deadline (``request_deadline_s``) on everything before the first byte.
They ride on the response's read timer (armed for each wait on the upstream: first the first-byte limit, then,
once a stream flows, the idle limit), plus one timer per call for the total, so they cost the hot path next to
nothing.

Failures are classified here, once: a refused or reset connection is ``upstream_error`` (502), a timeout
``upstream_timeout`` (504), an error answer by its status and structured body (``classify_answer``). Messages
name the channel, never its URL credentials or keys.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import aiohttp

from omnirelay.errors import ErrorCode, GatewayError
from omnirelay.formats.errors import UpstreamError, upstream_error
from omnirelay.providers.http1 import SizedPayload, UpstreamPool, UpstreamResponse
from omnirelay.providers.kinds import CHANNEL_KINDS, WireFormat
from omnirelay.routing.registry import Candidate
from omnirelay.store.snapshot import ChannelRecord

ERROR_BODY_LIMIT = 64 * 1024


def create_pool(limit: int = 1000) -> UpstreamPool:
    """The relay's connections to upstreams."""
    return UpstreamPool(limit=limit)


def create_session(limit: int = 1000) -> aiohttp.ClientSession:
    """Everything else's HTTP client (task vendors, webhooks, media fetches)."""
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=60)
    # Bodies are decompressed here and re-sent plain: the client-facing response sets its own encoding headers.
    return aiohttp.ClientSession(connector=connector, auto_decompress=True, skip_auto_headers=("User-Agent",))


def _timeout_error(channel: ChannelRecord, what: str) -> GatewayError:
    return GatewayError(ErrorCode.upstream_timeout, f"upstream channel '{channel.name}' {what}")


async def open_upstream(
    pool: UpstreamPool,
    candidate: Candidate,
    path: str,
    body: bytes | SizedPayload,
    *,
    extra_headers: dict[str, str] | None = None,
    method: str = "POST",
    deadline: float | None = None,
) -> UpstreamResponse:
    """Send the request and return once the response headers arrived, within the channel's first-byte limit and
    ``deadline`` (``loop.time()``); the caller reads and releases the body."""
    channel = candidate.channel
    kind = CHANNEL_KINDS[channel.type]
    headers = {"Content-Type": "application/json", **channel.headers, **kind.auth_headers(candidate.api_key)}
    if extra_headers:
        headers.update(extra_headers)
    wait = channel.first_byte_limit
    if deadline is not None:
        left = deadline - asyncio.get_running_loop().time()
        if left < wait:
            wait = left if left > 0.001 else 0.001
    try:
        return await pool.request(
            method,
            channel.base_url + path,
            headers,
            body,
            connect_timeout=channel.connect_timeout_s,
            read_timeout=wait,
        )
    except TimeoutError as exc:
        raise _timeout_error(channel, "timed out") from exc
    except (OSError, ValueError) as exc:
        raise GatewayError(
            ErrorCode.upstream_error, f"upstream channel '{channel.name}' is unreachable ({type(exc).__name__})"
        ) from exc


class _TotalLimit:
    """Closes the response when the call's total time is up (one timer per call)."""

    __slots__ = ("_handle", "_response", "expired")

    def __init__(self, response: UpstreamResponse, at: float) -> None:
        self._response = response
        self.expired = False
        self._handle = asyncio.get_running_loop().call_at(at, self._expire)

    def _expire(self) -> None:
        self.expired = True
        self._response.close()

    def stop(self) -> None:
        self._handle.cancel()


async def read_answer(response: UpstreamResponse, channel: ChannelRecord, sent: float) -> bytes:
    """A whole (non-stream) body, by the channel's total limit counted from ``sent`` (``loop.time()``)."""
    if response.done:  # the usual case: the body came with the head (its connection is back in the pool)
        return await response.read()
    total = _TotalLimit(response, sent + channel.timeout_s)
    try:
        return await response.read()
    except OSError as exc:
        if total.expired or isinstance(exc, TimeoutError):
            raise _timeout_error(channel, "did not finish its answer in time") from exc
        raise GatewayError(ErrorCode.upstream_error, "The upstream response was cut short.") from exc
    finally:
        total.stop()
        response.release()


async def read_error_body(response: UpstreamResponse, channel: ChannelRecord) -> bytes:
    """The start of an error answer's body (enough to classify it); the first-byte limit still bounds each
    read."""
    try:
        return await response.read(ERROR_BODY_LIMIT)
    except OSError:
        return b""
    finally:
        response.release()


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def classify_answer(
    fmt: WireFormat, status: int, headers: Mapping[str, str], raw: bytes
) -> tuple[ErrorCode, UpstreamError, float | None]:
    """An upstream's error answer: the gateway code, what its body said, and how long it asked us to wait."""
    parsed = upstream_error(fmt, status, raw)
    code = ErrorCode.from_upstream(status, parsed.code)
    return code, parsed, retry_after_seconds(headers.get("retry-after")) or parsed.retry_after


class StreamWatchdog:
    """A streamed answer's limits: the first chunk within the first-byte limit (the response's read timer, still
    set from the request), then the idle limit between chunks (the same timer, re-set by ``flowing``), and the
    total (a timer of its own that closes the response, which wakes the pending read with an error)."""

    __slots__ = ("_channel", "_response", "_total")

    def __init__(self, response: UpstreamResponse, channel: ChannelRecord, sent: float) -> None:
        self._response = response
        self._channel = channel
        self._total = _TotalLimit(response, sent + channel.timeout_s)

    def flowing(self) -> None:
        """The first chunk came: from now on the idle limit applies between reads."""
        self._response.read_timeout = self._channel.idle_limit

    def stop(self) -> None:
        self._total.stop()

    def error(self, exc: BaseException) -> GatewayError:
        """What a failed read of this stream means: a time limit broken, or the upstream breaking off."""
        if self._total.expired or isinstance(exc, TimeoutError):
            return _timeout_error(self._channel, "stalled mid-stream")
        return GatewayError(ErrorCode.upstream_error, f"upstream channel '{self._channel.name}' broke off its stream")


async def first_chunk(response: UpstreamResponse, watchdog: StreamWatchdog, channel: ChannelRecord) -> bytes:
    """A stream's first chunk (b"" if it ended at once); a failure here can still fail over."""
    try:
        chunk = await response.readany()
    except OSError as exc:
        watchdog.stop()
        response.close()
        if isinstance(exc, TimeoutError):
            raise _timeout_error(channel, "sent nothing in time") from exc
        raise watchdog.error(exc) from exc
    watchdog.flowing()
    return chunk
