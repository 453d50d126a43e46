"""``x-request-id``: the client's sane id is echoed, logged on every line of the call and stored on its usage row;
anything else gets a fresh one; never the upstream's."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import httpx
import openai
import pytest
from sqlalchemy import select

from omnirelay.config import ChannelConfig, Settings
from omnirelay.store.models import UsageLog
from tests.conftest import SQLITE_ONLY, UPSTREAM_KEY, GatewayHarness, start_gateway
from tests.harness import ServerThread, free_port

pytestmark = SQLITE_ONLY


@pytest.fixture(scope="module")
def gw(database_url: str, openai_sim: ServerThread) -> Iterator[GatewayHarness]:
    settings = Settings(
        database_url=database_url,
        channels=[
            ChannelConfig(
                name="main",
                base_url=openai_sim.url + "/v1",
                api_keys=[UPSTREAM_KEY],
                models=["gpt-4o-mini", "gpt-4o"],
                priority=1,
            ),
            ChannelConfig(
                name="dead", base_url=f"http://127.0.0.1:{free_port()}/v1", api_keys=["x" * 20], models=["gpt-4o"]
            ),
        ],
    )
    harness = start_gateway(settings)
    # A budgeted key: its calls take budget holds, which must stay apart even when clients repeat an id.
    harness.keys["k"] = harness.create_key("rid", spend_cap_micros=10_000_000)
    yield harness
    harness.server.stop()


def client(gw: GatewayHarness, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=key or gw.keys["k"], max_retries=0)


def chat(gw: GatewayHarness, request_id: str | None, stream: bool = False, model: str = "gpt-4o-mini") -> httpx.Headers:
    headers = {"x-request-id": request_id} if request_id is not None else {}
    raw = client(gw).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hi"}], extra_headers=headers, stream=stream
    )
    if stream:
        for _ in raw.parse():
            pass
    return raw.headers


def usage_request_ids(gw: GatewayHarness) -> list[str]:
    gw.flush_usage()

    async def read() -> list[str]:
        async with gw.gateway.sessions() as session:
            return list((await session.scalars(select(UsageLog.request_id).order_by(UsageLog.id))).all())

    return gw.run(read())


def test_a_sane_client_id_is_echoed_logged_and_stored(gw: GatewayHarness, caplog: pytest.LogCaptureFixture) -> None:
    rid = "trace-01:span.7_A"
    with caplog.at_level(logging.INFO, logger="omnirelay"):
        headers = chat(gw, rid, model="gpt-4o")  # the dead channel first, then a failover to the live one
    assert headers["x-request-id"] == rid
    assert usage_request_ids(gw)[-1] == rid
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.getMessage().startswith("{")]
    assert [line["event"] for line in lines] == ["upstream_failover"]
    assert all(line["request_id"] == rid for line in lines)


def test_streams_echo_it_too(gw: GatewayHarness) -> None:
    assert chat(gw, "stream-id-1", stream=True)["x-request-id"] == "stream-id-1"


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "semi;colon", "a/b?c=<d>", ""])
def test_an_unsafe_id_is_replaced(gw: GatewayHarness, bad: str) -> None:
    headers = chat(gw, bad)
    assert headers["x-request-id"] != bad
    assert headers["x-request-id"].startswith("req_")


def test_a_fresh_id_when_none_is_given_and_never_the_upstreams(gw: GatewayHarness) -> None:
    first, second = chat(gw, None)["x-request-id"], chat(gw, None)["x-request-id"]
    assert first != second
    assert first.startswith("req_") and len(first) < 64
    assert usage_request_ids(gw)[-2:] == [first, second]
    # The simulator sends its own x-request-id (``req_`` + 32 hex digits): the gateway's replaces it.
    direct = httpx.post(
        gw.base_url + "/chat/completions",
        headers={"authorization": f"Bearer {gw.keys['k']}"},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert direct.status_code == 200
    assert len(direct.headers.get_list("x-request-id")) == 1


def test_errors_before_a_call_carry_the_id(gw: GatewayHarness) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        client(gw, "sk-not-a-key-at-all-000").chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], extra_headers={"x-request-id": "auth-1"}
        )
    assert info.value.response.headers["x-request-id"] == "auth-1"


def test_a_repeated_client_id_does_not_mix_budget_holds(gw: GatewayHarness) -> None:
    """Calls under one id at the same time: each takes and settles a hold of its own."""
    import asyncio

    before = len(usage_request_ids(gw))

    async def burst() -> None:
        aclient = openai.AsyncOpenAI(base_url=gw.base_url, api_key=gw.keys["k"], max_retries=0)
        await asyncio.gather(
            *(
                aclient.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[{"role": "user", "content": "hi"}],
                    extra_headers={"x-request-id": "same-id"},
                )
                for _ in range(6)
            )
        )
        await aclient.close()

    asyncio.run(burst())
    assert usage_request_ids(gw)[before:] == ["same-id"] * 6  # flushed, so every call is settled

    async def open_holds() -> int:
        return await gw.gateway.limiter.open_holds()

    assert gw.run(open_holds()) == 0
