"""Gemini image models (gemini-2.5-flash-image) through the gateway, on SQLite: natively with
``google-genai`` (``inlineData`` passed through), and from the ``openai`` SDK (chat completions answer with
``message.images`` / ``delta.images``, the OpenRouter shape; the Responses API with ``image_generation_call`` items).
Every image is decoded as a real PNG of the size asked for; billing is the output tokens Gemini reports (1290 per
image), at the model's output rate."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types as gtypes

from omnirelay.billing.cost import cost_of_tokens
from omnirelay.formats.usage import Usage
from tests.api.test_matrix import MODELS, Upstreams, start_upstreams, three_channel_settings
from tests.conftest import SQLITE_ONLY, GatewayHarness, start_gateway

pytestmark = SQLITE_ONLY

IMAGE_MODEL = "gemini-2.5-flash-image"
IMAGE_TOKENS = 1290
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Upstreams]:
    servers = start_upstreams()
    yield servers
    servers.stop()


@pytest.fixture(scope="module")
def gw(database_url: str, upstreams: Upstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHarness]:
    settings = three_channel_settings(tmp_path_factory.mktemp("gimg"), upstreams, {"gemini": [IMAGE_MODEL]})
    harness = start_gateway(settings.model_copy(update={"database_url": database_url}))
    harness.keys["all"] = harness.create_key("all")
    yield harness
    harness.server.stop()


@pytest.fixture(autouse=True)
def _reset(upstreams: Upstreams) -> None:
    upstreams.reset()


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def from_data_url(url: str) -> bytes:
    head, _, payload = url.partition(",")
    assert head == "data:image/png;base64"
    return base64.b64decode(payload)


def usage_rows(gw: GatewayHarness) -> list[Any]:
    from sqlalchemy import select

    from omnirelay.store.models import UsageLog

    gw.flush_usage()

    async def read() -> list[Any]:
        async with gw.gateway.sessions() as session:
            return list((await session.scalars(select(UsageLog).order_by(UsageLog.id))).all())

    return gw.run(read())


def check_billed(gw: GatewayHarness, before: int, endpoint: str, output_tokens: int) -> None:
    rows = usage_rows(gw)[before:]
    assert len(rows) == 1
    row = rows[0]
    assert (row.endpoint, row.model, row.status_code) == (endpoint, IMAGE_MODEL, 200)
    assert row.completion_tokens == output_tokens >= IMAGE_TOKENS
    price = gw.gateway.billing.price_for(IMAGE_MODEL)
    assert row.cost_micros == cost_of_tokens(price, Usage(row.prompt_tokens, row.completion_tokens))
    assert row.cost_micros >= 38_700  # 1290 image tokens at $30/M: about $0.039 an image


_GENAI: dict[str, genai.Client] = {}


def gclient(gw: GatewayHarness) -> genai.Client:
    key = gw.keys["all"]
    if key not in _GENAI:
        options = gtypes.HttpOptions(base_url=gw.server.url, api_version="v1beta")
        _GENAI[key] = genai.Client(api_key=key, http_options=options)
    return _GENAI[key]


def oclient(gw: GatewayHarness) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=gw.keys["all"], max_retries=0)


# --- native ---------------------------------------------------------------------------------------------------


def test_native_generate_content_returns_a_png_of_the_aspect_ratio(gw: GatewayHarness) -> None:
    before = len(usage_rows(gw))
    response = gclient(gw).models.generate_content(
        model=IMAGE_MODEL,
        contents="A lighthouse at dusk",
        config=gtypes.GenerateContentConfig(
            response_modalities=["TEXT", "IMAGE"], image_config=gtypes.ImageConfig(aspect_ratio="16:9")
        ),
    )
    parts = response.candidates[0].content.parts  # type: ignore[index,union-attr]
    images = [p.inline_data for p in parts if p.inline_data is not None]  # type: ignore[union-attr]
    assert len(images) == 1 and images[0].mime_type == "image/png"
    assert png_size(images[0].data) == (1344, 768)  # type: ignore[arg-type]
    assert response.text  # the model says something about the picture too
    usage = response.usage_metadata
    assert usage is not None and usage.candidates_token_count is not None
    details = {d.modality.name: d.token_count for d in usage.candidates_tokens_details or []}  # type: ignore[union-attr]
    assert details["IMAGE"] == IMAGE_TOKENS
    check_billed(gw, before, "gemini.chat", usage.candidates_token_count)


def test_native_stream_carries_the_image_in_one_chunk(gw: GatewayHarness) -> None:
    before = len(usage_rows(gw))
    images: list[bytes] = []
    last_usage = None
    for chunk in gclient(gw).models.generate_content_stream(model=IMAGE_MODEL, contents="A red fox"):
        for part in chunk.candidates[0].content.parts or []:  # type: ignore[index,union-attr]
            if part.inline_data is not None:
                images.append(part.inline_data.data)  # type: ignore[arg-type]
        last_usage = chunk.usage_metadata or last_usage
    assert len(images) == 1 and png_size(images[0]) == (1024, 1024)  # image models draw by default, square
    assert last_usage is not None and last_usage.candidates_token_count
    check_billed(gw, before, "gemini.chat", last_usage.candidates_token_count)


def test_text_only_modality_gets_no_image(gw: GatewayHarness) -> None:
    response = gclient(gw).models.generate_content(
        model=IMAGE_MODEL, contents="Describe a fox", config=gtypes.GenerateContentConfig(response_modalities=["TEXT"])
    )
    parts = response.candidates[0].content.parts  # type: ignore[index,union-attr]
    assert all(p.inline_data is None for p in parts)  # type: ignore[union-attr]


# --- OpenAI chat completions -----------------------------------------------------------------------------------


def test_chat_completions_answer_with_message_images(gw: GatewayHarness, upstreams: Upstreams) -> None:
    before = len(usage_rows(gw))
    completion = oclient(gw).chat.completions.create(
        model=IMAGE_MODEL,
        messages=[{"role": "user", "content": "A lighthouse at dusk"}],
        extra_body={"modalities": ["image", "text"]},
    )
    message = completion.choices[0].message
    images: list[dict[str, Any]] = message.images  # type: ignore[attr-defined]
    assert len(images) == 1 and images[0]["type"] == "image_url"
    assert png_size(from_data_url(images[0]["image_url"]["url"])) == (1024, 1024)
    assert message.content  # the text part
    assert upstreams.last_body("gemini")["generationConfig"]["responseModalities"] == ["IMAGE", "TEXT"]
    assert completion.usage is not None
    check_billed(gw, before, "openai.chat", completion.usage.completion_tokens)


def test_chat_completions_stream_sends_delta_images(gw: GatewayHarness) -> None:
    before = len(usage_rows(gw))
    stream = oclient(gw).chat.completions.create(
        model=IMAGE_MODEL,
        messages=[{"role": "user", "content": "A red fox"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    images: list[bytes] = []
    text: list[str] = []
    usage = None
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            for image in getattr(choice.delta, "images", None) or []:
                images.append(from_data_url(image["image_url"]["url"]))
    assert len(images) == 1 and png_size(images[0]) == (1024, 1024)
    assert "".join(text)
    assert usage is not None
    check_billed(gw, before, "openai.chat", usage.completion_tokens)


def test_responses_api_shows_an_image_generation_call(gw: GatewayHarness) -> None:
    response = oclient(gw).responses.create(model=IMAGE_MODEL, input="A lighthouse")
    calls = [item for item in response.output if item.type == "image_generation_call"]
    assert len(calls) == 1 and calls[0].result is not None
    assert png_size(base64.b64decode(calls[0].result)) == (1024, 1024)
    assert response.output_text


def test_image_modality_for_a_model_that_cannot_draw_is_a_400(gw: GatewayHarness) -> None:
    response = httpx.post(
        gw.base_url + "/chat/completions",
        headers={"authorization": f"Bearer {gw.keys['all']}"},
        json={"model": MODELS["anthropic"], "messages": [{"role": "user", "content": "hi"}], "modalities": ["image"]},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "modalities" and "image output" in error["message"]


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
def test_anthropic_client_of_an_image_model_gets_the_text(gw: GatewayHarness, stream: bool) -> None:
    """Anthropic's format has no image output: the text part of the answer is what it can carry."""
    sdk = anthropic.Anthropic(base_url=gw.server.url, api_key=gw.keys["all"], max_retries=0)
    ask: dict[str, Any] = {
        "model": IMAGE_MODEL,
        "max_tokens": 2000,
        "messages": [{"role": "user", "content": 'Draw a fox [sim reply="here is your fox"]'}],
    }
    if stream:
        with sdk.messages.stream(**ask) as events:
            message = events.get_final_message()
    else:
        message = sdk.messages.create(**ask)
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "here is your fox"  # type: ignore[union-attr]
    assert message.usage.output_tokens >= IMAGE_TOKENS  # the picture was still made, and is billed
