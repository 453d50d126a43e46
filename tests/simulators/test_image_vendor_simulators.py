"""The Ideogram and Recraft simulators on their own: vendor shapes, real images, keys, faults."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest

from omnirelay.formats.image_probe import image_kind, image_size
from omnirelay.simulators import media
from omnirelay.simulators.common import SimulatorState
from omnirelay.simulators.image_vendors import create_ideogram_simulator, create_recraft_simulator
from tests.harness import ServerThread


@pytest.fixture(scope="module")
def ideogram() -> Iterator[httpx.Client]:
    server = ServerThread(create_ideogram_simulator(SimulatorState(api_keys=frozenset({"ik"})))).start()
    with httpx.Client(base_url=server.url, headers={"Api-Key": "ik"}) as client:
        yield client
    server.stop()


@pytest.fixture(scope="module")
def recraft() -> Iterator[httpx.Client]:
    server = ServerThread(create_recraft_simulator(SimulatorState(api_keys=frozenset({"rk"})))).start()
    with httpx.Client(base_url=server.url, headers={"Authorization": "Bearer rk"}) as client:
        yield client
    server.stop()


def test_ideogram_key_and_error_shape(ideogram: httpx.Client) -> None:
    bad = ideogram.post("/v1/ideogram-v3/generate", files={"prompt": (None, "x")}, headers={"Api-Key": "nope"})
    assert bad.status_code == 401 and bad.json() == {"error": "Invalid API key."}
    missing = ideogram.post("/v1/ideogram-v3/generate", files={"rendering_speed": (None, "TURBO")})
    assert missing.status_code == 400 and set(missing.json()) == {"error"}


def test_ideogram_same_seed_same_image_and_sizes(ideogram: httpx.Client) -> None:
    def generate(seed: str) -> bytes:
        answer = ideogram.post(
            "/v1/ideogram-v3/generate",
            files={"prompt": (None, "fox"), "seed": (None, seed), "resolution": (None, "704x1408")},
        ).json()
        return httpx.get(answer["data"][0]["url"]).content

    first, again, other = generate("7"), generate("7"), generate("8")
    assert first == again != other and image_size(first) == (704, 1408)


def test_ideogram_status_fault_and_queued_fault(ideogram: httpx.Client) -> None:
    limited = ideogram.post(
        "/v1/ideogram-v3/generate",
        files={"prompt": (None, "x")},
        headers={"x-sim-fault": "429", "x-sim-retry-after": "3"},
    )
    assert limited.status_code == 429 and limited.headers["retry-after"] == "3" and "error" in limited.json()
    ideogram.post("/_sim/faults", json={"faults": ["503"]})
    assert ideogram.post("/v1/ideogram-v3/generate", files={"prompt": (None, "x")}).status_code == 503
    assert ideogram.post("/v1/ideogram-v3/generate", files={"prompt": (None, "x")}).status_code == 200


def test_recraft_shapes(recraft: httpx.Client) -> None:
    raster = recraft.post(
        "/v1/images/generations", json={"prompt": "fox", "size": "1024x1707", "response_format": "b64_json"}
    ).json()
    image = base64.b64decode(raster["data"][0]["b64_json"])
    assert image_kind(image) == "png" and image_size(image) == (1024, 1707) and raster["credits"] == 40
    vector = recraft.post("/v1/images/generations", json={"prompt": "fox", "model": "recraftv3_vector"}).json()
    assert httpx.get(vector["data"][0]["url"]).content.startswith(b"<svg")
    refused = recraft.post("/v1/images/generations", json={"prompt": "fox", "model": "dall-e-3"})
    assert refused.status_code == 400 and refused.json()["code"] == "invalid_parameter"
    unauthorized = recraft.post("/v1/images/vectorize", headers={"Authorization": "Bearer wrong"})
    assert unauthorized.status_code == 401 and set(unauthorized.json()) == {"code", "message"}
    removed = recraft.post(
        "/v1/images/removeBackground", files={"file": ("a.jpg", media.jpeg(96, 64, "a"), "image/jpeg")}
    )
    assert image_size(httpx.get(removed.json()["image"]["url"]).content) == (96, 64)
