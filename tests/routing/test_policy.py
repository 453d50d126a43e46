"""The operator's knobs end to end: ``fail_fast``, the per-call deadline, ``max_attempts``."""

from __future__ import annotations

import time
from collections.abc import Iterator

import openai
import pytest

from omnirelay.config import BreakerConfig, ChannelConfig, Settings
from tests.conftest import SQLITE_ONLY, UPSTREAM_KEY, GatewayHarness, start_gateway
from tests.harness import free_port
from tests.routing.conftest import Sims, state_of

pytestmark = SQLITE_ONLY

MODEL = "gpt-4o-mini"


@pytest.fixture(scope="module")
def gw(database_url: str, sims: Sims) -> Iterator[GatewayHarness]:
    healthy, hanging = sims.healthy.url + "/v1", sims.hanging.url + "/v1"
    keys = [UPSTREAM_KEY]
    slow = [
        ChannelConfig(
            name=f"slow-{i}", base_url=hanging, api_keys=keys, model_map={"slow-model": MODEL}, first_byte_timeout_s=0.4
        )
        for i in range(4)
    ]
    settings = Settings(
        database_url=database_url,
        channels=[
            ChannelConfig(name="limited", base_url=healthy, api_keys=keys, model_map={"limited-model": MODEL}),
            ChannelConfig(
                name="dead", base_url=f"http://127.0.0.1:{free_port()}/v1", api_keys=keys, models=["dead-model"]
            ),
            *slow,
        ],
        max_attempts=5,
        request_deadline_s=0.6,
        breaker=BreakerConfig(failure_threshold=2, open_s=30, fail_fast=True),
        prices={"dead-model": {"free": True}, "slow-model": {"free": True}},
    )
    harness = start_gateway(settings)
    harness.keys["all"] = harness.create_key("all")
    yield harness
    harness.server.stop()


def chat(gw: GatewayHarness, model: str, content: str = "hi") -> object:
    sdk = openai.OpenAI(base_url=gw.base_url, api_key=gw.keys["all"], max_retries=0)
    return sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": content}])


def test_fail_fast_answers_429_with_retry_after_without_asking_the_cooling_upstream(
    gw: GatewayHarness, sims: Sims
) -> None:
    with pytest.raises(openai.RateLimitError) as first:
        chat(gw, "limited-model", "[sim fault=429 retry_after=5]")
    assert first.value.response.headers["retry-after"] == "5"
    asked = state_of(sims.healthy).request_count
    sent = time.monotonic()
    with pytest.raises(openai.RateLimitError) as second:
        chat(gw, "limited-model")
    assert time.monotonic() - sent < 0.5
    assert 1 <= int(second.value.response.headers["retry-after"]) <= 5
    assert state_of(sims.healthy).request_count == asked


def test_fail_fast_refuses_a_model_whose_only_channel_has_an_open_breaker(gw: GatewayHarness) -> None:
    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as unreachable:
            chat(gw, "dead-model")
        assert unreachable.value.status_code == 502
    with pytest.raises(openai.InternalServerError) as refused:
        chat(gw, "dead-model")
    assert refused.value.status_code == 503
    assert refused.value.code == "no_available_channel"
    assert 25 <= int(refused.value.response.headers["retry-after"]) <= 30


def test_the_call_deadline_stops_failover_before_max_attempts(gw: GatewayHarness, sims: Sims) -> None:
    before = state_of(sims.hanging).request_count
    sent = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        chat(gw, "slow-model")
    elapsed = time.monotonic() - sent
    assert caught.value.status_code == 504
    # Two attempts fit the 0.6 s deadline (0.4 s, then what is left of it), not five of 0.4 s each (2 s). The
    # second attempt has only 0.2 s left, which on a loaded machine may end before the simulator logs it.
    assert 0.55 < elapsed < 1.5
    assert 1 <= state_of(sims.hanging).request_count - before <= 2
