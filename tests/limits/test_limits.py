"""One suite, both backends: each test taking ``backend`` runs against memory and Redis, same assertions.

Redis tests use ``OMNIRELAY_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) and a fresh namespace per
test, deleted afterwards. Without a reachable Redis they are skipped, except under ``CI`` where they fail.
Time is injected (``now=``) wherever the window matters; only the counter-TTL test sleeps (under a second).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

import omnirelay.limits as limits_pkg
from omnirelay.limits import (
    Limiter,
    LimiterUnavailable,
    LimitState,
    RateDecision,
    ScopeLimits,
    create_limiter,
    format_duration,
    rate_limit_headers,
)
from omnirelay.limits.memory import SWEEP_EVERY, MemoryLimiter
from omnirelay.limits.redis import RedisLimiter
from tests.limits.conftest import REDIS_URL, Backend

T0 = 1_000_000.0


def key(rpm: int | None = None, tpm: int | None = None, name: str = "key:1") -> ScopeLimits:
    return ScopeLimits(name, rpm=rpm, tpm=tpm)


# -- sliding-window rate limits ---------------------------------------------------------------------------


async def test_rpm_admits_exactly_the_limit(limiter: Limiter) -> None:
    scopes = [key(rpm=5)]
    for i in range(5):
        d = await limiter.check_and_consume(scopes, 0, now=T0 + i)
        assert d.allowed and d.retry_after_s == 0 and d.scope is None and d.kind is None
        assert d.requests == LimitState(limit=5, remaining=4 - i, reset_s=60.0)
        assert d.tokens is None
    d = await limiter.check_and_consume(scopes, 0, now=T0 + 5)
    assert not d.allowed
    assert (d.scope, d.kind) == ("key:1", "requests")
    assert d.retry_after_s == 55.0  # the first request (T0) leaves at T0 + 60
    # the newest (T0 + 4) leaves at T0 + 64
    assert d.requests == LimitState(limit=5, remaining=0, reset_s=59.0)


async def test_tpm_admits_exactly_the_limit(limiter: Limiter) -> None:
    scopes = [key(tpm=100)]
    assert (await limiter.check_and_consume(scopes, 40, now=T0)).allowed
    d = await limiter.check_and_consume(scopes, 40, now=T0 + 1)
    assert d.allowed and d.tokens == LimitState(limit=100, remaining=20, reset_s=60.0)
    d = await limiter.check_and_consume(scopes, 30, now=T0 + 2)
    assert not d.allowed and (d.scope, d.kind) == ("key:1", "tokens")
    assert d.tokens == LimitState(limit=100, remaining=20, reset_s=59.0)
    assert d.retry_after_s == 58.0  # freeing the 40 at T0 is enough
    d = await limiter.check_and_consume(scopes, 20, now=T0 + 3)
    assert d.allowed and d.tokens is not None and d.tokens.remaining == 0


async def test_window_slides(limiter: Limiter) -> None:
    scopes = [key(rpm=2)]
    assert (await limiter.check_and_consume(scopes, 0, now=T0)).allowed
    assert (await limiter.check_and_consume(scopes, 0, now=T0 + 30)).allowed
    assert (await limiter.check_and_consume(scopes, 0, now=T0 + 40)).retry_after_s == 20.0
    d = await limiter.check_and_consume(scopes, 0, now=T0 + 59.999)
    assert not d.allowed and d.retry_after_s == pytest.approx(0.001)
    assert (await limiter.check_and_consume(scopes, 0, now=T0 + 60)).allowed  # T0 left exactly at T0 + 60
    d = await limiter.check_and_consume(scopes, 0, now=T0 + 60)
    assert not d.allowed and d.retry_after_s == 30.0


async def test_token_retry_after_waits_for_enough_to_leave(limiter: Limiter) -> None:
    scopes = [key(tpm=100)]
    await limiter.check_and_consume(scopes, 60, now=T0)
    await limiter.check_and_consume(scopes, 30, now=T0 + 10)
    assert (await limiter.check_and_consume(scopes, 50, now=T0 + 20)).retry_after_s == 40.0  # the 60 must go
    assert (await limiter.check_and_consume(scopes, 80, now=T0 + 20)).retry_after_s == 50.0  # both must go


async def test_request_that_can_never_fit(limiter: Limiter) -> None:
    d = await limiter.check_and_consume([key(rpm=10, tpm=100)], 101, now=T0)
    assert not d.allowed and d.kind == "tokens" and d.retry_after_s == math.inf
    assert "retry-after" not in rate_limit_headers(d)
    d = await limiter.check_and_consume([key(rpm=0, name="key:2")], 0, now=T0)
    assert not d.allowed and d.kind == "requests" and d.retry_after_s == math.inf


async def test_unlimited_scopes_are_not_tracked(limiter: Limiter) -> None:
    for i in range(20):
        d = await limiter.check_and_consume([key()], 1000, now=T0 + i)
        assert d.allowed and d.requests is None and d.tokens is None
    d = await limiter.check_and_consume([key(rpm=1, tpm=1)], 1, now=T0 + 20)
    assert d.allowed  # nothing was recorded while the limits were None


async def test_rejection_records_nothing_in_any_scope(limiter: Limiter) -> None:
    account = ScopeLimits("account:7", rpm=2, tpm=1000)
    for name in ("key:b", "key:c"):
        assert (await limiter.check_and_consume([key(rpm=10, name=name), account], 10, now=T0)).allowed
    d = await limiter.check_and_consume([key(rpm=10, tpm=100, name="key:a"), account], 10, now=T0 + 1)
    assert not d.allowed and (d.scope, d.kind) == ("account:7", "requests")
    assert d.requests == LimitState(limit=2, remaining=0, reset_s=59.0)
    # key:a recorded nothing: a limit of one request and 10 tokens still has room for exactly that
    d = await limiter.check_and_consume([key(rpm=1, tpm=10, name="key:a")], 10, now=T0 + 2)
    assert d.allowed and d.requests is not None and d.requests.remaining == 0


async def test_key_full_account_untouched(limiter: Limiter) -> None:
    account = ScopeLimits("account:8", tpm=100)
    assert (await limiter.check_and_consume([key(tpm=10, name="key:x"), account], 10, now=T0)).allowed
    d = await limiter.check_and_consume([key(tpm=10, name="key:x"), account], 5, now=T0)
    assert not d.allowed and (d.scope, d.kind) == ("key:x", "tokens")
    d = await limiter.check_and_consume([account], 90, now=T0)
    assert d.allowed and d.tokens == LimitState(limit=100, remaining=0, reset_s=60.0)


async def test_headers_describe_the_tightest_scope(limiter: Limiter) -> None:
    scopes = [key(rpm=10, tpm=1000), ScopeLimits("account:1", rpm=3, tpm=5000)]
    d = await limiter.check_and_consume(scopes, 100, now=T0)
    assert d.requests == LimitState(limit=3, remaining=2, reset_s=60.0)  # the account has less room
    assert d.tokens == LimitState(limit=1000, remaining=900, reset_s=60.0)  # the key has less room


async def test_adjust_tokens_lands_with_the_original_request(limiter: Limiter) -> None:
    scopes = [key(tpm=100)]
    first = await limiter.check_and_consume(scopes, 80, now=T0)  # worst-case estimate
    assert first.at == T0
    await limiter.adjust_tokens(scopes, -50, at=first.at, now=T0 + 5)  # it used 30
    d = await limiter.check_and_consume(scopes, 70, now=T0 + 5)
    assert d.allowed and d.tokens is not None and d.tokens.remaining == 0
    d = await limiter.check_and_consume(scopes, 1, now=T0 + 59.9)
    assert not d.allowed and d.retry_after_s == pytest.approx(0.1)
    # at T0 + 60 the request and its correction leave together: 70 remain counted, 30 fit again
    d = await limiter.check_and_consume(scopes, 30, now=T0 + 60)
    assert d.allowed and d.tokens is not None and d.tokens.remaining == 0


async def test_adjust_tokens_upwards_and_after_the_window(limiter: Limiter) -> None:
    scopes = [key(tpm=100)]
    d = await limiter.check_and_consume(scopes, 10, now=T0)
    await limiter.adjust_tokens(scopes, 95, at=d.at, now=T0 + 1)  # the response was longer than estimated
    d = await limiter.check_and_consume(scopes, 0, now=T0 + 2)
    assert not d.allowed and d.kind == "tokens" and d.retry_after_s == 58.0
    await limiter.adjust_tokens(scopes, 500, at=T0, now=T0 + 60)  # already out of the window: ignored
    assert (await limiter.check_and_consume(scopes, 100, now=T0 + 60)).allowed


async def test_concurrent_admission_is_exact(limiter: Limiter) -> None:
    scopes = [key(rpm=50), ScopeLimits("account:1", rpm=1000)]
    results = await asyncio.gather(*(limiter.check_and_consume(scopes, 1, now=T0) for _ in range(200)))
    assert sum(d.allowed for d in results) == 50
    d = await limiter.check_and_consume([ScopeLimits("account:1", rpm=1000)], 0, now=T0)
    assert d.requests is not None and d.requests.remaining == 1000 - 51


async def test_instances_share_the_sum(backend: Backend) -> None:
    """Two instances (two Redis clients) hold one limit between them, not one each."""
    a, b = backend.make(), backend.peer()
    scopes = [key(rpm=50, tpm=10_000)]
    results = await asyncio.gather(
        *(limiter.check_and_consume(scopes, 100, now=T0) for _ in range(100) for limiter in (a, b))
    )
    assert sum(d.allowed for d in results) == 50
    d = await b.check_and_consume(scopes, 0, now=T0 + 1)
    assert d.tokens is not None and d.tokens.remaining == 10_000 - 50 * 100


async def test_invalid_arguments_are_refused(limiter: Limiter) -> None:
    with pytest.raises(ValueError, match="tokens"):
        await limiter.check_and_consume([key(rpm=1)], -1)
    with pytest.raises(ValueError, match="distinct"):
        await limiter.check_and_consume([key(rpm=1), key(rpm=2)], 1)
    with pytest.raises(ValueError, match=">= 0"):
        await limiter.check_and_consume([key(rpm=-1)], 1)


async def test_backends_agree_on_a_random_workload(redis_backend: str) -> None:
    """Differential check: the same seeded mix of admissions (clock jitter included) and corrections gives
    identical decisions from both backends."""
    rng = random.Random(20240611)
    memory = MemoryLimiter()
    shared = RedisLimiter.from_url(REDIS_URL, namespace=redis_backend)
    accounts = [ScopeLimits("account:1", rpm=12, tpm=600), ScopeLimits("account:2", tpm=300)]
    keys = [ScopeLimits(f"key:{i}", rpm=rng.choice([None, 3, 5]), tpm=rng.choice([None, 150])) for i in range(4)]
    admitted: list[tuple[list[ScopeLimits], float]] = []
    kinds: set[str | None] = set()
    now = T0
    for _ in range(300):
        now += rng.choice([0.0, 0.5, 2.0, 7.5])
        at = now - rng.choice([0.0, 0.0, 0.0, 1.0])  # sometimes a caller's clock lags
        scopes = [rng.choice(keys), rng.choice(accounts)]
        if admitted and rng.random() < 0.3:
            past_scopes, past_at = rng.choice(admitted)
            delta = rng.randint(-40, 40)
            await memory.adjust_tokens(past_scopes, delta, past_at, now=now)
            await shared.adjust_tokens(past_scopes, delta, past_at, now=now)
        tokens = rng.randint(0, 80)
        expected = await memory.check_and_consume(scopes, tokens, now=at)
        assert await shared.check_and_consume(scopes, tokens, now=at) == expected
        kinds.add(expected.kind)
        if expected.allowed:
            admitted.append((scopes, expected.at))
    assert kinds == {None, "requests", "tokens"}
    assert 30 < len(admitted) < 270  # the workload hit the limits and passed them
    await shared.close()


# -- concurrency slots ------------------------------------------------------------------------------------


async def test_slots_limit_and_release(limiter: Limiter) -> None:
    held = [await limiter.acquire_slot("key:1", 3, now=T0) for _ in range(3)]
    assert all(held)
    assert await limiter.acquire_slot("key:1", 3, now=T0) is None
    assert held[0] is not None
    await limiter.release(held[0])
    await limiter.release(held[0])  # idempotent: frees one slot, not two
    assert await limiter.acquire_slot("key:1", 3, now=T0) is not None
    assert await limiter.acquire_slot("key:1", 3, now=T0) is None
    assert await limiter.acquire_slot("key:1", 0, now=T0) is None


async def test_expired_lease_is_reclaimed_and_renewal_keeps_it(limiter: Limiter) -> None:
    first = await limiter.acquire_slot("key:1", 2, lease_s=10, now=T0)
    second = await limiter.acquire_slot("key:1", 2, lease_s=10, now=T0)
    assert first is not None and second is not None and first.expires_at == T0 + 10
    renewed = await limiter.renew_slot(second, lease_s=10, now=T0 + 5)
    assert renewed is not None and renewed.expires_at == T0 + 15
    assert await limiter.acquire_slot("key:1", 2, now=T0 + 9) is None
    reclaimed = await limiter.acquire_slot("key:1", 2, now=T0 + 11)  # the first holder "crashed"
    assert reclaimed is not None
    assert await limiter.acquire_slot("key:1", 2, now=T0 + 11) is None  # the renewed one still holds
    assert await limiter.renew_slot(first, now=T0 + 11) is None  # lost, the holder must stop


async def test_slot_context_manager_releases(limiter: Limiter) -> None:
    async with limiter.slot("key:9", 1) as slot:
        assert slot is not None
        async with limiter.slot("key:9", 1) as refused:
            assert refused is None
    with pytest.raises(RuntimeError):
        async with limiter.slot("key:9", 1) as slot:
            assert slot is not None
            raise RuntimeError("upstream failed")
    assert await limiter.acquire_slot("key:9", 1) is not None


# -- spend counters ---------------------------------------------------------------------------------------


async def test_counters(limiter: Limiter) -> None:
    assert await limiter.get("budget:1") == 0
    assert await limiter.try_add("budget:1", 300, cap=1000) == (True, 300)
    assert await limiter.try_add("budget:1", 701, cap=1000) == (False, 300)
    assert await limiter.try_add("budget:1", 700, cap=1000) == (True, 1000)
    assert await limiter.try_add("budget:2", 5, cap=4) == (False, 0)
    assert await limiter.add("budget:1", -1200) == -200
    assert await limiter.get("budget:1") == -200
    await limiter.set("budget:1", 10**15)  # integers beyond 32 bits stay exact
    assert await limiter.try_add("budget:1", 1, cap=10**15 + 1) == (True, 10**15 + 1)
    assert await limiter.add("budget:new", 7) == 7


async def test_concurrent_try_add_is_exact(backend: Backend) -> None:
    a, b = backend.make(), backend.peer()
    results = await asyncio.gather(*(lim.try_add("acct:1", 7, cap=350) for _ in range(100) for lim in (a, b)))
    assert sum(ok for ok, _ in results) == 50
    assert await a.get("acct:1") == 350


async def test_counter_ttl_is_set_once(limiter: Limiter) -> None:
    assert await limiter.try_add("month:1", 5, cap=100, ttl_s=0.4) == (True, 5)
    assert await limiter.try_add("month:1", 5, cap=100, ttl_s=100) == (True, 10)  # does not extend
    assert await limiter.add("refund:1", -3, ttl_s=0.4) == -3
    await limiter.set("period:1", 42, ttl_s=0.4)
    await limiter.set("forever:1", 1)
    assert await limiter.get("period:1") == 42
    await asyncio.sleep(0.6)
    for name in ("month:1", "refund:1", "period:1"):
        assert await limiter.get(name) == 0
    assert await limiter.get("forever:1") == 1
    assert await limiter.try_add("month:1", 5, cap=100, ttl_s=0.4) == (True, 5)  # a new period


# -- invalidation bus -------------------------------------------------------------------------------------


async def test_pubsub_reaches_every_subscriber_of_every_instance(backend: Backend) -> None:
    a, b = backend.make(), backend.peer()
    async with a.subscribe("keys") as sub_a, b.subscribe("keys") as sub_b, a.subscribe("prices") as other:
        await b.publish("keys", b"key:1 changed")
        await a.publish("keys", b"key:2 changed")
        for sub in (sub_a, sub_b):
            assert await asyncio.wait_for(anext(sub), 2) == b"key:1 changed"
            assert await asyncio.wait_for(anext(sub), 2) == b"key:2 changed"
        await a.publish("prices", b"\x00binary\xff")
        assert await asyncio.wait_for(anext(other), 2) == b"\x00binary\xff"


async def test_closing_a_subscription_ends_its_iterator(limiter: Limiter) -> None:
    async with limiter.subscribe("keys") as sub:

        async def consume() -> list[bytes]:
            return [message async for message in sub]

        task = asyncio.create_task(consume())
        await limiter.publish("keys", b"one")
        await asyncio.sleep(0.05)
    assert await asyncio.wait_for(task, 2) == [b"one"]


# -- memory backend specifics -----------------------------------------------------------------------------


async def test_memory_windows_stay_bounded() -> None:
    limiter = MemoryLimiter()
    for i in range(10_000):
        scope = ScopeLimits(f"key:{i % 100}", rpm=1000, tpm=10**9)
        await limiter.check_and_consume([scope], 5, now=T0 + i * 0.1)
    windows = limiter._windows
    assert max(len(w.req) for w in windows.values()) <= 7  # 600 requests per minute over 100 keys
    assert max(len(w.tok) for w in windows.values()) <= 7
    for _ in range(SWEEP_EVERY):
        await limiter.check_and_consume([key(rpm=10**6)], 1, now=T0 + 10_000)
    assert list(windows) == ["key:1"]  # idle scopes were swept


async def test_memory_counter_ttl_uses_the_clock() -> None:
    clock = [T0]
    limiter = MemoryLimiter(clock=lambda: clock[0])
    await limiter.try_add("month:1", 10, cap=100, ttl_s=30 * 86400)
    clock[0] += 30 * 86400 - 1
    assert await limiter.get("month:1") == 10
    clock[0] += 1
    assert await limiter.get("month:1") == 0


async def test_memory_counter_expiries_follow_the_latest_set_and_stay_bounded() -> None:
    clock = [T0]
    limiter = MemoryLimiter(clock=lambda: clock[0])
    for i in range(1000):  # each set replaces the counter: its earlier expiries no longer apply
        await limiter.set("period:1", i, ttl_s=10 + i)
    await limiter.set("forever:1", 5)
    assert len(limiter._expiries) <= 2 * len(limiter._counters) + 65
    clock[0] += 1008
    assert await limiter.get("period:1") == 999
    clock[0] += 1
    assert await limiter.get("period:1") == 0
    assert await limiter.get("forever:1") == 5


# -- Redis backend specifics ------------------------------------------------------------------------------


async def test_redis_check_is_one_round_trip(redis_backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    client = aioredis.Redis.from_url(REDIS_URL)
    limiter = RedisLimiter(client, namespace=redis_backend)
    scopes = [key(rpm=100, tpm=10_000), ScopeLimits("account:1", rpm=1000, tpm=100_000)]
    await limiter.check_and_consume(scopes, 10)  # loads the script on first use
    commands: list[object] = []
    execute: Any = client.execute_command

    async def counting(*args: object, **options: object) -> object:
        commands.append(args[0])
        return await execute(*args, **options)

    monkeypatch.setattr(client, "execute_command", counting)
    for _ in range(5):
        await limiter.check_and_consume(scopes, 10)
    await limiter.try_add("c", 1, cap=10)
    assert commands == ["EVALSHA"] * 6
    await limiter.close()


async def test_redis_keys_are_namespaced_and_expire(redis_backend: str) -> None:
    limiter = RedisLimiter.from_url(REDIS_URL, namespace=redis_backend)
    await limiter.check_and_consume([key(rpm=10, tpm=100)], 10)
    await limiter.acquire_slot("key:1", 2)
    client = aioredis.Redis.from_url(REDIS_URL)
    keys = sorted([k async for k in client.scan_iter(match=f"omnirelay:{{{redis_backend}}}:*")])
    prefix = f"omnirelay:{{{redis_backend}}}:".encode()
    assert [k.removeprefix(prefix) for k in keys] == [b"rl:key:1:log", b"rl:key:1:sums", b"slot:key:1"]
    for k in keys:
        assert await client.pttl(k) > 0
    await client.aclose()
    await limiter.close()


async def test_redis_unreachable_raises_limiter_unavailable() -> None:
    limiter = RedisLimiter.from_url("redis://127.0.0.1:1/0", timeout_s=0.5)
    with pytest.raises(LimiterUnavailable) as caught:
        await limiter.check_and_consume([key(rpm=1)], 1)
    assert isinstance(caught.value, ConnectionError)
    with pytest.raises(LimiterUnavailable):
        await limiter.try_add("c", 1, cap=2)
    await limiter.close()


# -- headers ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.02, "20ms"),
        (0.0001, "1ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (8.64, "8.64s"),
        (59.999, "59.999s"),
        (60, "1m0s"),
        (90, "1m30s"),
        (360, "6m0s"),
        (3600, "1h0m0s"),
        (3723.5, "1h2m3.5s"),
    ],
)
def test_go_durations(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_headers_on_success_and_on_429() -> None:
    ok = RateDecision(
        allowed=True,
        retry_after_s=0.0,
        scope=None,
        kind=None,
        requests=LimitState(limit=60, remaining=59, reset_s=1.0),
        tokens=LimitState(limit=150000, remaining=149984, reset_s=360.0),
        at=T0,
    )
    assert list(rate_limit_headers(ok).items()) == [
        ("x-ratelimit-limit-requests", "60"),
        ("x-ratelimit-limit-tokens", "150000"),
        ("x-ratelimit-remaining-requests", "59"),
        ("x-ratelimit-remaining-tokens", "149984"),
        ("x-ratelimit-reset-requests", "1s"),
        ("x-ratelimit-reset-tokens", "6m0s"),
    ]
    rejected = RateDecision(
        allowed=False,
        retry_after_s=0.3,
        scope="key:1",
        kind="tokens",
        requests=None,
        tokens=LimitState(limit=30000, remaining=0, reset_s=0.02),
        at=T0,
    )
    assert rate_limit_headers(rejected) == {
        "x-ratelimit-limit-tokens": "30000",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "20ms",
        "retry-after": "1",
        "retry-after-ms": "300",
    }


# -- package surface --------------------------------------------------------------------------------------


def test_public_names() -> None:
    assert set(limits_pkg.__all__) == {
        "DEFAULT_LEASE_S",
        "WINDOW_MS",
        "Charge",
        "Finish",
        "LimitState",
        "Limiter",
        "LimiterUnavailable",
        "RateDecision",
        "RateKind",
        "ScopeLimits",
        "Slot",
        "Subscription",
        "create_limiter",
        "format_duration",
        "rate_limit_headers",
    }


async def test_create_limiter_picks_the_backend_from_the_url(redis_backend: str) -> None:
    assert isinstance(create_limiter(None), MemoryLimiter)
    assert isinstance(create_limiter(""), MemoryLimiter)
    limiter = create_limiter(REDIS_URL, namespace=redis_backend)
    assert isinstance(limiter, RedisLimiter)
    await limiter.close()
    with pytest.raises(ValueError, match="unsupported limiter URL scheme 'http'"):
        create_limiter("http://127.0.0.1:6379")


# -- micro-benchmark: prints ops/s, asserts nothing about timing ------------------------------------------


async def test_benchmark_check_and_consume_reports_ops_per_second(
    redis_backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not a timing assertion: prints ops/s (visible without -s) so the numbers travel with the code.
    Each figure is measured for a fixed 0.5 s, so a loaded machine gives lower numbers, not a slower suite."""
    scopes = [key(rpm=10**9, tpm=10**12), ScopeLimits("account:1", rpm=10**9, tpm=10**12)]

    async def ops_per_second(limiter: Limiter, in_flight: int) -> float:
        done = 0
        deadline = time.perf_counter() + 0.5

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                assert (await limiter.check_and_consume(scopes, 100)).allowed
                done += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return done / (time.perf_counter() - start)

    memory = MemoryLimiter()
    shared = RedisLimiter.from_url(REDIS_URL, namespace=redis_backend)
    await shared.check_and_consume(scopes, 100)  # loads the script
    lines = [
        f"memory, 1 in flight:  {await ops_per_second(memory, 1):9,.0f} check_and_consume/s",
        f"redis, 1 in flight:   {await ops_per_second(shared, 1):9,.0f} check_and_consume/s",
        f"redis, 32 in flight:  {await ops_per_second(shared, 32):9,.0f} check_and_consume/s",
    ]
    await shared.close()
    with capsys.disabled():
        print("\n  " + "\n  ".join(lines))
