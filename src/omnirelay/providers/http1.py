"""The relay's HTTP/1.1 client for upstream calls: keep-alive connections pooled per origin, each an asyncio
protocol whose responses httptools parses (llhttp, the parser uvicorn already runs for our own server side).

Why not aiohttp on this path: a relayed chat call spent ~3,000 Python opcodes inside aiohttp's
``ClientSession.request`` and its response (request and response objects, multidicts, yarl URLs, the payload
registry, timeout contexts, trace hooks), 38% of the gateway's Python work per call and more than the gateway's
own logic; this client does the same exchange in a few hundred (see the README's Speed section). aiohttp stays
for everything off the relay path (task vendors, webhooks, media fetches), where redirects, cookies and
multipart matter and speed does not.

What it speaks: HTTP/1.1 over TCP or TLS; request bodies with a Content-Length (bytes, or a payload that knows
its size and writes itself, as aiohttp payloads do); response bodies by Content-Length, chunked, or up to the
connection's end; gzip and deflate content decoded. A response's connection goes back to the pool once its body
has arrived whole (the body waits in the response), so a slow reader never holds a connection it no longer
needs. A pooled connection the upstream closed while idle is noticed when the request gets no byte back, and the
request is sent once more on a new connection (the upstream never saw it). Not spoken: proxies, redirects,
HTTP/2, ``Expect: 100-continue``, trailers.

Time limits are the caller's: ``connect_timeout`` for opening a connection, and the response's ``read_timeout``
for each wait on the upstream (the head, then every read of the body; the caller may change it between reads).
A wait that runs out fails with ``TimeoutError`` and closes the connection. Every failure is an ``OSError``
(``TimeoutError``, ``ConnectionError`` and their kin, ``UpstreamProtocolError`` for a malformed answer).
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import zlib
from collections.abc import Awaitable, Mapping
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import httptools

HIGH_WATER = 1 << 20
"""Bytes of a body waiting unread in a response before the connection stops reading from the socket."""
KEEPALIVE_S = 60.0
"""An idle pooled connection older than this is closed rather than reused."""
MAX_CACHED_TARGETS = 4096
SWEEP_EVERY = 1024
"""Connections taken from the pool between two sweeps of idle connections past ``KEEPALIVE_S``."""
_JOIN_AT = 64 * 1024
"""Bodies up to this size are sent in one write with the request head; larger ones in a second write."""


class UpstreamProtocolError(ConnectionError):
    """The upstream answered something that is not HTTP/1.1 as this client reads it."""


class _StaleConnection(ConnectionResetError):
    """A reused connection closed before any byte of the answer: the request is worth sending again."""


class SizedPayload(Protocol):
    """A request body that writes itself (an aiohttp ``Payload`` qualifies): its size is known beforehand."""

    @property
    def size(self) -> int | None: ...

    def write(self, writer: Any) -> Awaitable[None]: ...


Origin = tuple[str, int, bool]
"""``(host, port, tls)``: what a pooled connection is good for."""


class Target:
    """A URL split once: its origin, the request head's first lines, and credentials it carried."""

    __slots__ = ("authorization", "head", "origin", "server_hostname")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL with a host: {parts.scheme}://{parts.hostname or ''}")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        host = parts.hostname
        self.origin: Origin = (host, port, tls)
        self.server_hostname = host
        shown = f"[{host}]" if ":" in host else host
        if parts.port is not None and parts.port != (443 if tls else 80):
            shown += f":{parts.port}"
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        if any(c in path for c in " \r\n"):
            raise ValueError("the URL's path holds spaces or line breaks")
        # The codings this client decodes, said outright: no Accept-Encoding would allow any (RFC 9110 12.5.3).
        self.head = f" {path} HTTP/1.1\r\nHost: {shown}\r\nAccept-Encoding: gzip, deflate\r\n"
        self.authorization: str | None = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self.authorization = "Basic " + base64.b64encode(pair.encode()).decode()


class BodyWriter:
    """What a payload writes its body to: the connection, with the transport's flow control."""

    __slots__ = ("_connection",)

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection

    async def write(self, chunk: bytes) -> None:
        connection = self._connection
        if connection.transport is None or connection.lost:
            raise ConnectionResetError("the upstream closed the connection while the request was being sent")
        connection.transport.write(chunk)
        if connection.write_paused:
            await connection.drained()


class UpstreamResponse:
    """One response: its status and headers once the head arrived, then its body as it comes.

    ``headers`` maps lower-cased names to values (repeated names joined by ``", "``); it is built on first use,
    since the relay's usual call never reads it."""

    __slots__ = (
        "_chunks",
        "_connection",
        "_decoder",
        "_error",
        "_headers",
        "_raw_headers",
        "_received",
        "_size",
        "_waiter",
        "done",
        "has_head",
        "keep_alive",
        "read_timeout",
        "status",
    )

    def __init__(self, connection: _Connection, read_timeout: float | None) -> None:
        self._connection: _Connection | None = connection
        self.read_timeout = read_timeout
        self.status = 0
        self.has_head = False
        self.keep_alive = False
        self.done = False
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._headers: dict[str, str] | None = None
        self._chunks: list[bytes] = []
        self._size = 0
        self._received = False
        self._decoder: zlib._Decompress | None = None
        self._error: OSError | None = None
        self._waiter: asyncio.Future[None] | None = None

    # -- what the caller reads -------------------------------------------------------------------------------

    @property
    def headers(self) -> dict[str, str]:
        headers = self._headers
        if headers is None:
            headers = self._headers = {}
            for raw_name, raw_value in self._raw_headers:
                name = raw_name.decode("latin-1").lower()
                value = raw_value.decode("latin-1")
                headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return headers

    async def read(self, limit: int | None = None) -> bytes:
        """The whole body (or its first ``limit`` bytes: reading stops once that many came)."""
        parts: list[bytes] = []
        size = 0
        while True:
            chunks = self._chunks
            if chunks:
                parts += chunks
                size += self._size
                self._take()
            if self.done or (limit is not None and size >= limit):
                break
            if self._error is not None:
                raise self._error
            await self._wait()
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        return body if limit is None else body[:limit]

    async def readany(self) -> bytes:
        """What has arrived of the body since the last read, waiting for something if nothing has; b"" at its
        end. A failure is raised once what came before it has been read."""
        while not self._chunks:
            if self.done:
                return b""
            if self._error is not None:
                raise self._error
            await self._wait()
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._take()
        return data

    def release(self) -> None:
        """The caller is done with the response: a body not yet whole is abandoned with its connection."""
        if not self.done:
            self.close()

    def close(self) -> None:
        """Drop the connection at once (the upstream sees it closed); a pending read fails."""
        if not self.done and self._error is None:
            self._fail(ConnectionAbortedError("the response was closed before its end"))
        connection = self._connection
        if connection is not None:
            self._connection = None
            connection.discard()

    # -- waiting ---------------------------------------------------------------------------------------------

    def _take(self) -> None:
        self._chunks = []
        if self._size >= HIGH_WATER and self._connection is not None:
            self._connection.resume()
        self._size = 0

    async def _wait(self) -> None:
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timeout = self.read_timeout
        timer = loop.call_later(timeout, self._timed_out, waiter) if timeout is not None else None
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def _timed_out(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            self._fail(TimeoutError(f"the upstream sent nothing for {self.read_timeout:g} s"))
            connection = self._connection
            if connection is not None:
                self._connection = None
                connection.discard()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: OSError) -> None:
        if self._error is None and not self.done:
            self._error = error
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_exception(error)

    # -- httptools callbacks, through the connection's parser ------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        connection = self._connection
        assert connection is not None and connection.parser is not None
        parser = connection.parser
        self.status = parser.get_status_code()
        # Asked here: llhttp forgets the message's flags once it is complete.
        self.keep_alive = parser.should_keep_alive()
        for name, value in self._raw_headers:
            if len(name) == 16 and name.lower() == b"content-encoding":
                coding = value.strip().lower()
                if coding in (b"gzip", b"x-gzip", b"deflate"):
                    # 47: a zlib or gzip header, told apart by the decoder itself.
                    self._decoder = zlib.decompressobj(47 if coding != b"deflate" else 15)
                elif coding not in (b"identity", b""):
                    raise UpstreamProtocolError(f"the upstream sent a body in an unknown coding ({coding!r})")
        self.has_head = True
        self._wake()

    def on_body(self, data: bytes) -> None:
        decoder = self._decoder
        if decoder is not None:
            try:
                data = decoder.decompress(data)
            except zlib.error as exc:
                raise UpstreamProtocolError(f"the upstream's compressed body is corrupt ({exc})") from exc
            if not data:
                return
        self._chunks.append(data)
        size = self._size = self._size + len(data)
        if size >= HIGH_WATER and self._connection is not None:
            self._connection.pause()
        self._wake()

    def on_message_complete(self) -> None:
        decoder = self._decoder
        if decoder is not None:
            tail = decoder.flush()
            if tail:
                self._chunks.append(tail)
                self._size += len(tail)
        self.done = True
        self._wake()

    # -- from the connection ---------------------------------------------------------------------------------

    def lost(self, exc: Exception | None) -> None:
        """The connection closed under this response."""
        self._connection = None
        if self.done:
            return
        if self.has_head and self._ends_with_connection():
            self.on_message_complete()
            return
        if not self.has_head:
            self._fail(ConnectionResetError("the upstream closed the connection without answering"))
        else:
            self._fail(ConnectionResetError("the upstream closed the connection before the end of its answer"))

    def _ends_with_connection(self) -> bool:
        """A body with neither a length nor chunks ends where the connection does."""
        headers = self.headers
        return "content-length" not in headers and "transfer-encoding" not in headers


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection to an origin, serving one response at a time."""

    def __init__(self, pool: UpstreamPool, origin: Origin) -> None:
        self.pool = pool
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.response: UpstreamResponse | None = None
        self.lost = False
        self.served = 0
        self.idle_since = 0.0
        self.write_paused = False
        self.read_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        parser, response = self.parser, self.response
        if parser is None or response is None:
            self.discard()  # bytes while idle: the upstream is not answering anything we asked
            return
        response._received = True
        try:
            parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            response._fail(cause if isinstance(cause, OSError) else UpstreamProtocolError(str(exc)))
            self.discard()
            return
        except httptools.HttpParserError as exc:
            response._fail(UpstreamProtocolError(f"the upstream's answer is not valid HTTP/1.1 ({exc})"))
            self.discard()
            return
        if response.done:
            self._finished(response)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.transport = None
        self.pool._forget(self)
        response = self.response
        if response is not None:
            self.response = None
            response.lost(exc)
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("the upstream closed the connection"))

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- for the pool and the response -----------------------------------------------------------------------

    def start(self, response: UpstreamResponse, request: bytes, body: bytes | None) -> None:
        assert self.transport is not None
        self.response = response
        self.parser = httptools.HttpResponseParser(response)
        self.served += 1
        self.transport.write(request)
        if body:
            self.transport.write(body)

    async def drained(self) -> None:
        if self.write_paused and not self.lost:
            self._drain_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None

    def _finished(self, response: UpstreamResponse) -> None:
        """The body is whole: the response keeps it, the connection goes back to the pool (or closes)."""
        self.response = None
        self.parser = None
        response._connection = None
        if response.keep_alive and not self.lost:
            self.resume()  # the body may have stopped it at its high-water mark; the next answer must flow
            self.pool._put(self)
        else:
            self.discard()

    def pause(self) -> None:
        if self.transport is not None and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and self.read_paused and not self.lost:
            self.read_paused = False
            self.transport.resume_reading()

    def discard(self) -> None:
        """Close for good: the pool never hands it out again."""
        transport = self.transport
        if transport is not None:
            transport.close()
        self.pool._forget(self)


class UpstreamPool:
    """Keep-alive connections per origin, at most ``limit`` open in all; one per request in flight."""

    def __init__(self, limit: int = 1000, keepalive_s: float = KEEPALIVE_S, ssl_context: ssl.SSLContext | None = None):
        self.limit = limit
        self.keepalive_s = keepalive_s
        self._ssl = ssl_context
        self._idle: dict[Origin, list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._opening = 0
        self._slot_waiters: list[asyncio.Future[None]] = []
        self._targets: dict[str, Target] = {}
        self._taken = 0
        self.closed = False
        self.opened = 0
        """Connections opened so far (the tests read it)."""

    def target(self, url: str) -> Target:
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) >= MAX_CACHED_TARGETS:
                self._targets.clear()
            target = self._targets[url] = Target(url)
        return target

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | SizedPayload = b"",
        *,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
    ) -> UpstreamResponse:
        """Send the request and return once the response's head arrived; the caller reads the body and releases
        the response."""
        target = self.target(url)
        sized = isinstance(body, bytes | bytearray)
        length = len(body) if sized else body.size  # type: ignore[union-attr]
        if length is None:
            raise ValueError("a request body must know its size")
        lines = [method, target.head]
        if target.authorization is not None and "Authorization" not in headers:
            lines.append(f"Authorization: {target.authorization}\r\n")
        for name, value in headers.items():
            lines.append(f"{name}: {value}\r\n")
        if length or method not in ("GET", "HEAD"):
            lines.append(f"Content-Length: {length}\r\n")
        lines.append("\r\n")
        head = "".join(lines)
        # Every line break must be one this function wrote: a name or value holding one would smuggle a header.
        if head.count("\n") != len(lines) + 1:  # the method holds none, the first lines three
            raise ValueError("a request header name or value holds a line break")
        request = head.encode("latin-1")
        inline: bytes | None = None
        if sized:
            if length <= _JOIN_AT:
                request += body  # type: ignore[operator]
            else:
                inline = bytes(body)  # type: ignore[arg-type]
        payload = None if sized else body
        connection = await self._acquire(target, connect_timeout, fresh=False)
        try:
            return await self._exchange(connection, request, inline, payload, read_timeout)  # type: ignore[arg-type]
        except _StaleConnection:
            # A pooled connection the upstream had closed while idle: nothing came back, so the request did not
            # get through. Once more, on a new connection.
            connection = await self._acquire(target, connect_timeout, fresh=True)
            return await self._exchange(connection, request, inline, payload, read_timeout)  # type: ignore[arg-type]

    async def _exchange(
        self,
        connection: _Connection,
        request: bytes,
        inline: bytes | None,
        payload: SizedPayload | None,
        read_timeout: float | None,
    ) -> UpstreamResponse:
        response = UpstreamResponse(connection, read_timeout)
        if connection.lost:
            raise _StaleConnection("the upstream closed the connection while it was idle")
        connection.start(response, request, inline)
        try:
            if payload is not None:
                await payload.write(BodyWriter(connection))
            while not response.has_head:
                if response._error is not None:
                    raise response._error
                await response._wait()
        except BaseException as exc:
            response.close()
            if isinstance(exc, ConnectionResetError) and connection.served > 1 and not response._received:
                raise _StaleConnection(str(exc)) from exc
            raise
        return response

    # -- the pool --------------------------------------------------------------------------------------------

    async def _acquire(self, target: Target, connect_timeout: float | None, *, fresh: bool) -> _Connection:
        if self.closed:
            raise ConnectionAbortedError("the upstream pool is closed")
        origin = target.origin
        self._taken += 1
        if self._taken % SWEEP_EVERY == 0:
            self._sweep()
        while True:
            if not fresh:
                connection = self._take_idle(origin)
                if connection is not None:
                    return connection
            if len(self._open) + self._opening < self.limit:
                return await self._connect(target, connect_timeout)
            if self._close_oldest_idle():
                continue
            waiter = asyncio.get_running_loop().create_future()
            self._slot_waiters.append(waiter)
            try:
                await waiter
            finally:
                self._slot_waiters.remove(waiter)

    def _take_idle(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        if idle:
            now = asyncio.get_running_loop().time()
            while idle:
                # The most recently used first: the least likely to have been closed by the upstream.
                connection = idle.pop()
                if not connection.lost and now - connection.idle_since < self.keepalive_s:
                    return connection
                connection.discard()
        return None

    async def _connect(self, target: Target, connect_timeout: float | None) -> _Connection:
        host, port, tls = target.origin
        loop = asyncio.get_running_loop()
        connection = _Connection(self, target.origin)
        context: ssl.SSLContext | None = None
        if tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        self._opening += 1
        try:
            async with asyncio.timeout(connect_timeout):
                await loop.create_connection(
                    lambda: connection,
                    host,
                    port,
                    ssl=context,
                    server_hostname=target.server_hostname if tls else None,
                )
        finally:
            self._opening -= 1
        if connection.lost:
            raise ConnectionResetError("the upstream closed the connection at once")
        self._open.add(connection)
        self.opened += 1
        return connection

    def _put(self, connection: _Connection) -> None:
        if self.closed:
            connection.discard()
            return
        connection.idle_since = asyncio.get_running_loop().time()
        idle = self._idle.get(connection.origin)
        if idle is None:
            idle = self._idle[connection.origin] = []
        idle.append(connection)
        self._wake_slot_waiter()

    def _forget(self, connection: _Connection) -> None:
        if connection in self._open:
            self._open.discard(connection)
            idle = self._idle.get(connection.origin)
            if idle and connection in idle:
                idle.remove(connection)
            self._wake_slot_waiter()

    def _wake_slot_waiter(self) -> None:
        for waiter in self._slot_waiters:
            if not waiter.done():
                waiter.set_result(None)
                return

    def _close_oldest_idle(self) -> bool:
        oldest: _Connection | None = None
        for idle in self._idle.values():
            if idle and (oldest is None or idle[0].idle_since < oldest.idle_since):
                oldest = idle[0]
        if oldest is None:
            return False
        oldest.discard()
        return True

    def _sweep(self) -> None:
        cutoff = asyncio.get_running_loop().time() - self.keepalive_s
        for idle in list(self._idle.values()):
            for connection in [c for c in idle if c.idle_since < cutoff]:
                connection.discard()

    async def close(self) -> None:
        self.closed = True
        for connection in list(self._open):
            connection.discard()
        self._idle.clear()
        # Let the transports run their close callbacks before the loop goes.
        await asyncio.sleep(0)
