"""A raw ASGI front for the relay endpoints, with Starlette behind it for everything else.

The relay routes are few and fixed, so an exact (method, path) lookup (plus the Gemini ``/models/{model}:method``
prefixes) replaces Starlette's route scan and middleware stack on the hot path. Streams are written here too:
Starlette's ``StreamingResponse`` runs an anyio task group per response to watch for a disconnect, which costs
more than the relay itself on short streams; one ``receive()`` future does the same job.

From 50 ms after the request body has been read (``WATCH_AFTER_S``; most calls are over by then), that future
waits for the client's disconnect (``DisconnectWatch``). If the client leaves while the call is waiting on its
upstream (for a whole answer, or between two chunks of a stream), the task serving it is cancelled then: the relay
closes the upstream connection, so no generation runs on for nobody, and bills what was produced. That
cancellation is ours, so it ends here, quietly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from omnirelay.api import request_id as request_ids
from omnirelay.api.common import raw_headers
from omnirelay.api.errors import error_response
from omnirelay.errors import ErrorCode, GatewayError

Handler = Callable[[Request], Awaitable[Response]]

MAX_HEADERS = 100
"""More header lines than any SDK sends (about 15): a relay request beyond this answers 431 unread. Header bytes are
bounded by the HTTP parser (h11: ``h11_max_incomplete_event_size``); this bounds the work per request here."""


class RelayFront:
    def __init__(
        self,
        app: ASGIApp,
        exact: Mapping[tuple[str, str], Handler],
        prefixes: Sequence[tuple[str, str, Handler]] = (),
    ) -> None:
        """``exact``: (method, path) → handler. ``prefixes``: (method, prefix, handler); the rest of the path
        becomes ``path_params["target"]``."""
        self.app = app
        self.exact = dict(exact)
        self.prefixes = tuple(prefixes)
        self.deadlines = BodyDeadlines(60.0)
        self.watches = WatchStarter()
        self.on_refusal: Callable[[int], None] | None = None
        """Told the status of every relay request refused before it became a call (``CallStats.refused``)."""

    @property
    def state(self) -> Any:
        return self.app.state  # type: ignore[attr-defined]

    def _handler(self, scope: Scope) -> Handler | None:
        method, path = scope["method"], scope["path"]
        handler = self.exact.get((method, path))
        if handler is not None:
            return handler
        for prefix_method, prefix, prefix_handler in self.prefixes:
            if method == prefix_method and path.startswith(prefix):
                scope["path_params"] = {"target": path[len(prefix) :]}
                return prefix_handler
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self._handler(scope) if scope["type"] == "http" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        task = asyncio.current_task()
        assert task is not None
        request_id = request_ids.client_request_id(raw_headers(scope).get(request_ids.HEADER))
        if request_id is None:
            request_id = request_ids.new_request_id()
            request_ids.bind(request_id, from_client=False)
        else:
            request_ids.bind(request_id, from_client=True)
        if len(scope["headers"]) > MAX_HEADERS:
            crowded = GatewayError(ErrorCode.request_too_large, f"More than {MAX_HEADERS} request headers.", status=431)
            await error_response("openai", crowded, request_id)(scope, receive, send)
            self._refused(crowded.status)
            return
        watch = DisconnectWatch(receive, task, self.deadlines, self.watches)
        self.deadlines.reading(task)
        try:
            try:
                response = await handler(Request(scope, watch.receive))
            except Exception:  # a bug: a clean 500, never a stack trace
                response = error_response(
                    "openai", GatewayError(ErrorCode.internal, "The gateway hit an internal error.")
                )
            if isinstance(response, StreamingResponse):
                await stream_out(response, watch, send)
            else:
                watch.disarm()
                if await send_whole(response, request_id, scope, receive, send) and response.status_code >= 400:
                    self._refused(response.status_code)  # a refusal before a call existed
        except asyncio.CancelledError:
            if watch.fired and task.uncancel() == 0:
                return  # the client left: nobody to answer
            if self.deadlines.expired(task) and task.uncancel() == 0:
                late = GatewayError(ErrorCode.request_timeout, "The request body did not arrive in time.")
                await error_response("openai", late, request_id)(scope, receive, send)
                self._refused(late.status)
                return
            raise
        finally:
            self.deadlines.done(task)
            watch.close()

    def _refused(self, status: int) -> None:
        if self.on_refusal is not None:
            self.on_refusal(status)


WATCH_AFTER_S = 0.05
"""A call still running this long after its body arrived starts watching for its client's disconnect. Watching
takes a task (a ``receive()`` that waits), which cost ~3% of a relayed call's CPU when every call had one, and a
timer per call ~2%; most calls end sooner. A client that leaves earlier is noticed once its call is this old (up
to half as long again: see ``WatchStarter``), so at most that much more upstream work is done for nobody."""


class DisconnectWatch:
    """Wraps ``receive``: once the request body is complete and the call is ``WATCH_AFTER_S`` old, one future waits
    for the disconnect and, while armed, cancels the serving task when it comes."""

    __slots__ = ("_armed", "_deadlines", "_receive", "_starter", "_task", "fired", "future", "read")

    def __init__(
        self, receive: Receive, task: asyncio.Task[Any], deadlines: BodyDeadlines, starter: WatchStarter
    ) -> None:
        self._receive = receive
        self._task = task
        self._deadlines = deadlines
        self._starter = starter
        self._armed = True
        self.read = False
        """The request body is complete."""
        self.fired = False
        self.future: asyncio.Future[Message] | None = None

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request" and not message.get("more_body", False) and not self.read:
            # The body is complete, so the next message can only be the disconnect (or the server noting that
            # the response completed, which comes after ``disarm``).
            self.read = True
            self._deadlines.done(self._task)
            self._starter.add(self)
        return message

    def start(self) -> None:
        if self._armed:
            # create_task, not ensure_future: that one first asks whether a coroutine is a future, by a failed
            # attribute lookup (a raised and caught exception).
            self.future = self._task.get_loop().create_task(self._receive())  # type: ignore[arg-type]
            self.future.add_done_callback(self._on_message)

    def _on_message(self, future: asyncio.Future[Message]) -> None:
        if self._armed and not future.cancelled() and future.exception() is None:
            self.fired = True
            self._task.cancel()

    @property
    def disconnected(self) -> bool:
        return self.future is not None and self.future.done()

    def disarm(self) -> None:
        self._armed = False

    def close(self) -> None:
        self._armed = False
        self._starter.discard(self)
        if self.future is not None:
            self.future.cancel()


class WatchStarter:
    """Starts the watches of calls still running ``WATCH_AFTER_S`` after their body arrived: one timer for all
    calls, ticking every half of that while any call waits, instead of a timer per call."""

    def __init__(self) -> None:
        self._waiting: dict[DisconnectWatch, float] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, watch: DisconnectWatch) -> None:
        self._waiting[watch] = time.monotonic()
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(WATCH_AFTER_S / 2, self._tick)

    def discard(self, watch: DisconnectWatch) -> None:
        self._waiting.pop(watch, None)

    def _tick(self) -> None:
        horizon = time.monotonic() - WATCH_AFTER_S
        due = []
        for watch, since in self._waiting.items():  # oldest first: a dict keeps the order of insertion
            if since > horizon:
                break
            due.append(watch)
        for watch in due:
            del self._waiting[watch]
            watch.start()
        self._timer = asyncio.get_running_loop().call_later(WATCH_AFTER_S / 2, self._tick) if self._waiting else None


class BodyDeadlines:
    """Slow-loris bodies: the tasks still reading their request body, with when they began. Each new request
    sweeps (at most once a second) and cancels those reading longer than ``timeout_s``; they answer 408. No timer
    per request: a dict entry in, a dict entry out."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._reading: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._swept = 0.0

    def reading(self, task: asyncio.Task[Any]) -> None:
        now = time.monotonic()
        self._reading[task] = now
        if now - self._swept >= 1.0:
            self._swept = now
            horizon = now - self.timeout_s
            for late in [t for t, began in self._reading.items() if began < horizon]:
                del self._reading[late]
                self._expired.add(late)
                late.cancel()

    def done(self, task: asyncio.Task[Any]) -> None:
        self._reading.pop(task, None)

    def expired(self, task: asyncio.Task[Any]) -> bool:
        if task in self._expired:
            self._expired.discard(task)
            return True
        return False


class RelayResponse(Response):
    """A whole answer whose header lines the relay encoded itself. Starlette's ``Response.__init__`` looks
    through the headers for a content type and length, and encodes them, on every call."""

    def __init__(
        self, body: bytes, headers: list[tuple[bytes, bytes]], media_type: bytes = b"application/json"
    ) -> None:
        self.body = body
        self.status_code = 200
        self.background = None
        headers.append((b"content-length", b"%d" % len(body)))
        headers.append((b"content-type", media_type))
        self.raw_headers = headers


class RelayStream(StreamingResponse):
    """A stream whose header lines the relay encoded itself (as ``RelayResponse``)."""

    def __init__(self, chunks: AsyncIterator[bytes], headers: list[tuple[bytes, bytes]], media_type: bytes) -> None:
        self.body_iterator = chunks
        self.status_code = 200
        self.background = None
        headers.append((b"content-type", media_type))
        self.raw_headers = headers


def content_type(value: str | None, default: bytes = b"application/json") -> bytes:
    """An upstream's content type as Starlette would send it: a text type without a charset gets utf-8."""
    if value is None:
        return default
    if value.startswith("text/") and "charset=" not in value.lower():
        value += "; charset=utf-8"
    return value.encode("latin-1")


async def send_whole(response: Response, request_id: str, scope: Scope, receive: Receive, send: Send) -> bool:
    """A whole answer: the two messages Starlette's ``Response.__call__`` sends, without building its header
    view twice per call. An answer without a request id (a refusal made before a call existed) gets it here;
    returns whether it did."""
    headers = response.raw_headers
    anonymous = not any(name == request_ids.HEADER for name, _ in headers)
    if anonymous:
        headers.append((request_ids.HEADER, request_id.encode("latin-1")))
    if response.background is not None or type(response) not in (RelayResponse, Response, JSONResponse):
        await response(scope, receive, send)  # a response with its own sending (files) or a task after it
        return anonymous
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
    return anonymous


async def stream_out(response: StreamingResponse, watch: DisconnectWatch, send: Send) -> None:
    await send({"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers})
    chunks = response.body_iterator
    try:
        async for chunk in chunks:
            if watch.disconnected:
                break
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        else:
            watch.disarm()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        watch.disarm()
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()
