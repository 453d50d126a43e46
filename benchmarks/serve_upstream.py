"""The upstream every benchmark row talks to, in its own process.

``--kind static`` (default): an HTTP/1.1 server on bare asyncio + httptools answering
``POST /v1/chat/completions`` with canned, simulator-shaped bodies and streams (``benchmarks.canned``). It
costs a few microseconds per request, so the upstream is not what limits a row. ``GET /health`` answers 200.
``--kind simulator``: omnirelay's own OpenAI simulator (Starlette), for rows that need its full behaviour.

    python -m benchmarks.serve_upstream --port 9100 [--kind static|simulator]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from typing import cast

import httptools
import uvloop

from benchmarks.canned import Canned, CannedResponses

_HEALTH = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 15\r\n\r\n" + b'{"status":"ok"}'
_CHAT_PATH = b"/v1/chat/completions"


class UpstreamProtocol(asyncio.Protocol):
    """One keep-alive connection, answered in order; a paced stream pauses reading until it is done."""

    def __init__(self, responses: CannedResponses) -> None:
        self._responses = responses
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self._transport is not None:
                self._transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._body = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        transport = self._transport
        if transport is None:
            return
        keep_alive = self._parser.should_keep_alive()
        method = self._parser.get_method()
        path = self._url.split(b"?", 1)[0]
        if method == b"POST" and path == _CHAT_PATH:
            canned = self._responses.for_chat(b"".join(self._body))
        elif path == b"/health":
            transport.write(_HEALTH)
            return
        else:
            canned = self._responses.error(404, f"Invalid URL ({method.decode()} {path.decode()})")
        if canned.knobs.paced:
            transport.pause_reading()
            asyncio.get_running_loop().create_task(self._send_paced(transport, canned, keep_alive))
            return
        transport.write(canned.head)
        for piece in canned.pieces:
            transport.write(piece)
        if not keep_alive:
            transport.close()

    async def _send_paced(self, transport: asyncio.Transport, canned: Canned, keep_alive: bool) -> None:
        knobs = canned.knobs
        transport.write(canned.head)
        gap = 1 / knobs.tokens_per_second if knobs.tokens_per_second > 0 else 0.0
        for index, piece in enumerate(canned.pieces):
            delay = knobs.ttft_ms / 1000 if index == 0 else gap
            if delay and index < len(canned.pieces) - 1:
                await asyncio.sleep(delay)
            if transport.is_closing():
                return
            transport.write(piece)
        if keep_alive:
            transport.resume_reading()
        else:
            transport.close()


async def serve_static(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    responses = CannedResponses()
    server = await loop.create_server(lambda: UpstreamProtocol(responses), host, port, backlog=1024)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--kind", choices=("static", "simulator"), default="static")
    args = parser.parse_args()
    if args.kind == "simulator":
        import uvicorn

        from omnirelay.simulators.openai import create_openai_simulator

        uvicorn.run(
            create_openai_simulator(),
            host=args.host,
            port=args.port,
            loop="uvloop",
            http="httptools",
            log_level="warning",
        )
        return
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve_static(args.host, args.port))


if __name__ == "__main__":
    main()
