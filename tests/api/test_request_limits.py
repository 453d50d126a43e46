"""Request limits: JSON depth and container sizes, and slow bodies (slow-loris), over real sockets."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from omnirelay.api.common import MAX_JSON_DEPTH, MAX_JSON_ITEMS
from omnirelay.config import ChannelConfig, Settings
from tests.conftest import UPSTREAM_KEY, GatewayHarness, database_url_for, start_gateway
from tests.harness import ServerThread


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, openai_sim: ServerThread) -> Iterator[GatewayHarness]:
    settings = Settings(
        database_url=database_url_for("sqlite", tmp_path_factory.mktemp("limits")),
        body_read_timeout_s=1.0,
        channels=[
            ChannelConfig(name="main", base_url=openai_sim.url + "/v1", api_keys=[UPSTREAM_KEY], models=["gpt-4o-mini"])
        ],
    )
    harness = start_gateway(settings)
    harness.keys["k"] = harness.create_key("limits")
    yield harness
    harness.server.stop()


def post(gw: GatewayHarness, body: bytes) -> httpx.Response:
    return httpx.post(
        gw.base_url + "/chat/completions",
        content=body,
        headers={"authorization": f"Bearer {gw.keys['k']}", "content-type": "application/json"},
        timeout=30,
    )


def test_deep_nesting_is_a_clear_400(gw: GatewayHarness) -> None:
    nested: object = "x"
    for _ in range(MAX_JSON_DEPTH + 5):
        nested = {"a": nested}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "metadata": nested}
    answer = post(gw, json.dumps(body).encode())
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert f"deeper than {MAX_JSON_DEPTH}" in answer.json()["error"]["message"]
    # orjson's own limit (1024) still answers a 400, not a crash.
    assert post(gw, b"[" * 5000 + b"]" * 5000).status_code == 400


def test_too_many_messages_is_a_413(gw: GatewayHarness) -> None:
    messages = [{"role": "user", "content": "x"}] * (MAX_JSON_ITEMS + 1)
    answer = post(gw, json.dumps({"model": "gpt-4o-mini", "messages": messages}).encode())
    assert answer.status_code == 413
    assert str(MAX_JSON_ITEMS) in answer.json()["error"]["message"]


def test_an_ordinary_call_passes(gw: GatewayHarness) -> None:
    client = openai.OpenAI(base_url=gw.base_url, api_key=gw.keys["k"], max_retries=0)
    messages = [{"role": "user", "content": f"turn {i}"} for i in range(200)]
    assert client.chat.completions.create(model="gpt-4o-mini", messages=messages).choices  # type: ignore[arg-type]


def test_a_slow_body_is_cut_with_408(gw: GatewayHarness) -> None:
    port = gw.server.port
    slow = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        f"authorization: Bearer {gw.keys['k']}\r\ncontent-length: 200\r\n\r\n"
    )
    slow.sendall(head.encode() + b'{"model": "gpt-4o')  # ...and the rest never comes
    time.sleep(1.3)
    assert post(gw, json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode())
    answer = slow.recv(65536).decode()
    slow.close()
    assert answer.startswith("HTTP/1.1 408"), answer[:200]
    assert "did not arrive in time" in answer


def test_a_flood_of_headers_is_a_431(gw: GatewayHarness) -> None:
    from omnirelay.api.front import MAX_HEADERS

    headers = {f"x-pad-{i}": "y" for i in range(MAX_HEADERS + 1)}
    headers["authorization"] = f"Bearer {gw.keys['k']}"
    answer = httpx.post(
        gw.base_url + "/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        headers=headers,
    )
    assert answer.status_code == 431
    assert answer.json()["error"]["message"] == f"More than {MAX_HEADERS} request headers."
