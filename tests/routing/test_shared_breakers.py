"""Breaker state shared between instances through Redis: one opens, all are open; a probe closes it everywhere."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from omnirelay.config import BreakerConfig, ChannelConfig, Settings
from tests.conftest import REDIS_URL, UPSTREAM_KEY, GatewayHarness, start_gateway
from tests.routing.conftest import Sims


def redis_or_skip() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, sims: Sims) -> Settings:
    redis_or_skip()
    database = Path(tmp_path_factory.mktemp("shared")) / "omnirelay.db"
    return Settings(
        database_url=f"sqlite:///{database}",
        redis_url=REDIS_URL,
        redis_namespace=f"test-breakers-{uuid.uuid4().hex[:8]}",
        channels=[
            ChannelConfig(
                name="flapping", base_url=sims.healthy.url + "/v1", api_keys=[UPSTREAM_KEY], models=["gpt-4o-mini"]
            )
        ],
        breaker=BreakerConfig(failure_threshold=2, open_s=3.0),
    )


@pytest.fixture(scope="module")
def pair(settings: Settings) -> Iterator[tuple[GatewayHarness, GatewayHarness]]:
    first, second = start_gateway(settings), start_gateway(settings)
    first.keys["k"] = first.create_key("k")
    yield first, second
    first.server.stop()
    second.server.stop()


def state(gw: GatewayHarness, target: str) -> str:
    found: str = gw.gateway.board.state_of(target, time.time()).state
    return found


def wait_state(gw: GatewayHarness, target: str, expected: str, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while state(gw, target) != expected:
        assert time.monotonic() < deadline, f"{target} is {state(gw, target)}, not {expected}"
        time.sleep(0.02)


def test_a_breaker_opened_on_one_instance_is_open_on_the_others(
    pair: tuple[GatewayHarness, GatewayHarness], settings: Settings, sims: Sims
) -> None:
    first, second = pair
    target = f"channel:{first.gateway.snapshot.channels[0].id}"
    sdk = openai.OpenAI(base_url=first.base_url, api_key=first.keys["k"], max_retries=0)
    httpx.post(sims.healthy.url + "/_sim/faults", json={"faults": ["500", "500"]})
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert state(first, target) == "open"
    wait_state(second, target, "open")

    late = start_gateway(settings)  # an instance that starts now reads what is open from Redis
    try:
        wait_state(late, target, "open")
    finally:
        late.server.stop()

    until = first.gateway.board.state_of(target, time.time()).until
    assert until is not None
    time.sleep(max(0.0, until - time.time()) + 0.05)  # the open time passes: the next call is the probe
    assert sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert state(first, target) == "closed"
    wait_state(second, target, "closed")
