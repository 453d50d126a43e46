"""Imagen through Gemini's ``:predict`` (``/v1beta/models/imagen-*:predict``) on a gemini channel (on SQLite),
billed per image returned.

The client is ``httpx``: google-genai's ``generate_images`` only runs in Vertex AI mode (it raises "only supported
in Gemini Enterprise Agent Platform mode" against a Gemini API base URL), so no official client speaks this route
to a custom base URL.
"""

from __future__ import annotations

import base64
import warnings
from collections.abc import Iterator
from fractions import Fraction

import httpx
import pytest
from google import genai
from sqlalchemy import select

from omnirelay.config import ChannelConfig, Settings
from omnirelay.formats.image_probe import image_kind, image_size
from omnirelay.simulators.common import SimulatorState
from omnirelay.simulators.gemini import create_gemini_simulator
from omnirelay.store.models import UsageLog
from tests.conftest import SQLITE_ONLY, GatewayHarness, start_gateway
from tests.harness import ServerThread

pytestmark = SQLITE_ONLY

GEMINI_KEY = "gemini-upstream-secret-0123456789"
MODELS = ["imagen-4.0-generate-001", "imagen-4.0-fast-generate-001", "gemini-2.5-flash"]


@pytest.fixture(scope="module")
def gemini_sim() -> Iterator[ServerThread]:
    server = ServerThread(create_gemini_simulator(SimulatorState(api_keys=frozenset({GEMINI_KEY})))).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gw(database_url: str, gemini_sim: ServerThread) -> Iterator[GatewayHarness]:
    channel = ChannelConfig(name="gemini", type="gemini", base_url=gemini_sim.url, api_keys=[GEMINI_KEY], models=MODELS)
    harness = start_gateway(Settings(database_url=database_url, channels=[channel]))
    yield harness
    harness.server.stop()


@pytest.fixture(scope="module")
def client(gw: GatewayHarness) -> Iterator[httpx.Client]:
    key = gw.create_key("imagen")
    with httpx.Client(base_url=gw.server.url, headers={"x-goog-api-key": key}, timeout=30) as http:
        yield http


def cost_of(gw: GatewayHarness, response: httpx.Response) -> int:
    gw.flush_usage()
    request_id = response.headers["x-request-id"]

    async def read() -> int:
        async with gw.gateway.sessions() as session:
            row = await session.scalar(select(UsageLog).where(UsageLog.request_id == request_id))
            assert row is not None and row.endpoint == "gemini.predict"
            return row.cost_micros

    return gw.run(read())  # type: ignore[no-any-return]


def test_predict_returns_images_of_the_asked_ratio_billed_per_image(gw: GatewayHarness, client: httpx.Client) -> None:
    response = client.post(
        "/v1beta/models/imagen-4.0-generate-001:predict",
        json={
            "instances": [{"prompt": "Robot holding a red skateboard"}],
            "parameters": {"sampleCount": 3, "aspectRatio": "16:9", "outputOptions": {"mimeType": "image/jpeg"}},
        },
    )
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == 3
    images = [base64.b64decode(p["bytesBase64Encoded"]) for p in predictions]
    assert all(p["mimeType"] == "image/jpeg" for p in predictions)
    assert all(image_kind(i) == "jpeg" and image_size(i) == (1408, 768) for i in images)
    assert len(set(images)) == 3
    assert cost_of(gw, response) == 3 * int(Fraction("0.04") * 1_000_000)


def test_predict_fast_model_png_default(gw: GatewayHarness, client: httpx.Client) -> None:
    response = client.post(
        "/v1beta/models/imagen-4.0-fast-generate-001:predict", json={"instances": [{"prompt": "a teapot"}]}
    )
    assert response.status_code == 200, response.text
    (prediction,) = response.json()["predictions"]
    assert image_size(base64.b64decode(prediction["bytesBase64Encoded"])) == (1024, 1024)
    assert cost_of(gw, response) == 20_000


def test_predict_refusals_in_googles_shape(gw: GatewayHarness, client: httpx.Client) -> None:
    missing = client.post("/v1beta/models/imagen-4.0-generate-001:predict", json={"instances": [{}]})
    assert missing.status_code == 400
    assert missing.json()["error"]["status"] == "INVALID_ARGUMENT" and "prompt" in missing.json()["error"]["message"]
    too_many = client.post(
        "/v1beta/models/imagen-4.0-generate-001:predict",
        json={"instances": [{"prompt": "x"}], "parameters": {"sampleCount": 9}},
    )
    assert too_many.status_code == 400 and "sampleCount" in too_many.json()["error"]["message"]
    failed = client.post(
        "/v1beta/models/imagen-4.0-generate-001:predict", json={"instances": [{"prompt": "x [sim fault=500]"}]}
    )
    assert failed.status_code >= 500 and failed.json()["error"]["code"] >= 500
    assert cost_of(gw, failed) == 0


def test_google_genai_generate_images_needs_vertex(gw: GatewayHarness) -> None:
    """Documents why this file uses httpx: the SDK refuses ``generate_images`` outside Vertex AI."""
    client = genai.Client(api_key="k", http_options={"base_url": gw.server.url})
    # The SDK warns that generate_images is deprecated, once per process.
    with warnings.catch_warnings(), pytest.raises(ValueError, match="only supported"):
        warnings.simplefilter("ignore")
        client.models.generate_images(model="imagen-4.0-generate-001", prompt="x")
