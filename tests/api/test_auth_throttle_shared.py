"""Throttling of failed authentications shared by every instance on one Redis (``SharedAuthThrottle``): an address
that spreads its guesses over two instances is refused by both once the sum reaches the limit."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from omnirelay.config import ChannelConfig, Settings
from omnirelay.limits.auth_throttle import AuthThrottle, SharedAuthThrottle, create_auth_throttle
from omnirelay.limits.memory import MemoryLimiter
from tests.conftest import REDIS_URL, UPSTREAM_KEY, GatewayHarness, database_url_for, start_gateway
from tests.harness import ServerThread

LIMIT = 4


def redis_up() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, openai_sim: ServerThread) -> Iterator[list[GatewayHarness]]:
    if not redis_up():
        if os.environ.get("CI"):
            pytest.fail("Redis must be running in CI")
        pytest.skip("Redis is not reachable")
    namespace = "test-auth-" + uuid.uuid4().hex[:8]
    instances = []
    for name in ("a", "b"):
        settings = Settings(
            database_url=database_url_for("sqlite", tmp_path_factory.mktemp(name)),
            redis_url=REDIS_URL,
            redis_namespace=namespace,
            auth_failures_per_minute=LIMIT,
            channels=[
                ChannelConfig(
                    name="main", base_url=openai_sim.url + "/v1", api_keys=[UPSTREAM_KEY], models=["gpt-4o-mini"]
                )
            ],
        )
        harness = start_gateway(settings)
        harness.keys["k"] = harness.create_key("good")
        instances.append(harness)
    yield instances
    for harness in instances:
        harness.server.stop()


def ask(gw: GatewayHarness, key: str) -> str:
    reply = openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    return reply.choices[0].message.content or ""


def refusals_429(gw: GatewayHarness) -> float:
    """``omnirelay_refusals_total{stage="request", status="429"}`` as the instance's ``/metrics`` shows it."""
    families = text_string_to_metric_families(httpx.get(gw.server.url + "/metrics").text)
    return sum(
        sample.value
        for family in families
        for sample in family.samples
        if sample.name == "omnirelay_refusals_total" and sample.labels == {"stage": "request", "status": "429"}
    )


def test_guesses_spread_over_two_instances_are_refused_by_both(pair: list[GatewayHarness]) -> None:
    a, b = pair
    assert isinstance(a.gateway.auth_throttle, SharedAuthThrottle)
    assert ask(a, a.keys["k"]) and ask(b, b.keys["k"])
    for attempt in range(LIMIT // 2):  # half the limit on each: neither instance alone would block
        for gw in (a, b):
            with pytest.raises(openai.AuthenticationError):
                ask(gw, f"sk-guess-{gw.server.port}-{attempt:012d}")
    deadline = time.monotonic() + 5
    while not all(gw.gateway.auth_throttle.retry_after("127.0.0.1") for gw in pair):
        assert time.monotonic() < deadline, "the shared block did not reach both instances"
        time.sleep(0.02)
    before = refusals_429(b)
    for gw in pair:  # even the right key is refused now, on both
        with pytest.raises(openai.RateLimitError) as refused:
            ask(gw, gw.keys["k"])
        assert 1 <= int(refused.value.response.headers["retry-after"]) <= 60
    assert refusals_429(b) == before + 1


async def test_shared_window_counts_failures_from_every_instance() -> None:
    limiter = MemoryLimiter()  # the same bus and counters as Redis, in process
    first, second = SharedAuthThrottle(limiter, limit=3), SharedAuthThrottle(limiter, limit=3)
    for throttle in (first, second):
        throttle.start()
    await asyncio.sleep(0)  # both subscribed
    try:
        assert first.failed("10.0.0.7") is None
        assert second.failed("10.0.0.7") is None
        assert second.failed("10.0.0.8") is None  # another address: its own count
        assert first.failed("10.0.0.7") is None  # the local window of either holds fewer than 3
        for _ in range(50):
            if first.retry_after("10.0.0.7") and second.retry_after("10.0.0.7"):
                break
            await asyncio.sleep(0.01)
        assert 59 < (first.retry_after("10.0.0.7") or 0) <= 60
        assert 59 < (second.retry_after("10.0.0.7") or 0) <= 60
        assert first.retry_after("10.0.0.8") is None and second.retry_after("10.0.0.8") is None
    finally:
        for throttle in (first, second):
            await throttle.stop()
        await limiter.close()


def test_without_redis_the_throttle_is_per_instance() -> None:
    throttle = create_auth_throttle(5, None)
    assert type(throttle) is AuthThrottle
    assert isinstance(create_auth_throttle(5, MemoryLimiter()), SharedAuthThrottle)
