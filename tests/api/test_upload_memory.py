"""Memory per upload: a large multipart body goes upstream without being held whole in the gateway (twice or once).

The client is a plain socket writing a prebuilt body and the upstream a bare ASGI sink that hashes what it gets and
keeps nothing, so what ``tracemalloc`` sees (every thread of this process) is the gateway's own allocation.
"""

from __future__ import annotations

import hashlib
import socket
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from omnirelay.config import ChannelConfig, Settings
from omnirelay.simulators import media
from tests.conftest import GatewayHarness, database_url_for, start_gateway
from tests.harness import ServerThread

UPLOAD_BYTES = 20 * 1024 * 1024
BOUNDARY = "----omnirelay-memory-test"


class Sink:
    """An OpenAI-shaped images upstream that reads every body chunk by chunk and keeps only its hash and size."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, int, str]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        digest, size = hashlib.sha256(), 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            digest.update(chunk)
            size += len(chunk)
            if not message.get("more_body", False):
                break
        headers = dict(scope["headers"])
        self.received.append((scope["path"], headers.get(b"content-type", b"").decode(), size, digest.hexdigest()))
        body = orjson.dumps({"created": 1, "data": [{"b64_json": "iVBORw0KGgo="}]})
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def sink() -> Iterator[tuple[Sink, ServerThread]]:
    app = Sink()
    server = ServerThread(app).start()
    yield app, server
    server.stop()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, sink: tuple[Sink, ServerThread]) -> Iterator[GatewayHarness]:
    settings = Settings(
        database_url=database_url_for("sqlite", tmp_path_factory.mktemp("db")),
        image_upload_max_bytes=64 * 1024 * 1024,
        channels=[
            ChannelConfig(
                name="images",
                base_url=sink[1].url + "/v1",
                api_keys=["sk-sink"],
                models=["gpt-image-1", "house-image"],
                model_map={"house-image": "gpt-image-1"},
            )
        ],
    )
    harness = start_gateway(settings)
    yield harness
    harness.server.stop()


def multipart(fields: dict[str, str], image: bytes) -> bytes:
    out = bytearray()
    for name, value in fields.items():
        out += f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    out += (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    out += image
    out += f"\r\n--{BOUNDARY}--\r\n".encode()
    return bytes(out)


def post_raw(url: str, path: str, key: str, body: bytes) -> tuple[int, bytes]:
    """POST ``body`` over a bare socket (an HTTP client library would copy it on its way out)."""
    host, port = url.removeprefix("http://").split(":")
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(head)
        view = memoryview(body)
        for start in range(0, len(body), 1 << 20):
            sock.sendall(view[start : start + (1 << 20)])
        answer = bytearray()
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = bytes(answer).partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def test_a_20_mb_upload_goes_upstream_intact_within_one_and_a_half_times_its_size(
    gw: GatewayHarness, sink: tuple[Sink, ServerThread]
) -> None:
    key = gw.create_key("uploads")
    image = media.png(64, 64, "big") + b"\x00" * UPLOAD_BYTES
    body = multipart({"model": "gpt-image-1", "prompt": "make it bigger"}, image)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        status, answer = post_raw(gw.server.url, "/v1/images/edits", key, body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == 200, answer[:300]
    path, content_type, size, digest = sink[0].received[-1]
    # The upstream got the client's body byte for byte (same boundary, same parts).
    assert path == "/v1/images/edits" and BOUNDARY in content_type
    assert (size, digest) == (len(body), hashlib.sha256(body).hexdigest())
    grown = peak - before
    print(f"\npeak allocation while relaying a {len(body) / 2**20:.1f} MiB upload: {grown / 2**20:.2f} MiB")
    assert grown < 1.5 * len(body)


def test_a_mapped_model_is_rewritten_and_the_file_goes_on_intact(
    gw: GatewayHarness, sink: tuple[Sink, ServerThread], tmp_path: Path
) -> None:
    key = gw.create_key("uploads-mapped")
    image = media.png(32, 32, "mapped") + bytes(range(256)) * 8192  # 2 MiB: spooled to disk
    response = httpx.post(
        gw.server.url + "/v1/images/edits",
        headers={"Authorization": f"Bearer {key}"},
        data={"model": "house-image", "prompt": "p"},
        files={"image": ("in.png", image, "image/png")},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    _, content_type, size, digest = sink[0].received[-1]
    expected = httpx.Request(
        "POST",
        "http://x/",
        data={"model": "gpt-image-1", "prompt": "p"},
        files={"image": ("in.png", image, "image/png")},
        headers={"Content-Type": content_type},
    ).read()
    # Same boundary as the client's, so the rebuilt body is exactly what the client would have sent unmapped.
    assert size == len(expected) and digest == hashlib.sha256(expected).hexdigest()
