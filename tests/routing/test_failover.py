"""Routing through upstream faults, end to end: official SDKs → gateway → simulators over real sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from sqlalchemy import func, select

from omnirelay.api.front import WATCH_AFTER_S
from omnirelay.config import BreakerConfig, ChannelConfig, Settings
from omnirelay.crypto import upstream_key_id
from omnirelay.routing.breaker import Change
from omnirelay.store import repo
from omnirelay.store.models import ChannelCheck, DisabledUpstreamKey, LedgerEntry, UsageLog
from tests.conftest import UPSTREAM_KEY, GatewayHarness, start_gateway
from tests.routing.conftest import REVOKED_KEY, SECOND_KEY, Sims, recorded, state_of

ADMIN_TOKEN = "routing-admin-token"
MODEL = "gpt-4o-mini"


def channels(sims: Sims) -> list[ChannelConfig]:
    healthy, flaky, hanging = (s.url + "/v1" for s in (sims.healthy, sims.flaky, sims.hanging))
    keys = [UPSTREAM_KEY]
    return [
        # One model, three channels in one tier: 30 % errors, silence, and a healthy one.
        ChannelConfig(name="flaky", base_url=flaky, api_keys=keys, models=[MODEL]),
        ChannelConfig(name="hanging", base_url=hanging, api_keys=keys, models=[MODEL], first_byte_timeout_s=0.25),
        ChannelConfig(name="healthy", base_url=healthy, api_keys=keys, models=[MODEL]),
        ChannelConfig(name="limited", base_url=healthy, api_keys=keys, model_map={"limited-model": MODEL}),
        ChannelConfig(
            name="keys",
            base_url=healthy,
            api_keys=[UPSTREAM_KEY, REVOKED_KEY, SECOND_KEY],
            model_map={"keys-model": MODEL},
        ),
        ChannelConfig(name="paced", base_url=healthy, api_keys=keys, model_map={"paced-model": MODEL}),
        ChannelConfig(name="bounded", base_url=healthy, api_keys=keys, model_map={"bounded-model": MODEL},
                      timeout_s=0.6),
        ChannelConfig(
            name="stalling", base_url=healthy, api_keys=keys, model_map={"stall-model": MODEL}, idle_timeout_s=0.3
        ),
        # An Anthropic model on its own API first, and through an OpenAI-compatible reseller as the fallback.
        ChannelConfig(name="claude-direct", type="anthropic", base_url=sims.anthropic.url, models=["claude-x"],
                      api_keys=["sk-ant-sim"], model_map={"claude-x": "claude-sonnet-4-5"}),
        ChannelConfig(
            name="claude-reseller", base_url=healthy, api_keys=keys, model_map={"claude-x": MODEL}, priority=1
        ),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def gw(database_url: str, sims: Sims) -> Iterator[GatewayHarness]:
    settings = Settings(
        database_url=database_url,
        admin_token=ADMIN_TOKEN,
        channels=channels(sims),
        breaker=BreakerConfig(failure_threshold=3, error_rate=0.2, min_calls=10, window_s=10, open_s=1.0),
        prices={"claude-x": {"input_per_mtok": 3, "output_per_mtok": 15}},
    )
    harness = start_gateway(settings)
    harness.keys["all"] = harness.create_key("all")
    yield harness
    harness.server.stop()


def client(gw: GatewayHarness, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=key or gw.keys["all"], max_retries=0)


def channel_id(gw: GatewayHarness, name: str) -> int:
    found: int = next(c.id for c in gw.gateway.snapshot.channels if c.name == name)
    return found


def channel_record(gw: GatewayHarness, name: str) -> Any:
    return next(c for c in gw.gateway.snapshot.channels if c.name == name)


def rows_of(gw: GatewayHarness, model: Any, *where: Any) -> list[Any]:
    """Rows in the order they were written (without ORDER BY, PostgreSQL returns them in whatever order its plan
    meets them: the tables are emptied, not recreated, between tests, so new rows reuse earlier pages)."""
    gw.flush_usage()

    async def read() -> list[Any]:
        async with gw.gateway.sessions() as session:
            return list((await session.scalars(select(model).where(*where).order_by(model.id))).all())

    return gw.run(read())  # type: ignore[no-any-return]


def prepaid_key(gw: GatewayHarness, name: str) -> tuple[str, int]:
    async def work() -> int:
        async with gw.gateway.sessions.begin() as session:
            account = await repo.ensure_account(session, name)
            await repo.post_entry(session, account.id, 100_000_000, kind="topup", reason="test")
            return account.id

    account_id: int = gw.run(work())
    gw.run(gw.gateway.reload())
    return gw.create_key(name, account=name), account_id


def wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


# --- one model, three channels, 1,000 calls ---------------------------------------------------------------------


async def test_a_thousand_calls_through_a_flaky_and_a_hanging_channel_all_succeed(
    gw: GatewayHarness, sims: Sims
) -> None:
    key, account_id = prepaid_key(gw, "thousand")
    changes: list[Change] = []
    gw.gateway.board.listener = changes.append
    calls = 1000
    sdk = openai.AsyncOpenAI(base_url=gw.base_url, api_key=key, max_retries=0)
    limit = asyncio.Semaphore(48)

    async def one(i: int) -> str:
        messages = [{"role": "user", "content": f"call {i}"}]
        async with limit:
            if i % 2:
                stream = await sdk.chat.completions.create(model=MODEL, messages=messages, stream=True)  # type: ignore[arg-type]
                parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
                return "".join(parts)
            reply = await sdk.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]
            return reply.choices[0].message.content or ""

    started = time.monotonic()
    try:
        answers = await asyncio.gather(*(one(i) for i in range(calls)), return_exceptions=True)
    finally:
        gw.gateway.board.listener = None
        await sdk.close()
    failures = [a for a in answers if isinstance(a, BaseException)]
    assert not failures, f"{len(failures)} failed, first: {failures[0]!r}"
    assert all(isinstance(a, str) and a for a in answers)
    assert time.monotonic() - started < 60

    assert state_of(sims.flaky).request_count > 0 and state_of(sims.hanging).request_count > 0
    opened = {c.target for c in changes if c.kind == "open"}
    assert f"channel:{channel_id(gw, 'flaky')}" in opened
    assert f"channel:{channel_id(gw, 'hanging')}" in opened
    assert f"channel:{channel_id(gw, 'healthy')}" not in opened

    # Billed once each: one usage row and one settlement per call, and the books agree.
    rows = rows_of(gw, UsageLog, UsageLog.account_id == account_id)
    assert len(rows) == calls and {r.status_code for r in rows} == {200}
    assert len({r.request_id for r in rows}) == calls
    assert {r.channel_id for r in rows} == {channel_id(gw, "healthy"), channel_id(gw, "flaky")}
    settlements = rows_of(gw, LedgerEntry, LedgerEntry.account_id == account_id, LedgerEntry.kind == "settlement")
    assert sorted(e.ref for e in settlements) == sorted(r.request_id for r in rows)
    assert -sum(e.amount_micros for e in settlements) == sum(r.cost_micros for r in rows) > 0


# --- rate limits ------------------------------------------------------------------------------------------------


def test_429_with_retry_after_on_the_only_channel_reaches_the_client_at_once(gw: GatewayHarness, sims: Sims) -> None:
    sent = time.monotonic()
    with pytest.raises(openai.RateLimitError) as limited:
        client(gw).chat.completions.create(
            model="limited-model", messages=[{"role": "user", "content": "hi [sim fault=429 retry_after=7]"}]
        )
    assert time.monotonic() - sent < 1.0
    assert limited.value.response.headers["retry-after"] == "7"
    target = f"key:{channel_id(gw, 'limited')}:{upstream_key_id(UPSTREAM_KEY)}"
    assert gw.gateway.board.state_of(target, time.time()).state == "cooling"
    # The only channel is cooling down: rather than refuse, the gateway tries it anyway (see fail_fast).
    assert client(gw).chat.completions.create(model="limited-model", messages=[{"role": "user", "content": "hi"}])


# --- upstream keys ----------------------------------------------------------------------------------------------


def test_a_key_the_upstream_rejects_is_disabled_with_its_reason_and_the_others_keep_serving(
    gw: GatewayHarness, sims: Sims
) -> None:
    revoked = upstream_key_id(REVOKED_KEY)
    for i in range(9):
        reply = client(gw).chat.completions.create(
            model="keys-model", messages=[{"role": "user", "content": f"rotate {i}"}]
        )
        assert reply.choices[0].message.content
    wait_for(lambda: REVOKED_KEY not in channel_record(gw, "keys").api_keys)
    assert channel_record(gw, "keys").api_keys == (UPSTREAM_KEY, SECOND_KEY)
    [row] = rows_of(gw, DisabledUpstreamKey, DisabledUpstreamKey.channel_id == channel_id(gw, "keys"))
    assert (row.key_id, row.error_code) == (revoked, "upstream_auth")
    assert row.reason == "the upstream rejected the key (upstream HTTP 401)"

    admin = httpx.Client(base_url=gw.server.url + "/admin/api", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    shown = admin.get(f"/channels/{channel_id(gw, 'keys')}").json()
    assert shown["active_key_count"] == 2
    [bad] = [k for k in shown["keys"] if not k["enabled"]]
    assert (bad["id"], bad["disabled_code"]) == (revoked, "upstream_auth")
    assert bad["disabled_reason"].startswith("the upstream rejected the key")
    assert REVOKED_KEY not in admin.get("/channels").text

    for i in range(4):
        client(gw).chat.completions.create(model="keys-model", messages=[{"role": "user", "content": f"after {i}"}])
    used = [r.headers["authorization"] for r in list(state_of(sims.healthy).requests)[-4:]]
    assert len(used) == 4 and f"Bearer {REVOKED_KEY}" not in used

    enabled = admin.post(f"/channels/{channel_id(gw, 'keys')}/keys/{revoked}/enable").json()
    assert enabled["active_key_count"] == 3 and all(k["enabled"] for k in enabled["keys"])
    assert REVOKED_KEY in channel_record(gw, "keys").api_keys
    assert admin.post(f"/channels/{channel_id(gw, 'keys')}/keys/{revoked}/enable").status_code == 409
    assert admin.post(f"/channels/{channel_id(gw, 'keys')}/keys/nope/enable").status_code == 404
    manual = admin.post(f"/channels/{channel_id(gw, 'keys')}/keys/{revoked}/disable", json={"reason": "rotating"})
    assert manual.json()["active_key_count"] == 2
    admin.post(f"/channels/{channel_id(gw, 'keys')}/keys/{revoked}/enable")


# --- one model on channels of different types -----------------------------------------------------------------


def test_a_model_fails_over_between_channel_types_translating_per_attempt(gw: GatewayHarness, sims: Sims) -> None:
    direct = f"channel:{channel_id(gw, 'claude-direct')}"
    asked = state_of(sims.anthropic).request_count

    def overload_once() -> None:
        # Each overloaded answer asks for a second's pause (Retry-After): wait until it passed.
        wait_for(lambda: gw.gateway.board.state_of(direct, time.time()).state == "closed")
        httpx.post(sims.anthropic.url + "/_sim/faults", json={"faults": ["529"]})

    # OpenAI client: the Anthropic channel (translated) is overloaded, the OpenAI reseller passes through.
    overload_once()
    reply = client(gw).chat.completions.create(model="claude-x", messages=[{"role": "user", "content": "hello"}])
    assert reply.choices[0].message.content
    assert gw.gateway.board.state_of(direct, time.time()).state == "cooling"
    # Anthropic client: passthrough to Anthropic fails, translation to the reseller answers.
    overload_once()
    sdk = anthropic.Anthropic(base_url=gw.server.url, api_key=gw.keys["all"], max_retries=0)
    message = sdk.messages.create(model="claude-x", max_tokens=50, messages=[{"role": "user", "content": "hello"}])
    assert message.content[0].type == "text" and message.content[0].text
    rows = rows_of(gw, UsageLog, UsageLog.model == "claude-x")
    assert [(r.channel_id, r.status_code) for r in rows[-2:]] == [(channel_id(gw, "claude-reseller"), 200)] * 2
    # Healthy again, the Anthropic channel is first in line.
    wait_for(lambda: gw.gateway.board.state_of(direct, time.time()).state == "closed")
    assert client(gw).chat.completions.create(model="claude-x", messages=[{"role": "user", "content": "hi"}])
    assert rows_of(gw, UsageLog, UsageLog.model == "claude-x")[-1].channel_id == channel_id(gw, "claude-direct")
    assert state_of(sims.anthropic).request_count - asked == 3


# --- after the first byte -------------------------------------------------------------------------------------


def test_a_stream_that_stalls_ends_with_an_error_event_and_is_billed_for_what_it_sent(gw: GatewayHarness) -> None:
    body = {
        "model": "stall-model",
        "stream": True,
        "messages": [{"role": "user", "content": "stall-openai [sim fault=hang fault_after=5 tokens_per_second=200]"}],
    }
    headers = {"Authorization": f"Bearer {gw.keys['all']}"}
    started = time.monotonic()
    with httpx.stream("POST", gw.base_url + "/chat/completions", json=body, headers=headers, timeout=10) as response:
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert time.monotonic() - started < 3
    assert '"content"' in events[1]
    assert '"error"' in events[-1] and "stalled" in events[-1]

    rows = rows_of(gw, UsageLog, UsageLog.model == "stall-model")
    assert (rows[-1].status_code, rows[-1].error_code) == (504, "upstream_stream_stalled")
    assert rows[-1].completion_tokens > 0 and rows[-1].usage_estimated

    sdk = anthropic.Anthropic(base_url=gw.server.url, api_key=gw.keys["all"], max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as caught:
        with sdk.messages.stream(
            model="stall-model",
            max_tokens=100,
            messages=[
                {"role": "user", "content": "stall-anthropic [sim fault=hang fault_after=5 tokens_per_second=200]"}
            ],
        ) as stream:
            stream.get_final_message()
    assert caught.value.body is not None


def test_a_stream_longer_than_the_channels_total_limit_is_ended_with_an_error_event(gw: GatewayHarness) -> None:
    body = {
        "model": "bounded-model",
        "stream": True,
        "messages": [{"role": "user", "content": "long [sim tokens_per_second=20 output_tokens=100]"}],
    }
    headers = {"Authorization": f"Bearer {gw.keys['all']}"}
    started = time.monotonic()
    with httpx.stream("POST", gw.base_url + "/chat/completions", json=body, headers=headers, timeout=10) as response:
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert 0.5 < time.monotonic() - started < 1.5
    assert '"error"' in events[-1] and '"content"' in events[2]
    row = rows_of(gw, UsageLog, UsageLog.model == "bounded-model")[-1]
    assert (row.status_code, row.error_code) == (504, "upstream_stream_stalled")
    assert 0 < row.completion_tokens < 100


def test_client_disconnect_mid_stream_closes_the_upstream_within_100ms(gw: GatewayHarness, sims: Sims) -> None:
    marker = "disconnect-stream-7f3a"
    sdk = client(gw)
    stream = sdk.chat.completions.create(
        model="paced-model",
        messages=[{"role": "user", "content": f"{marker} [sim tokens_per_second=20 output_tokens=200]"}],
        stream=True,
    )
    chunks = iter(stream)
    for _ in range(3):
        next(chunks)
    stream.close()
    closed_at = time.monotonic()
    upstream = recorded(sims.healthy, marker)
    wait_for(lambda: upstream.disconnected_at is not None, timeout=2.0)
    assert upstream.disconnected_at is not None
    assert upstream.disconnected_at - closed_at < 0.1

    row = rows_of(gw, UsageLog, UsageLog.model == "paced-model")[-1]
    assert (row.status_code, row.error_code) == (499, "client_disconnected")
    assert 0 < row.completion_tokens < 200


@pytest.mark.parametrize(
    ("marker", "client_timeout_s", "noticed_within_s"),
    [
        ("disconnect-whole-5c1d", 0.5, 0.1),
        # The disconnect watch begins WATCH_AFTER_S after the body arrived: an earlier leaver is seen then.
        ("disconnect-early-91b0", 0.01, WATCH_AFTER_S + 0.1),
    ],
    ids=["after-the-watch-started", "before-the-watch-started"],
)
def test_client_disconnect_before_a_whole_answer_cancels_the_upstream_call(
    gw: GatewayHarness, sims: Sims, marker: str, client_timeout_s: float, noticed_within_s: float
) -> None:
    body = {"model": "paced-model", "messages": [{"role": "user", "content": f"{marker} [sim fault=hang]"}]}
    headers = {"Authorization": f"Bearer {gw.keys['all']}"}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(gw.base_url + "/chat/completions", json=body, headers=headers, timeout=client_timeout_s)
    gave_up_at = time.monotonic()
    upstream = recorded(sims.healthy, marker)
    wait_for(lambda: upstream.disconnected_at is not None, timeout=2.0)
    assert upstream.disconnected_at is not None
    assert upstream.disconnected_at - gave_up_at < noticed_within_s
    row = rows_of(gw, UsageLog, UsageLog.model == "paced-model")[-1]
    assert (row.status_code, row.error_code, row.cost_micros) == (499, "client_disconnected", 0)


# --- health checks ----------------------------------------------------------------------------------------------


def test_health_check_through_the_admin_api_records_each_model_and_key(gw: GatewayHarness) -> None:
    admin = httpx.Client(base_url=gw.server.url + "/admin/api", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    keys_channel = channel_id(gw, "keys")
    results = admin.post(f"/channels/{keys_channel}/test", timeout=30).json()
    assert {r["model"] for r in results} == {MODEL}
    by_key = {r["key_id"]: r for r in results}
    assert set(by_key) == {upstream_key_id(k) for k in (UPSTREAM_KEY, REVOKED_KEY, SECOND_KEY)}
    assert by_key[upstream_key_id(UPSTREAM_KEY)]["ok"] is True
    assert by_key[upstream_key_id(UPSTREAM_KEY)]["latency_ms"] >= 0
    bad = by_key[upstream_key_id(REVOKED_KEY)]
    assert (bad["ok"], bad["status_code"], bad["error_code"]) == (False, 401, "upstream_auth")
    assert REVOKED_KEY not in str(results)

    hanging = admin.post(f"/channels/{channel_id(gw, 'hanging')}/test", timeout=30).json()
    assert [(r["ok"], r["error_code"]) for r in hanging] == [(False, "upstream_timeout")]

    listed = admin.get(f"/channels/{keys_channel}/checks").json()
    assert len(listed) >= 3 and listed[0]["checked_at"] >= listed[-1]["checked_at"]
    stored = rows_of(gw, ChannelCheck, ChannelCheck.channel_id == keys_channel)
    assert len(stored) == len(listed)
    assert admin.post("/channels/999999/test").status_code == 404


def test_usage_counts_match_settlements(gw: GatewayHarness) -> None:
    """Whatever the tests above did, no call was billed twice."""

    async def counts() -> tuple[int, int]:
        async with gw.gateway.sessions() as session:
            rows = await session.scalar(select(func.count(func.distinct(UsageLog.request_id))))
            all_rows = await session.scalar(select(func.count()).select_from(UsageLog))
            return int(rows or 0), int(all_rows or 0)

    gw.flush_usage()
    distinct, total = gw.run(counts())
    assert distinct == total
