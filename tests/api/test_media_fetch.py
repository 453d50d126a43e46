"""Images given by URL reach an upstream that only takes inline bytes: fetched with limits, never from a private
address unless the operator allows it."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from tests.api.test_matrix import MODELS, Upstreams, start_upstreams, three_channel_settings
from tests.conftest import start_gateway
from tests.harness import ServerThread

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8


def image_server() -> ServerThread:
    async def cat(request: Any) -> Response:
        return Response(PNG, media_type="image/png")

    async def page(request: Any) -> Response:
        return Response(b"<html></html>", media_type="text/html")

    return ServerThread(Starlette(routes=[Route("/cat.png", cat), Route("/page", page)])).start()


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Upstreams]:
    started = start_upstreams()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def images() -> Iterator[ServerThread]:
    server = image_server()
    yield server
    server.stop()


def ask(base_url: str, key: str, url: str) -> Any:
    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0).chat.completions.create(
        model=MODELS["gemini"],
        messages=[
            {
                "role": "user",
                "content": [{"type": "text", "text": "what?"}, {"type": "image_url", "image_url": {"url": url}}],
            }
        ],
    )


def test_url_image_is_fetched_and_inlined_for_gemini(
    tmp_path: Path, upstreams: Upstreams, images: ServerThread
) -> None:
    gw = start_gateway(three_channel_settings(tmp_path, upstreams, media_fetch_allow_private=True))
    try:
        key = gw.create_key("media")
        assert ask(gw.base_url, key, images.url + "/cat.png").choices[0].message.content
        parts = upstreams.last_body("gemini")["contents"][0]["parts"]
        inline = [p.get("inlineData") or p.get("inline_data") for p in parts if "inlineData" in p or "inline_data" in p]
        assert inline and base64.b64decode(inline[0]["data"]) == PNG
        with pytest.raises(openai.BadRequestError) as not_image:
            ask(gw.base_url, key, images.url + "/page")
        assert "did not return an image" in not_image.value.message
    finally:
        gw.server.stop()


def test_private_addresses_are_never_fetched_by_default(
    tmp_path: Path, upstreams: Upstreams, images: ServerThread
) -> None:
    gw = start_gateway(three_channel_settings(tmp_path, upstreams))
    try:
        key = gw.create_key("media")
        for url in (images.url + "/cat.png", "http://localhost:1/x.png"):
            with pytest.raises(openai.BadRequestError) as refused:
                ask(gw.base_url, key, url)
            assert refused.value.body["param"] == "messages"  # type: ignore[index]
            assert "non-public address" in refused.value.message
        with pytest.raises(openai.BadRequestError) as not_http:  # refused by the translator before any fetch
            ask(gw.base_url, key, "file:///etc/passwd")
        assert not_http.value.body["param"] == "image_url"  # type: ignore[index]
    finally:
        gw.server.stop()
