"""Other vendors' image models through the OpenAI images shape (``/v1/images/generations`` and ``/edits``) on an
OpenAI-compatible channel, with the official ``openai`` SDK: qwen-image and qwen-image-edit, Seedream and
SeedEdit, Flux, Recraft V3. Each is billed per image returned at its list price (``prices.json``)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from fractions import Fraction

import httpx
import openai
import pytest
from sqlalchemy import select

from omnirelay.config import ChannelConfig, Settings
from omnirelay.formats.image_probe import image_size
from omnirelay.simulators import media
from omnirelay.store.models import UsageLog
from tests.conftest import SQLITE_ONLY, UPSTREAM_KEY, GatewayHarness, start_gateway
from tests.harness import ServerThread

pytestmark = SQLITE_ONLY

GENERATION_MODELS = {
    "qwen-image": "0.035",
    "doubao-seedream-3-0-t2i-250415": "0.03",
    "seedream-4.0": "0.03",
    "flux-schnell": "0.003",
    "recraftv3": "0.04",
}
EDIT_MODELS = {"qwen-image-edit": "0.045", "doubao-seededit-3-0-i2i-250628": "0.03", "flux-kontext-pro": "0.04"}


@pytest.fixture(scope="module")
def gw(database_url: str, openai_sim: ServerThread) -> Iterator[GatewayHarness]:
    channel = ChannelConfig(
        name="compatible",
        type="openai-compatible",
        base_url=openai_sim.url + "/v1",
        api_keys=[UPSTREAM_KEY],
        models=[*GENERATION_MODELS, *EDIT_MODELS],
    )
    harness = start_gateway(Settings(database_url=database_url, channels=[channel]))
    yield harness
    harness.server.stop()


@pytest.fixture(scope="module")
def client(gw: GatewayHarness) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=gw.create_key("images"), max_retries=0)


def cost_of(gw: GatewayHarness, request_id: str) -> int:
    gw.flush_usage()

    async def read() -> int:
        async with gw.gateway.sessions() as session:
            row = await session.scalar(select(UsageLog).where(UsageLog.request_id == request_id))
            assert row is not None and row.status_code == 200
            return row.cost_micros

    return gw.run(read())  # type: ignore[no-any-return]


@pytest.mark.parametrize("model", list(GENERATION_MODELS))
def test_generation(gw: GatewayHarness, client: openai.OpenAI, model: str) -> None:
    raw = client.images.with_raw_response.generate(model=model, prompt="a red fox", size="1328x1328", n=2)
    urls = [item.url for item in raw.parse().data]
    assert len(urls) == 2 and all(image_size(httpx.get(str(u)).content) == (1328, 1328) for u in urls)
    assert cost_of(gw, raw.headers["x-request-id"]) == 2 * int(Fraction(GENERATION_MODELS[model]) * 1_000_000)


@pytest.mark.parametrize("model", list(EDIT_MODELS))
def test_edit(gw: GatewayHarness, client: openai.OpenAI, model: str) -> None:
    raw = client.images.with_raw_response.edit(
        model=model,
        image=("in.png", media.png(512, 512, model), "image/png"),
        prompt="make it night",
        size="512x512",
        response_format="b64_json",
    )
    (item,) = raw.parse().data
    assert image_size(base64.b64decode(item.b64_json or "")) == (512, 512)
    assert cost_of(gw, raw.headers["x-request-id"]) == int(Fraction(EDIT_MODELS[model]) * 1_000_000)
