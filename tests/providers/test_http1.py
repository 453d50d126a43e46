"""The relay's HTTP/1.1 client (``providers.http1``) against a scripted server that writes raw bytes: every way an
upstream can frame, delay, compress, cut or botch an answer, and what the pool does with its connections."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omnirelay.providers.http1 import UpstreamPool, UpstreamProtocolError
from tests.providers.fetch_server import certificate_for


@dataclass
class Request:
    head: str
    headers: dict[str, str]
    body: bytes
    connection: int
    """Which connection of the server's (0, 1, ...) it came on."""
    reader: asyncio.StreamReader


Answer = Callable[[Request, asyncio.StreamWriter], Awaitable[bool]]
"""Writes the answer to a request; False closes the connection afterwards."""


@dataclass
class Script:
    answer: Answer
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    open_now: int = 0
    most_open: int = 0
    closed_by_client: asyncio.Event = field(default_factory=asyncio.Event)


async def read_request(reader: asyncio.StreamReader, connection: int) -> Request | None:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    head = raw.decode("latin-1")
    headers = {}
    for line in head.split("\r\n")[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return Request(head, headers, body, connection, reader)


@contextlib.asynccontextmanager
async def scripted(answer: Answer, *, tls: bool = False) -> AsyncIterator[tuple[Script, str, UpstreamPool]]:
    """A server running ``answer`` for every request, its base URL, and a pool (closed afterwards)."""
    script = Script(answer)
    server_context = client_context = None
    if tls:
        server_context, client_context = certificate_for("localhost")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = script.connections
        script.connections += 1
        script.open_now += 1
        script.most_open = max(script.most_open, script.open_now)
        try:
            while True:
                request = await read_request(reader, number)
                if request is None:
                    script.closed_by_client.set()
                    return
                script.requests.append(request)
                if not await script.answer(request, writer):
                    if reader.at_eof():
                        script.closed_by_client.set()
                    return
        except ConnectionError:
            script.closed_by_client.set()
        finally:
            script.open_now -= 1
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    pool = UpstreamPool(limit=8, ssl_context=client_context)
    try:
        yield script, f"{'https' if tls else 'http'}://{'localhost' if tls else '127.0.0.1'}:{port}", pool
    finally:
        await pool.close()
        server.close()
        await server.wait_closed()


def raw(data: bytes, *, keep: bool) -> Answer:
    """Writes ``data`` as it is; keeps the connection or closes it."""

    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(data)
        await writer.drain()
        return keep

    return answer


def ok(body: bytes, *extra: str) -> Answer:
    head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + "".join(f"{h}\r\n" for h in extra)
    return raw(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body, keep=True)


def chunked(pieces: list[bytes], *, pause: float = 0.0, then: bytes = b"0\r\n\r\n") -> Answer:
    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in pieces:
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            if pause:
                await asyncio.sleep(pause)
        writer.write(then)
        await writer.drain()
        return bool(then)

    return answer


async def test_keeps_the_connection_and_sends_what_it_was_given() -> None:
    async with scripted(ok(b'{"ok":true}')) as (script, url, pool):
        for n in range(3):
            response = await pool.request(
                "POST", url + "/v1/chat/completions?x=1", {"Content-Type": "application/json"}, b'{"n":%d}' % n
            )
            assert response.status == 200
            assert response.headers["content-type"] == "application/json"
            assert await response.read() == b'{"ok":true}'
            response.release()
    assert [r.body for r in script.requests] == [b'{"n":0}', b'{"n":1}', b'{"n":2}']
    first = script.requests[0]
    assert first.head.startswith("POST /v1/chat/completions?x=1 HTTP/1.1\r\n")
    assert first.headers["host"] == url.removeprefix("http://")
    assert first.headers["content-length"] == "7"
    assert first.headers["accept-encoding"] == "gzip, deflate"  # what it can decode, no more
    assert script.connections == 1 and pool.opened == 1


async def test_streams_chunks_as_they_come() -> None:
    pieces = [b"data: 1\n\n", b"data: 2\n\n", b"data: [DONE]\n\n"]
    async with scripted(chunked(pieces, pause=0.02)) as (script, url, pool):
        response = await pool.request("POST", url + "/s", {}, b"{}")
        got = []
        while chunk := await response.readany():
            got.append(chunk)
        response.release()
        assert got == pieces  # paced: one read per chunk, none held back
        again = await pool.request("POST", url + "/s", {}, b"{}")
        assert await again.read() == b"".join(pieces)
    assert script.connections == 1


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(min_size=1, max_size=3000), cuts=st.lists(st.integers(1, 2999), max_size=8))
async def test_any_split_of_a_chunked_body_reads_back_whole(body: bytes, cuts: list[int]) -> None:
    points = sorted({c for c in cuts if c < len(body)})
    pieces = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    framed = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + framed

    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        # The framing itself cut at the same points (mid-size-line, mid-CRLF): the parser must not care.
        for a, b in zip([0, *points], [*points, len(raw)], strict=True):
            writer.write(raw[a:b])
            await writer.drain()
        return True

    async with scripted(answer) as (_, url, pool):
        response = await pool.request("POST", url + "/", {}, b"")
        got = b""
        while chunk := await response.readany():
            got += chunk
        assert got == body


async def test_a_body_without_length_ends_with_the_connection() -> None:
    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npart one, ")
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b"part two")
        return False

    async with scripted(answer) as (script, url, pool):
        for _ in range(2):
            response = await pool.request("GET", url + "/", {}, b"")
            assert await response.read() == b"part one, part two"
    assert script.connections == 2  # never reused
    assert "content-length" not in script.requests[0].headers  # a GET without a body says nothing of one


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
async def test_compressed_bodies_are_decoded(coding: str) -> None:
    plain = b'{"text":"' + b"hello " * 2000 + b'"}'
    packed = gzip.compress(plain) if coding == "gzip" else zlib.compress(plain)
    async with scripted(ok(packed, f"Content-Encoding: {coding}")) as (_, url, pool):
        response = await pool.request("POST", url + "/", {}, b"{}")
        assert response.headers["content-encoding"] == coding
        assert await response.read() == plain


async def test_an_unknown_coding_is_refused() -> None:
    async with scripted(ok(b"????", "Content-Encoding: br")) as (_, url, pool):
        with pytest.raises(UpstreamProtocolError, match="unknown coding"):
            response = await pool.request("POST", url + "/", {}, b"{}")
            await response.read()


async def test_an_idle_connection_the_upstream_closed_is_not_used() -> None:
    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        await ok(b"{}")(request, writer)
        return False  # closes after answering, without saying so

    async with scripted(answer) as (script, url, pool):
        assert await (await pool.request("POST", url + "/", {}, b"1")).read() == b"{}"
        await asyncio.sleep(0.05)
        assert await (await pool.request("POST", url + "/", {}, b"2")).read() == b"{}"
    assert [r.connection for r in script.requests] == [0, 1]


async def test_a_reused_connection_dropped_without_an_answer_is_tried_once_more() -> None:
    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        if request.body == b"2" and request.connection == 0:
            return False  # the keep-alive connection dies just as the request arrives
        return await ok(b"{}")(request, writer)

    async with scripted(answer) as (script, url, pool):
        assert await (await pool.request("POST", url + "/", {}, b"1")).read() == b"{}"
        assert await (await pool.request("POST", url + "/", {}, b"2")).read() == b"{}"
    assert [(r.body, r.connection) for r in script.requests] == [(b"1", 0), (b"2", 0), (b"2", 1)]


async def test_a_new_connection_dropped_without_an_answer_fails_once() -> None:
    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        return False

    async with scripted(answer) as (script, url, pool):
        with pytest.raises(ConnectionResetError, match="without answering"):
            await pool.request("POST", url + "/", {}, b"{}")
    assert len(script.requests) == 1


async def test_no_head_within_the_read_timeout_fails_and_drops_the_connection() -> None:
    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        assert await request.reader.read() == b""  # answers nothing, until the client hangs up
        return False

    async with scripted(answer) as (script, url, pool):
        started = asyncio.get_running_loop().time()
        with pytest.raises(TimeoutError):
            await pool.request("POST", url + "/", {}, b"{}", read_timeout=0.1)
        assert asyncio.get_running_loop().time() - started < 1
        await asyncio.wait_for(script.closed_by_client.wait(), 2)


async def test_a_stalled_stream_fails_after_what_came_before() -> None:
    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await asyncio.sleep(5)
        return False

    async with scripted(answer) as (_, url, pool):
        response = await pool.request("POST", url + "/", {}, b"{}", read_timeout=2)
        response.read_timeout = 0.1  # the idle limit, once the stream flows
        assert await response.readany() == b"first"
        with pytest.raises(TimeoutError):
            await response.readany()


async def test_a_body_cut_short_fails() -> None:
    async with scripted(raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b", keep=False)) as (_, url, pool):
        response = await pool.request("POST", url + "/", {}, b"{}")
        with pytest.raises(ConnectionResetError, match="before the end"):
            await response.read()


async def test_an_answer_that_is_not_http_fails() -> None:
    async with scripted(raw(b"SSH-2.0-OpenSSH_9.6\r\n\r\n", keep=True)) as (_, url, pool):
        with pytest.raises(UpstreamProtocolError, match="not valid HTTP"):
            await pool.request("POST", url + "/", {}, b"{}")


async def test_a_refused_connection_fails() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    pool = UpstreamPool()
    with pytest.raises(ConnectionRefusedError):
        await pool.request("POST", f"http://127.0.0.1:{port}/", {}, b"{}", connect_timeout=2)
    await pool.close()


@pytest.mark.parametrize(
    "headers",
    [{"X-Evil": "a\r\nX-Injected: 1"}, {"X-Evil\r\nX-Injected": "1"}, {"X-Evil": "a\nb"}],
)
async def test_a_line_break_in_a_header_is_refused_before_sending(headers: dict[str, str]) -> None:
    async with scripted(ok(b"{}")) as (script, url, pool):
        with pytest.raises(ValueError, match="line break"):
            await pool.request("POST", url + "/", headers, b"{}")
    assert script.requests == []


async def test_credentials_in_the_url_become_basic_auth() -> None:
    async with scripted(ok(b"{}")) as (script, url, pool):
        await (await pool.request("POST", url.replace("//", "//us%40er:p%3Ass@") + "/", {}, b"{}")).read()
        await (await pool.request("POST", url.replace("//", "//user:pass@") + "/", {"Authorization": "X"}, b"")).read()
    assert script.requests[0].headers["authorization"] == "Basic dXNAZXI6cDpzcw=="  # us@er:p:ss
    assert script.requests[1].headers["authorization"] == "X"  # a given one wins


async def test_tls() -> None:
    async with scripted(ok(b'{"secure":true}'), tls=True) as (script, url, pool):
        response = await pool.request("POST", url + "/v1/x", {}, b"{}")
        assert await response.read() == b'{"secure":true}'
    assert script.requests[0].headers["host"] == url.removeprefix("https://")


async def test_at_most_limit_connections_and_the_rest_wait() -> None:
    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.05)
        return await ok(request.body)(request, writer)

    async with scripted(answer) as (script, url, pool):
        pool.limit = 2

        async def call(n: int) -> bytes:
            response = await pool.request("POST", url + "/", {}, b"%d" % n)
            return await response.read()

        assert await asyncio.gather(*(call(n) for n in range(6))) == [b"%d" % n for n in range(6)]
    assert script.most_open == 2 and script.connections == 2


async def test_closing_a_stream_closes_its_connection() -> None:
    async with scripted(chunked([b"x" * 10] * 200, pause=0.01)) as (script, url, pool):
        response = await pool.request("POST", url + "/", {}, b"{}")
        assert await response.readany()
        response.close()
        with pytest.raises(ConnectionAbortedError):
            await response.readany()
        await asyncio.wait_for(script.closed_by_client.wait(), 2)


async def test_large_bodies_both_ways() -> None:
    big = bytes(range(256)) * 20_000  # 5 MB: past the read pause mark, and more than one socket write

    async def echo(request: Request, writer: asyncio.StreamWriter) -> bool:
        return await ok(request.body)(request, writer)

    class Payload:
        """What an aiohttp payload offers the client: a size, and a write to a writer."""

        size = len(big)

        async def write(self, writer: object) -> None:
            for start in range(0, len(big), 65536):
                await writer.write(big[start : start + 65536])  # type: ignore[attr-defined]

    async with scripted(echo) as (script, url, pool):
        assert await (await pool.request("POST", url + "/", {}, big)).read() == big
        streamed = await pool.request("POST", url + "/", {}, Payload())
        got = bytearray()
        while chunk := await streamed.readany():
            got += chunk
        assert got == big
    assert [len(r.body) for r in script.requests] == [len(big), len(big)]
    assert script.connections == 1


async def test_an_error_body_is_read_up_to_a_limit() -> None:
    head = b"HTTP/1.1 500 Internal Server Error\r\nRetry-After: 3\r\nContent-Length: 10000\r\n\r\n"
    async with scripted(raw(head + b"e" * 10000, keep=True)) as (_, url, pool):
        response = await pool.request("POST", url + "/", {}, b"{}")
        assert response.status == 500 and response.headers["retry-after"] == "3"
        assert await response.read(100) == b"e" * 100
        response.release()


def test_on_uvloop() -> None:
    """``omnirelay serve`` runs on uvloop, whose transports are its own classes: the same exchanges there."""
    uvloop = pytest.importorskip("uvloop")

    async def exchanges() -> None:
        await test_keeps_the_connection_and_sends_what_it_was_given()
        await test_streams_chunks_as_they_come()
        await test_a_reused_connection_dropped_without_an_answer_is_tried_once_more()
        await test_tls()
        await test_large_bodies_both_ways()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(exchanges())
