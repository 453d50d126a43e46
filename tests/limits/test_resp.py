"""The pipelined connection the Redis limiter sends its scripts over: one round trip per operation, scripts
reloaded after a flush, commands in flight together answered in order, and a dead or silent Redis turned into
``LimiterUnavailable`` (then a fresh connection) rather than a hang."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from omnirelay.limits import LimiterUnavailable, ScopeLimits
from omnirelay.limits.base import Charge
from omnirelay.limits.redis import RedisLimiter
from omnirelay.limits.resp import PipelinedRedis
from tests.limits.conftest import REDIS_URL


@pytest.fixture
def namespace(redis_backend: str) -> str:
    return redis_backend


async def test_each_operation_is_one_command(namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    limiter = RedisLimiter.from_url(REDIS_URL, namespace=namespace)
    pipe = limiter._pipe
    assert pipe is not None
    sent: list[tuple[Any, ...]] = []
    call = pipe.call

    async def counting(*args: Any) -> Any:
        sent.append(args)
        return await call(*args)

    monkeypatch.setattr(pipe, "call", counting)
    scopes = [ScopeLimits("key:1", rpm=100, tpm=10_000)]

    async def one_of_each(hold: str) -> None:
        decision = await limiter.check_and_consume(scopes, 10)
        assert decision.allowed
        assert await limiter.reserve(hold, [Charge("bal:1", 5, 100)]) is None
        assert await limiter.settle(hold, {"bal:1": 3}) is True
        await limiter.adjust_tokens(scopes, -4, decision.at)
        slot = await limiter.acquire_slot("key:1", 2)
        assert slot is not None
        await limiter.release(slot)

    await one_of_each("h1")  # a script Redis does not have yet is loaded on its first use (NOSCRIPT, LOAD)
    sent.clear()
    await one_of_each("h2")
    assert [args[0] for args in sent] == ["EVALSHA"] * 5 + ["ZREM"]
    assert await limiter.get("bal:1") == 6
    await limiter.close()


async def test_scripts_are_reloaded_after_a_flush(namespace: str) -> None:
    limiter = RedisLimiter.from_url(REDIS_URL, namespace=namespace)
    assert await limiter.reserve("h1", [Charge("bal:1", 5, 100)]) is None
    assert limiter._pipe is not None
    assert await limiter._pipe.call("SCRIPT", "FLUSH") == b"OK"
    assert await limiter.settle("h1", {"bal:1": 7}) is True
    assert await limiter.get("bal:1") == 7
    await limiter.close()


async def test_concurrent_commands_get_their_own_replies(namespace: str) -> None:
    pipe = PipelinedRedis(REDIS_URL)
    prefix = f"omnirelay:{{{namespace}}}:echo:"
    replies = await asyncio.gather(*(pipe.call("INCRBY", prefix + str(i % 7), i) for i in range(500)))
    expected: dict[int, int] = {}
    for i, reply in enumerate(replies):
        expected[i % 7] = expected.get(i % 7, 0) + i
        assert reply == expected[i % 7]
    for i in range(7):
        await pipe.call("DEL", prefix + str(i))
    await pipe.close()


async def test_a_silent_server_times_out_and_the_next_call_reconnects(namespace: str) -> None:
    """A server that accepts the connection and never answers: the waiting command fails after the timeout;
    once a real Redis is behind the address again, the same client works."""
    received: list[bytes] = []

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read(1024))
        await asyncio.sleep(10)

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pipe = PipelinedRedis(f"redis://127.0.0.1:{port}/0", timeout_s=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(LimiterUnavailable):
        await pipe.call("PING")
    assert 0.3 <= loop.time() - started < 2
    assert received and b"PING" in received[0]
    server.close()
    await pipe.close()

    live = PipelinedRedis(REDIS_URL, timeout_s=0.5)
    assert await live.call("PING") == b"PONG"
    assert live._transport is not None
    live._transport.abort()  # the connection drops under the client
    await asyncio.sleep(0.05)
    assert await live.call("PING") == b"PONG"  # a new connection
    await live.close()


async def test_unreachable_redis_is_limiter_unavailable() -> None:
    limiter = RedisLimiter.from_url("redis://127.0.0.1:1/0", timeout_s=0.5)
    with pytest.raises(LimiterUnavailable):
        await limiter.reserve("h1", [Charge("bal:1", 5, 100)])
    with pytest.raises(LimiterUnavailable):
        await limiter.check_and_consume([ScopeLimits("key:1", rpm=1)], 1)
    await limiter.close()
