"""Garbage at the door: hypothesis-made bodies and multipart forms posted to each surface get an answer in that
surface's error shape with a 4xx status (or a 200, when the garbage happens to be a valid call), never a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omnirelay.config import ChannelConfig, Settings
from tests.conftest import UPSTREAM_KEY, GatewayHarness, database_url_for, start_gateway
from tests.formats.test_fuzz import BODIES, BOUNDARY, SHAPED, multipart_bodies
from tests.harness import ServerThread

DOOR = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@dataclass(frozen=True)
class Surface:
    path: str
    headers: dict[str, str]
    """``{key}`` stands for the client key."""
    body: st.SearchStrategy[Any]

    def error_shape_ok(self, payload: Any) -> bool:
        if "anthropic-version" in self.headers:
            return payload.get("type") == "error" and isinstance(payload.get("error"), dict)
        return isinstance(payload.get("error"), dict) and "message" in payload["error"]


SURFACES = {
    "openai": Surface("/v1/chat/completions", {"authorization": "Bearer {key}"}, BODIES["openai"]),
    "anthropic": Surface(
        "/v1/messages", {"x-api-key": "{key}", "anthropic-version": "2023-06-01"}, BODIES["anthropic"]
    ),
    "gemini": Surface("/v1beta/models/gpt-4o-mini:generateContent", {"x-goog-api-key": "{key}"}, BODIES["gemini"]),
}
BODY_BYTES = st.one_of(st.binary(max_size=300), SHAPED.map(orjson.dumps))


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, openai_sim: ServerThread) -> Iterator[GatewayHarness]:
    settings_ = Settings(
        database_url=database_url_for("sqlite", tmp_path_factory.mktemp("db")),
        channels=[
            ChannelConfig(
                name="main",
                base_url=openai_sim.url + "/v1",
                api_keys=[UPSTREAM_KEY],
                models=["gpt-4o-mini", "m", "whisper-1", "gpt-image-1", "dall-e-2"],
            )
        ],
    )
    harness = start_gateway(settings_)
    harness.keys["k"] = harness.create_key("fuzz")
    yield harness
    harness.server.stop()


def post(gw: GatewayHarness, surface: Surface, content: bytes, content_type: str = "application/json") -> None:
    headers = {name: value.replace("{key}", gw.keys["k"]) for name, value in surface.headers.items()}
    answer = httpx.post(
        gw.server.url + surface.path, content=content, headers={**headers, "content-type": content_type}, timeout=30
    )
    assert answer.status_code < 500, (answer.status_code, answer.text[:300], content[:300])
    if answer.status_code >= 400:
        assert surface.error_shape_ok(answer.json()), answer.text[:300]


@pytest.mark.parametrize("name", sorted(SURFACES))
def test_garbage_bodies_get_4xx(gw: GatewayHarness, name: str) -> None:
    surface = SURFACES[name]

    @DOOR
    @given(st.one_of(surface.body.map(orjson.dumps), BODY_BYTES))
    def check(content: bytes) -> None:
        post(gw, surface, content)

    check()


@pytest.mark.parametrize("path", ["/v1/audio/transcriptions", "/v1/images/edits"])
def test_garbage_multipart_forms_get_4xx(gw: GatewayHarness, path: str) -> None:
    surface = Surface(path, {"authorization": "Bearer {key}"}, st.nothing())
    content_types = st.sampled_from(
        [
            f"multipart/form-data; boundary={BOUNDARY}",
            f'multipart/form-data; boundary="{BOUNDARY}"',
            "multipart/form-data",
            "multipart/form-data; boundary=other",
            "application/json",
        ]
    )

    @DOOR
    @given(st.one_of(multipart_bodies(), st.binary(max_size=300)), content_types)
    def check(content: bytes, content_type: str) -> None:
        post(gw, surface, content, content_type)

    check()
