"""Ideogram 3.0 and Recraft under their own path prefixes, through the gateway with ``httpx`` (neither vendor has
an official Python SDK), over real sockets to their simulators, on SQLite and PostgreSQL.

Each route gets the request its vendor documents; answers are checked as a client would (the image behind the
returned URL decoded to the size asked for), and every bill is worked out here from list prices and what came back.
"""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from omnirelay.api.image_vendors import IDEOGRAM_SPEEDS
from omnirelay.config import ChannelConfig, Settings
from omnirelay.formats.image_probe import image_size
from omnirelay.simulators import media
from omnirelay.simulators.common import SimulatorState
from omnirelay.simulators.image_vendors import create_ideogram_simulator, create_recraft_simulator
from omnirelay.store.models import UsageLog
from tests.conftest import GatewayHarness, start_gateway
from tests.harness import ServerThread

IDEOGRAM_KEY = "ideogram-upstream-secret-0123456789"
RECRAFT_KEY = "recraft-upstream-secret-0123456789"
UPLOAD_LIMIT = 1_000_000
IDEOGRAM_MODELS = ["ideogram-v3", "ideogram-upscale", "ideogram-describe"]
RECRAFT_MODELS = [
    "recraftv3",
    "recraftv2",
    "recraft-vectorize",
    "recraft-remove-background",
    "recraft-clarity-upscale",
    "recraft-generative-upscale",
    "recraft-style",
]


def micros(usd: str) -> int:
    return int(Fraction(usd) * 1_000_000)


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


@pytest.fixture(scope="module")
def gw(database_url: str, sims: dict[str, ServerThread]) -> Iterator[GatewayHarness]:
    settings = Settings(
        database_url=database_url,
        image_upload_max_bytes=UPLOAD_LIMIT,
        channels=[
            ChannelConfig(
                name="ideogram",
                type="ideogram",
                base_url=sims["ideogram"].url,
                api_keys=[IDEOGRAM_KEY],
                models=IDEOGRAM_MODELS,
            ),
            ChannelConfig(
                name="recraft",
                type="recraft",
                base_url=sims["recraft"].url + "/v1",
                api_keys=[RECRAFT_KEY],
                models=RECRAFT_MODELS,
            ),
        ],
    )
    harness = start_gateway(settings)
    yield harness
    harness.server.stop()


@pytest.fixture(scope="module")
def client(gw: GatewayHarness) -> Iterator[httpx.Client]:
    key = gw.create_key("images")
    with httpx.Client(base_url=gw.server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        yield http


def usage_row(gw: GatewayHarness, response: httpx.Response) -> UsageLog:
    gw.flush_usage()
    request_id = response.headers["x-request-id"]

    async def read() -> UsageLog:
        async with gw.gateway.sessions() as session:
            row = await session.scalar(select(UsageLog).where(UsageLog.request_id == request_id))
            assert row is not None, f"no usage row for {request_id}"
            return row

    return gw.run(read())  # type: ignore[no-any-return]


def sim_requests(sim: ServerThread) -> list[dict[str, Any]]:
    return httpx.get(sim.url + "/_sim/requests").json()["requests"]  # type: ignore[no-any-return]


def fetched_size(url: str) -> tuple[int, int] | None:
    return image_size(httpx.get(url).content)


# ---------------------------------------------------------------------------------------------------- Ideogram


def test_ideogram_generate_multipart(gw: GatewayHarness, client: httpx.Client, sims: dict[str, ServerThread]) -> None:
    response = client.post(
        "/ideogram/v1/ideogram-v3/generate",
        files={
            "prompt": (None, "A poster that says HELLO"),
            "rendering_speed": (None, "TURBO"),
            "aspect_ratio": (None, "16x9"),
            "num_images": (None, "2"),
        },
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) == {"created", "data"} and len(answer["data"]) == 2
    for item in answer["data"]:
        assert item["is_image_safe"] is True and isinstance(item["seed"], int)
        width, height = map(int, item["resolution"].split("x"))
        assert width > height  # 16x9
        assert fetched_size(item["url"]) == (width, height)
    assert answer["data"][0]["url"] != answer["data"][1]["url"]
    # The gateway keeps no results here (``tasks.store_results`` off): the vendor's links are passed through.
    assert all(item["url"].startswith(sims["ideogram"].url + "/_sim/files/") for item in answer["data"])
    # The upstream got Ideogram's own header with the channel's key, never the client's gateway key.
    upstream = sim_requests(sims["ideogram"])[-1]
    assert upstream["path"] == "/v1/ideogram-v3/generate"
    assert upstream["headers"]["api-key"] == IDEOGRAM_KEY
    assert "authorization" not in upstream["headers"]
    row = usage_row(gw, response)
    assert row.status_code == 200 and row.endpoint == "ideogram.ideogram_generate" and row.model == "ideogram-v3"
    assert row.cost_micros == 2 * micros("0.03")  # TURBO


def test_ideogram_generate_json_body_default_speed(gw: GatewayHarness, client: httpx.Client) -> None:
    """Ideogram's own example posts JSON to generate; the default rendering speed is priced as balanced."""
    response = client.post("/ideogram/v1/ideogram-v3/generate", json={"prompt": "A cat", "resolution": "832x1216"})
    assert response.status_code == 200, response.text
    assert fetched_size(response.json()["data"][0]["url"]) == (832, 1216)
    assert usage_row(gw, response).cost_micros == micros("0.06")


def test_ideogram_flash_bills_the_flash_price(gw: GatewayHarness, client: httpx.Client) -> None:
    response = client.post(
        "/ideogram/v1/ideogram-v3/generate",
        json={"prompt": "A quick sketch", "rendering_speed": "FLASH", "num_images": 3},
    )
    assert response.status_code == 200, response.text
    assert usage_row(gw, response).cost_micros == 3 * micros("0.03")


def test_every_rendering_speed_has_its_own_price() -> None:
    """A speed without a price key would bill the default silently (as FLASH once did)."""
    table = json.loads(importlib.resources.files("omnirelay.data").joinpath("prices.json").read_text())
    assert set(IDEOGRAM_SPEEDS.values()) <= set(table["models"]["ideogram-v3"]["per_image"])


def test_ideogram_edit_with_mask(gw: GatewayHarness, client: httpx.Client) -> None:
    response = client.post(
        "/ideogram/v1/ideogram-v3/edit",
        data={"prompt": "A photo of a cat wearing a hat.", "rendering_speed": "QUALITY"},
        files={
            "image": ("cat.png", media.png(640, 480, "cat"), "image/png"),
            "mask": ("mask.jpg", media.jpeg(640, 480, "mask"), "image/jpeg"),
        },
    )
    assert response.status_code == 200, response.text
    item = response.json()["data"][0]
    assert item["resolution"] == "640x480" and fetched_size(item["url"]) == (640, 480)
    assert usage_row(gw, response).cost_micros == micros("0.09")


def test_ideogram_edit_mask_of_another_size_refused_unbilled(
    gw: GatewayHarness, client: httpx.Client, sims: dict[str, ServerThread]
) -> None:
    before = len(sim_requests(sims["ideogram"]))
    response = client.post(
        "/ideogram/v1/ideogram-v3/edit",
        data={"prompt": "add a hat"},
        files={
            "image": ("cat.png", media.png(640, 480, "cat"), "image/png"),
            "mask": ("mask.png", media.png(320, 240, "mask"), "image/png"),
        },
    )
    assert response.status_code == 400
    assert response.json() == {"error": "The mask must be the same size as the image (mask 320x240, image 640x480)."}
    assert len(sim_requests(sims["ideogram"])) == before  # refused before admission: never sent, nothing held


def test_ideogram_missing_prompt_and_not_an_image(client: httpx.Client) -> None:
    response = client.post("/ideogram/v1/ideogram-v3/generate", files={"rendering_speed": (None, "TURBO")})
    assert response.status_code == 400 and response.json() == {"error": "Missing required parameter: 'prompt'."}
    response = client.post(
        "/ideogram/v1/ideogram-v3/remix",
        data={"prompt": "in watercolor"},
        files={"image": ("notes.png", b"just some text, renamed", "image/png")},
    )
    assert response.status_code == 400
    assert "not a PNG, JPEG or WEBP image" in response.json()["error"]
    response = client.post(
        "/ideogram/v1/ideogram-v3/generate", files={"prompt": (None, "x"), "rendering_speed": (None, "WARP")}
    )
    assert response.status_code == 400 and "rendering_speed" in response.json()["error"]


def test_ideogram_oversized_upload_refused(gw: GatewayHarness, client: httpx.Client) -> None:
    big = media.png(64, 64, "big") + b"\x00" * (UPLOAD_LIMIT + 1)
    response = client.post(
        "/ideogram/v1/ideogram-v3/remix", data={"prompt": "bigger"}, files={"image": ("big.png", big, "image/png")}
    )
    assert response.status_code == 413
    assert set(response.json()) == {"error"} and "larger than" in response.json()["error"]


def test_ideogram_remix_upscale_describe(gw: GatewayHarness, client: httpx.Client) -> None:
    remix = client.post(
        "/ideogram/v1/ideogram-v3/remix",
        data={"prompt": "as a woodblock print", "image_weight": "50", "rendering_speed": "DEFAULT"},
        files={"image": ("in.webp", media.webp(512, 768, "in"), "image/webp")},
    )
    assert remix.status_code == 200, remix.text
    assert fetched_size(remix.json()["data"][0]["url"]) == (512, 768)
    assert usage_row(gw, remix).cost_micros == micros("0.06")

    upscale = client.post(
        "/ideogram/upscale",
        data={"image_request": json.dumps({"resemblance": 55, "detail": 90})},
        files={"image_file": ("small.png", media.png(400, 300, "small"), "image/png")},
    )
    assert upscale.status_code == 200, upscale.text
    item = upscale.json()["data"][0]
    assert item["upscaled_resolution"] == "800x600" and fetched_size(item["url"]) == (800, 600)
    assert usage_row(gw, upscale).cost_micros == micros("0.06")

    describe = client.post(
        "/ideogram/describe", files={"image_file": ("x.jpg", media.jpeg(300, 200, "x"), "image/jpeg")}
    )
    assert describe.status_code == 200, describe.text
    assert "300x200" in describe.json()["descriptions"][0]["text"]
    row = usage_row(gw, describe)
    assert row.model == "ideogram-describe" and row.cost_micros == micros("0.01")


def test_ideogram_failed_upstream_call_is_not_billed(gw: GatewayHarness, client: httpx.Client) -> None:
    response = client.post(
        "/ideogram/v1/ideogram-v3/generate",
        files={"prompt": (None, "A lighthouse [sim fault=500]"), "rendering_speed": (None, "TURBO")},
    )
    assert response.status_code == 502
    assert set(response.json()) == {"error"}
    assert IDEOGRAM_KEY not in response.text
    row = usage_row(gw, response)
    assert row.status_code == 502 and row.cost_micros == 0


def test_ideogram_safety_refusal_reaches_the_client_unbilled(gw: GatewayHarness, client: httpx.Client) -> None:
    """Ideogram answers 422 when a prompt fails its safety check: the client sees that status in Ideogram's shape."""
    response = client.post(
        "/ideogram/v1/ideogram-v3/generate", files={"prompt": (None, "something unsafe [sim fault=422]")}
    )
    assert response.status_code == 422
    assert set(response.json()) == {"error"}
    row = usage_row(gw, response)
    assert row.status_code == 422 and row.cost_micros == 0


# ----------------------------------------------------------------------------------------------------- Recraft


def test_recraft_raster_generation(gw: GatewayHarness, client: httpx.Client, sims: dict[str, ServerThread]) -> None:
    response = client.post(
        "/recraft/v1/images/generations",
        json={"prompt": "race car on a track", "style": "digital_illustration", "size": "1365x1024", "n": 2},
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["credits"] == 80 and len(answer["data"]) == 2
    assert all(fetched_size(item["url"]) == (1365, 1024) for item in answer["data"])
    upstream = sim_requests(sims["recraft"])[-1]
    assert upstream["path"] == "/v1/images/generations"
    assert upstream["headers"]["authorization"] == f"Bearer {RECRAFT_KEY}"
    assert json.loads(upstream["body"])["model"] == "recraftv3"  # the vendor's default, named for the upstream
    row = usage_row(gw, response)
    assert row.model == "recraftv3" and row.cost_micros == 2 * micros("0.04")


def test_recraft_vector_style_returns_svg_at_the_vector_price(gw: GatewayHarness, client: httpx.Client) -> None:
    response = client.post(
        "/recraft/v1/images/generations",
        json={"prompt": "a fox logo", "style": "vector_illustration", "model": "recraftv3", "size": "1024x1024"},
    )
    assert response.status_code == 200, response.text
    url = response.json()["data"][0]["url"]
    svg = httpx.get(url)
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.content.startswith(b"<svg") and b'width="1024" height="1024"' in svg.content
    assert usage_row(gw, response).cost_micros == micros("0.08")


def test_recraft_missing_prompt_in_recrafts_error_shape(client: httpx.Client) -> None:
    response = client.post("/recraft/v1/images/generations", json={"style": "realistic_image"})
    assert response.status_code == 400
    assert response.json() == {"code": "invalid_parameter", "message": "Missing required parameter: 'prompt'."}
    response = client.post("/recraft/v1/images/generations", json={"prompt": "x", "n": 7})
    assert response.status_code == 400 and response.json()["message"] == "'n' must be an integer from 1 to 6."


@pytest.mark.parametrize(
    ("path", "model", "price", "kind", "scale"),
    [
        ("vectorize", "recraft-vectorize", "0.01", "svg", 1),
        ("removeBackground", "recraft-remove-background", "0.01", "png", 1),
        ("clarityUpscale", "recraft-clarity-upscale", "0.004", "png", 2),
        ("generativeUpscale", "recraft-generative-upscale", "0.25", "png", 2),
    ],
)
def test_recraft_image_operations(
    gw: GatewayHarness, client: httpx.Client, path: str, model: str, price: str, kind: str, scale: int
) -> None:
    response = client.post(
        f"/recraft/v1/images/{path}", files={"file": ("in.png", media.png(300, 200, path), "image/png")}
    )
    assert response.status_code == 200, response.text
    url = response.json()["image"]["url"]
    content = httpx.get(url).content
    if kind == "svg":
        assert content.startswith(b"<svg") and b'width="300" height="200"' in content
    else:
        assert image_size(content) == (300 * scale, 200 * scale)
    row = usage_row(gw, response)
    assert row.model == model and row.cost_micros == micros(price)


def test_recraft_create_style_and_bad_files(gw: GatewayHarness, client: httpx.Client) -> None:
    response = client.post(
        "/recraft/v1/styles",
        data={"style": "digital_illustration"},
        files=[
            ("files", ("a.png", media.png(64, 64, "a"), "image/png")),
            ("files", ("b.png", media.png(64, 64, "b"), "image/png")),
        ],
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["id"]) == 36
    assert usage_row(gw, response).cost_micros == micros("0.04")
    response = client.post("/recraft/v1/images/vectorize", files={"file": ("a.txt", b"hello", "text/plain")})
    assert response.status_code == 400 and response.json()["code"] == "invalid_parameter"
    response = client.post("/recraft/v1/images/vectorize", files={"response_format": (None, "url")})
    assert response.status_code == 400 and response.json()["message"] == "Missing required parameter: 'file'."
    response = client.post("/recraft/v1/images/vectorize", data={"response_format": "url"})
    assert response.status_code == 400 and response.json()["message"] == "The request must be multipart/form-data."


def test_recraft_styles_created_then_listed(gw: GatewayHarness, client: httpx.Client) -> None:
    """``POST /recraft/v1/styles`` answers the new style (billed); ``GET`` lists the account's styles (free)."""
    created = client.post(
        "/recraft/v1/styles",
        data={"style": "vector_illustration"},
        files=[("files", ("ref.png", media.png(96, 64, "list-me"), "image/png"))],
    )
    assert created.status_code == 200, created.text
    style = created.json()
    assert style["style"] == "vector_illustration" and style["is_private"] is True and style["credits"] == 40
    listed = client.get("/recraft/v1/styles")
    assert listed.status_code == 200, listed.text
    styles = listed.json()["styles"]
    mine = next(s for s in styles if s["id"] == style["id"])
    assert mine == {k: v for k, v in style.items() if k != "credits"}
    assert set(mine) == {"id", "style", "is_private", "creation_time"}
    gw.flush_usage()
    assert usage_row(gw, created).cost_micros == micros("0.04")
    # Listing is not a call anyone pays for: no usage row carries its request id.
    request_id = listed.headers.get("x-request-id")

    async def rows() -> int:
        async with gw.gateway.sessions() as session:
            found = await session.scalars(select(UsageLog).where(UsageLog.request_id == request_id))
            return len(found.all())

    assert request_id is None or gw.run(rows()) == 0


def test_recraft_styles_need_a_key_allowed_the_styles_model(gw: GatewayHarness) -> None:
    response = httpx.get(gw.server.url + "/recraft/v1/styles")
    assert response.status_code == 401 and set(response.json()) == {"code", "message"}
    narrow = gw.create_key("no-styles", models=["recraftv3"])
    response = httpx.get(gw.server.url + "/recraft/v1/styles", headers={"Authorization": f"Bearer {narrow}"})
    assert response.status_code == 403 and set(response.json()) == {"code", "message"}


def test_recraft_oversized_upload(client: httpx.Client) -> None:
    big = media.png(64, 64, "big") + b"\x00" * (UPLOAD_LIMIT + 1)
    response = client.post("/recraft/v1/images/removeBackground", files={"file": ("big.png", big, "image/png")})
    assert response.status_code == 413 and response.json()["code"] == "request_too_large"


def test_vendor_routes_need_a_gateway_key(gw: GatewayHarness) -> None:
    response = httpx.post(gw.server.url + "/recraft/v1/images/generations", json={"prompt": "x"})
    assert response.status_code == 401 and set(response.json()) == {"code", "message"}
    response = httpx.post(
        gw.server.url + "/ideogram/v1/ideogram-v3/generate",
        json={"prompt": "x"},
        headers={"Authorization": "Bearer sk-wrong"},
    )
    assert response.status_code == 401 and set(response.json()) == {"error"}
