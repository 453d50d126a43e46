"""The floor: the thinnest useful relay, a raw ASGI callable (no framework) over one shared aiohttp session.

It forwards the request body to the upstream's same path (with the client's ``Authorization`` and
``Content-Type``) and streams the response back chunk by chunk with the upstream's status and content type.
No auth, no parsing, no metering: whatever omnirelay costs above this is the price of being a gateway.

``--client http1`` makes the same relay with omnirelay's own upstream client (``omnirelay.providers.http1``)
instead of aiohttp: a reference row, not the floor, showing how much of omnirelay's distance to the floor is its
HTTP client rather than its gateway work.

    python -m benchmarks.bare_relay --upstream http://127.0.0.1:9100 --port 9200 [--client aiohttp|http1]
"""

from __future__ import annotations

import argparse
from typing import Any

import aiohttp
import uvicorn

from omnirelay.providers.http1 import UpstreamPool, UpstreamResponse

Scope = dict[str, Any]
Message = dict[str, Any]
_FORWARDED = (b"authorization", b"content-type")


class BareRelay:
    def __init__(self, upstream: str, client: str = "aiohttp") -> None:
        self.upstream = upstream.rstrip("/")
        self.client = client
        self.session: aiohttp.ClientSession | None = None
        self.pool: UpstreamPool | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await self._relay(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.client == "http1":
                    self.pool = UpstreamPool(limit=1000)
                connector = aiohttp.TCPConnector(limit=1000, limit_per_host=0, keepalive_timeout=60)
                self.session = aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                if self.pool is not None:
                    await self.pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _relay(self, scope: Scope, receive: Any, send: Any) -> None:
        body, headers = await _request(scope, receive)
        url = self.upstream + scope["path"]
        response: aiohttp.ClientResponse | UpstreamResponse
        try:
            if self.pool is not None:
                response = await self.pool.request(scope["method"], url, headers, body)
                read = response.readany
            else:
                assert self.session is not None
                response = await self.session.request(scope["method"], url, data=body, headers=headers)
                read = response.content.readany
        except (aiohttp.ClientError, OSError, ValueError):
            await send({"type": "http.response.start", "status": 502, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        try:
            out_headers = [(b"content-type", response.headers.get("content-type", "").encode())]
            length = response.headers.get("content-length")
            if length is not None:
                out_headers.append((b"content-length", length.encode()))
            await send({"type": "http.response.start", "status": response.status, "headers": out_headers})
            while chunk := await read():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            response.release()


async def _request(scope: Scope, receive: Any) -> tuple[bytes, dict[str, str]]:
    """The client's body and the headers passed on."""
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body, {name.decode(): value.decode() for name, value in scope["headers"] if name in _FORWARDED}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", required=True, help="Upstream origin, e.g. http://127.0.0.1:9100")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--client", choices=("aiohttp", "http1"), default="aiohttp", help="Upstream HTTP client.")
    args = parser.parse_args()
    uvicorn.run(
        BareRelay(args.upstream, args.client),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        lifespan="on",
    )


if __name__ == "__main__":
    main()
