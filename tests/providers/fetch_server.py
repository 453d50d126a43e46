"""A tiny aiohttp server on 127.0.0.1 for the safe fetcher's tests: images, redirects of every kind, large and slow
bodies, an echo; it records every request it receives (method, path, ``Host`` header, body, headers)."""

from __future__ import annotations

import asyncio
import datetime
import ssl
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
PUBLIC_NAME = "public.test"
"""A name the tests' resolver treats as public and sends to 127.0.0.1 (``.test`` never resolves in real DNS, so a
fetch that works went to the address that was checked)."""


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    host: str
    body: bytes
    headers: dict[str, str]


@dataclass
class FetchServer:
    port: int
    scheme: str
    seen: list[Seen] = field(default_factory=list)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def paths(self) -> list[str]:
        return [s.path for s in self.seen]


def _app(server: FetchServer) -> web.Application:
    async def record(request: web.Request) -> None:
        body = await request.read()
        server.seen.append(
            Seen(request.method, request.path_qs, request.headers.get("Host", ""), body, dict(request.headers))
        )

    async def image(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(body=PNG, content_type="image/png")

    async def redirect(request: web.Request) -> web.Response:
        """``/to?status=302&url=...``: a redirect to ``url`` (absolute or relative) with that status."""
        await record(request)
        status = int(request.query.get("status", "302"))
        return web.Response(status=status, headers={"Location": request.query["url"]})

    async def chain(request: web.Request) -> web.Response:
        """``/chain/<n>``: a redirect of a different kind each step, relative and absolute, down to the image."""
        await record(request)
        n = int(request.match_info["n"])
        if n == 0:
            return web.Response(status=301, headers={"Location": "/image.png"})
        statuses = (302, 303, 307, 308)
        location = f"{n - 1}" if n % 2 else f"http://{request.host}/chain/{n - 1}"
        return web.Response(status=statuses[n % len(statuses)], headers={"Location": location})

    async def loop(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(status=302, headers={"Location": "/loop"})

    async def big(request: web.Request) -> web.StreamResponse:
        """``/big?size=N[&length=1]``: N bytes, streamed without a length unless ``length`` is set."""
        await record(request)
        size = int(request.query["size"])
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        if request.query.get("length"):
            response.content_length = size
        await response.prepare(request)
        sent = 0
        while sent < size:
            piece = min(64 * 1024, size - sent)
            await response.write(b"x" * piece)
            sent += piece
        await response.write_eof()
        return response

    async def slow(request: web.Request) -> web.Response:
        """``/slow/<n>``: waits 0.1 s, then redirects to ``/slow/<n-1>``, down to the image."""
        await record(request)
        await asyncio.sleep(0.1)
        n = int(request.match_info["n"])
        return web.Response(status=302, headers={"Location": f"/slow/{n - 1}" if n > 1 else "/image.png"})

    async def echo(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(text=f"{request.method} {len(await request.read())}")

    app = web.Application()
    app.router.add_route("*", "/image.png", image)
    app.router.add_route("*", "/to", redirect)
    app.router.add_get("/chain/{n}", chain)
    app.router.add_get("/loop", loop)
    app.router.add_get("/big", big)
    app.router.add_get("/slow/{n}", slow)
    app.router.add_route("*", "/echo", echo)
    return app


@asynccontextmanager
async def serve(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[FetchServer]:
    server = FetchServer(0, "https" if ssl_context else "http")
    runner = web.AppRunner(_app(server), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    server.port = runner.addresses[0][1]
    try:
        yield server
    finally:
        await runner.cleanup()


def certificate_for(name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A self-signed certificate for ``name``: the server's TLS context and a client's that trusts only it."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with tempfile.TemporaryDirectory() as folder:
        cert_file, key_file = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        cert_file.write_bytes(cert_pem)
        key_file.write_bytes(key_pem)
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_context.load_cert_chain(cert_file, key_file)
    client_context = ssl.create_default_context(cadata=cert_pem.decode())
    return server_context, client_context
