"""Per-IP throttling of failed client-key authentications, through the official SDKs and in process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest

from omnirelay.config import ChannelConfig, Settings
from omnirelay.limits import auth_throttle
from omnirelay.limits.auth_throttle import AuthThrottle
from tests.conftest import UPSTREAM_KEY, GatewayHarness, database_url_for, start_gateway
from tests.harness import ServerThread


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def gw(tmp_path: Path, openai_sim: ServerThread) -> Iterator[GatewayHarness]:
    settings = Settings(
        database_url=database_url_for("sqlite", tmp_path),
        auth_failures_per_minute=3,
        channels=[
            ChannelConfig(name="main", base_url=openai_sim.url + "/v1", api_keys=[UPSTREAM_KEY], models=["gpt-4o-mini"])
        ],
    )
    harness = start_gateway(settings)
    harness.keys["k"] = harness.create_key("good")
    yield harness
    harness.server.stop()


def ask(gw: GatewayHarness, key: str) -> str:
    reply = openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    return reply.choices[0].message.content or ""


def test_an_address_that_keeps_failing_is_refused_until_it_cools(gw: GatewayHarness) -> None:
    clock = Clock()
    gw.gateway.auth_throttle.clock = clock
    for attempt in range(2):
        with pytest.raises(openai.AuthenticationError):
            ask(gw, f"sk-guess-{attempt:020d}")
    with pytest.raises(openai.RateLimitError) as third:
        ask(gw, "sk-guess-00000000000000000002")
    assert 1 <= int(third.value.response.headers["retry-after"]) <= 60
    # Blocked: even the right key is refused, so a guesser learns nothing from a lucky try...
    with pytest.raises(openai.RateLimitError):
        ask(gw, gw.keys["k"])
    # ...on every surface, in that surface's shape.
    with pytest.raises(anthropic.RateLimitError):
        anthropic.Anthropic(base_url=gw.server.url, api_key=gw.keys["k"], max_retries=0).messages.create(
            model="gpt-4o-mini", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    clock.now += 61  # the failures age out of the window
    assert ask(gw, gw.keys["k"])


def test_successes_and_other_addresses_are_untouched(gw: GatewayHarness) -> None:
    for _ in range(10):
        assert ask(gw, gw.keys["k"])
    assert not gw.gateway.auth_throttle.blocked
    throttle = gw.gateway.auth_throttle
    for _ in range(3):
        throttle.failed("10.0.0.9")
    assert throttle.retry_after("10.0.0.9") is not None
    assert ask(gw, gw.keys["k"])  # the test client calls from 127.0.0.1


def test_the_window_slides() -> None:
    clock = Clock()
    throttle = AuthThrottle(limit=3, window_s=60, clock=clock)
    assert throttle.failed("a") is None
    clock.now += 40
    assert throttle.failed("a") is None
    clock.now += 30  # the first failure left the window
    assert throttle.failed("a") is None
    assert throttle.retry_after("a") is None
    blocked_for = throttle.failed("a")
    assert blocked_for == pytest.approx(30.0)  # until the oldest of the last three (at +40) is 60 s old
    clock.now += 31
    assert throttle.retry_after("a") is None


def test_memory_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth_throttle, "MAX_TRACKED", 100)
    throttle = AuthThrottle(limit=5, window_s=60, clock=Clock())
    for i in range(1000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(throttle._failures) <= 100
