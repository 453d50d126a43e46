"""Image results kept by the gateway, or passed through, by the tasks' setting (``tasks.store_results``).

On: every ``url`` of an Ideogram, Recraft or OpenAI-shaped image answer is fetched through the safe fetcher, stored
beside the task results and answered as the gateway's own URL, which keeps serving the image after the vendor's
link is gone. A result the fetcher refuses (a private address, here) keeps the vendor's URL. Off: passed through
(the rest of ``test_image_vendors`` and ``test_media_endpoints`` run that way).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from omnirelay.config import ChannelConfig, Settings, TaskSettings
from omnirelay.formats.image_probe import image_size
from omnirelay.simulators import media
from omnirelay.simulators.common import SimulatorState
from omnirelay.simulators.image_vendors import create_ideogram_simulator, create_recraft_simulator
from tests.conftest import UPSTREAM_KEY, GatewayHarness, database_url_for, start_gateway
from tests.harness import ServerThread

IDEOGRAM_KEY = "ideogram-upstream-secret-0123456789"
RECRAFT_KEY = "recraft-upstream-secret-0123456789"


@pytest.fixture(scope="module")
def sims() -> Iterator[dict[str, ServerThread]]:
    servers = {
        "ideogram": ServerThread(create_ideogram_simulator(SimulatorState(api_keys=frozenset({IDEOGRAM_KEY})))),
        "recraft": ServerThread(create_recraft_simulator(SimulatorState(api_keys=frozenset({RECRAFT_KEY})))),
    }
    for server in servers.values():
        server.start()
    yield servers
    for server in servers.values():
        server.stop()


def settings_for(
    root: Path, sims: dict[str, ServerThread], openai_sim: ServerThread, *, allow_private: bool
) -> Settings:
    return Settings(
        database_url=database_url_for("sqlite", root),
        media_fetch_allow_private=allow_private,  # the simulators are on 127.0.0.1
        tasks=TaskSettings(store_results=True, storage_dir=str(root / "files"), enabled=False),
        channels=[
            ChannelConfig(
                name="ideogram",
                type="ideogram",
                base_url=sims["ideogram"].url,
                api_keys=[IDEOGRAM_KEY],
                models=["ideogram-v3"],
            ),
            ChannelConfig(
                name="recraft",
                type="recraft",
                base_url=sims["recraft"].url + "/v1",
                api_keys=[RECRAFT_KEY],
                models=["recraftv3", "recraft-vectorize"],
            ),
            ChannelConfig(name="openai", base_url=openai_sim.url + "/v1", api_keys=[UPSTREAM_KEY], models=["dall-e-3"]),
        ],
    )


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, sims: dict[str, ServerThread], openai_sim: ServerThread
) -> Iterator[GatewayHarness]:
    harness = start_gateway(settings_for(tmp_path_factory.mktemp("kept"), sims, openai_sim, allow_private=True))
    yield harness
    harness.server.stop()


@pytest.fixture(scope="module")
def key(gw: GatewayHarness) -> str:
    return gw.create_key("kept-results")


def kept(gw: GatewayHarness, url: str) -> bytes:
    assert url.startswith(gw.server.url + "/files/tasks/img_"), url
    response = httpx.get(url)
    assert response.status_code == 200
    return response.content


def test_ideogram_results_are_kept_and_served_by_the_gateway(
    gw: GatewayHarness, key: str, sims: dict[str, ServerThread]
) -> None:
    response = httpx.post(
        gw.server.url + "/ideogram/v1/ideogram-v3/generate",
        headers={"Authorization": f"Bearer {key}"},
        json={"prompt": "A poster", "resolution": "832x1216", "num_images": 2, "rendering_speed": "TURBO"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    urls = [item["url"] for item in data]
    assert len(set(urls)) == 2 and not any(sims["ideogram"].url in url for url in urls)
    assert all(image_size(kept(gw, url)) == (832, 1216) for url in urls)
    assert data[0]["resolution"] == "832x1216" and data[0]["is_image_safe"] is True  # the rest as Ideogram said


def test_recraft_single_result_is_kept_with_its_type(gw: GatewayHarness, key: str) -> None:
    response = httpx.post(
        gw.server.url + "/recraft/v1/images/vectorize",
        headers={"Authorization": f"Bearer {key}"},
        files={"file": ("in.png", media.png(300, 200, "vec"), "image/png")},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    url = response.json()["image"]["url"]
    assert url.endswith(".svg")
    assert kept(gw, url).startswith(b"<svg")
    assert httpx.get(url).headers["content-type"].startswith("image/svg+xml")


def test_openai_image_urls_are_kept(gw: GatewayHarness, key: str) -> None:
    client = openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0)
    result = client.images.generate(model="dall-e-3", prompt="a lighthouse", size="1024x1024", response_format="url")
    assert result.data and result.data[0].url is not None
    assert image_size(kept(gw, result.data[0].url)) == (1024, 1024)
    b64 = client.images.generate(model="dall-e-3", prompt="a lighthouse", response_format="b64_json")
    assert b64.data and b64.data[0].b64_json and b64.data[0].url is None  # nothing to keep


def test_a_result_the_fetcher_refuses_keeps_the_vendors_url(
    tmp_path: Path, sims: dict[str, ServerThread], openai_sim: ServerThread
) -> None:
    """Private addresses are refused unless allowed: the vendor's own link goes back, the call still succeeds."""
    harness = start_gateway(settings_for(tmp_path, sims, openai_sim, allow_private=False))
    try:
        response = httpx.post(
            harness.server.url + "/ideogram/v1/ideogram-v3/generate",
            headers={"Authorization": f"Bearer {harness.create_key('refused')}"},
            json={"prompt": "A poster"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        assert response.json()["data"][0]["url"].startswith(sims["ideogram"].url + "/_sim/files/")
        assert not (tmp_path / "files").exists() or not any((tmp_path / "files").iterdir())
    finally:
        harness.server.stop()
