"""A raw ASGI front for the relay endpoints, with Starlette behind it for everything else.

The relay routes are few and fixed, so an exact (method, path) lookup (plus the Gemini ``/models/{model}:method``
prefixes) replaces Starlette's route scan and middleware stack on the hot path. Streams are written here too:
Starlette's ``StreamingResponse`` runs an anyio task group per response to watch for a disconnect, which costs
more than the relay itself on short streams; one ``receive()`` future checked between chunks does the same job.
A client that goes away closes the relay's generator, which releases the upstream connection and bills what was
produced.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from omnirelay.api.errors import error_response
from omnirelay.errors import ErrorCode, GatewayError

Handler = Callable[[Request], Awaitable[Response]]


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
        try:
            response = await handler(Request(scope, receive))
        except Exception:  # a bug: a clean 500, never a stack trace
            response = error_response("openai", GatewayError(ErrorCode.internal, "The gateway hit an internal error."))
        if isinstance(response, StreamingResponse):
            await stream_out(response, receive, send)
        else:
            await response(scope, receive, send)


async def stream_out(response: StreamingResponse, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers})
    # The request body was read in full, so the next message can only be the disconnect (or the server noting
    # that the response completed).
    disconnected = asyncio.ensure_future(receive())
    chunks = response.body_iterator
    try:
        async for chunk in chunks:
            if disconnected.done():
                break
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        else:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        disconnected.cancel()
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()
