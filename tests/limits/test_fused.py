"""``admit`` and ``finish``: one budgeted call's limiter work in as few round trips as the backend allows, with the
same outcome as the single operations (one suite, memory and Redis)."""

from __future__ import annotations

from typing import Any

import pytest

from omnirelay.limits import Charge, Finish, Limiter, ScopeLimits
from omnirelay.limits.redis import RedisLimiter
from tests.limits.conftest import REDIS_URL


def scopes(rpm: int = 10, tpm: int = 1000) -> list[ScopeLimits]:
    return [ScopeLimits("key:1", rpm=rpm, tpm=tpm), ScopeLimits("account:1", rpm=100, tpm=100_000)]


def budget(amount: int, cap: int = 1000) -> list[Charge]:
    return [Charge("bal:1", amount, cap), Charge("key:1", amount, None)]


async def test_admit_checks_the_rate_and_reserves_in_one_step(limiter: Limiter) -> None:
    decision, refused = await limiter.admit(scopes(), 100, "h1", budget(300))
    assert decision is not None and decision.allowed and refused is None
    assert decision.requests is not None and decision.requests.remaining == 9
    assert decision.tokens is not None and decision.tokens.remaining == 900
    assert [await limiter.get("bal:1"), await limiter.get("key:1")] == [300, 300]
    assert await limiter.open_holds() == 1


async def test_admit_without_a_hold_or_without_limits(limiter: Limiter) -> None:
    decision, refused = await limiter.admit(scopes(), 50)
    assert decision is not None and decision.allowed and refused is None
    assert await limiter.open_holds() == 0
    decision, refused = await limiter.admit([], 50, "h1", budget(10))
    assert decision is None and refused is None
    assert await limiter.get("bal:1") == 10
    assert await limiter.admit([], 50) == (None, None)


async def test_a_call_over_its_rate_reserves_nothing(limiter: Limiter) -> None:
    assert (await limiter.admit(scopes(rpm=1), 10, "h1", budget(100)))[1] is None
    decision, refused = await limiter.admit(scopes(rpm=1), 10, "h2", budget(100))
    assert decision is not None and not decision.allowed and decision.kind == "requests"
    assert refused is None
    assert await limiter.get("bal:1") == 100
    assert await limiter.open_holds() == 1


async def test_a_refused_reservation_gives_back_its_tokens_but_counts_its_request(limiter: Limiter) -> None:
    assert await limiter.seed({"bal:1": 950}) == 1
    decision, refused = await limiter.admit(scopes(), 400, "h1", budget(100))
    assert refused == 0  # 950 + 100 > 1000
    assert decision is not None and decision.allowed
    assert await limiter.get("bal:1") == 950 and await limiter.open_holds() == 0
    after = await limiter.check_and_consume(scopes(), 0)
    assert after.requests is not None and after.requests.remaining == 8  # both calls counted
    assert after.tokens is not None and after.tokens.remaining == 1000  # the refused call's 400 tokens back


async def test_finish_settles_corrects_and_releases_a_batch(limiter: Limiter) -> None:
    slot = await limiter.acquire_slot("key:1", 1)
    assert slot is not None
    first, _ = await limiter.admit(scopes(), 300, "h1", budget(200))
    second, _ = await limiter.admit(scopes(), 300, "h2", budget(200))
    assert first is not None and second is not None
    await limiter.finish(
        [
            Finish("h1", {"bal:1": 30, "key:1": 30}, scopes(), -250, first.at, slot),
            Finish("h2", {"bal:1": 45, "key:1": 45}, scopes(), 100, second.at),
            Finish(None, {}, scopes(), -10, second.at),  # a call with no budget: only its tokens
        ]
    )
    assert [await limiter.get("bal:1"), await limiter.get("key:1")] == [75, 75]
    assert await limiter.open_holds() == 0
    window = await limiter.check_and_consume(scopes(), 0)
    assert window.tokens is not None and window.tokens.remaining == 1000 - (300 - 250) - (300 + 100) + 10
    assert await limiter.acquire_slot("key:1", 1) is not None  # the slot was released
    await limiter.finish([])


async def test_redis_admit_and_a_finish_batch_are_one_command_each(
    redis_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    limiter = RedisLimiter.from_url(REDIS_URL, namespace=redis_backend)
    pipe = limiter._pipe
    assert pipe is not None
    decision, _ = await limiter.admit(scopes(), 10, "warm", budget(1))  # loads the scripts on first use
    assert decision is not None
    await limiter.finish([Finish("warm", {"bal:1": 1}, scopes(), -5, decision.at)])
    sent: list[Any] = []
    call = pipe.call

    async def counting(*args: Any) -> Any:
        sent.append(args[0])
        return await call(*args)

    monkeypatch.setattr(pipe, "call", counting)
    ends = []
    for n in range(5):
        decision, refused = await limiter.admit(scopes(rpm=100), 10, f"h{n}", budget(1))
        assert decision is not None and refused is None
        ends.append(Finish(f"h{n}", {"bal:1": 1, "key:1": 1}, scopes(rpm=100), -5, decision.at))
    await limiter.finish(ends)
    assert sent == ["EVALSHA"] * 6
    assert await limiter.open_holds() == 0 and await limiter.get("bal:1") == 6
    await limiter.close()
