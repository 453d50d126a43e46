"""Holds (multi-counter budget reservations with leases): one suite, both backends, same assertions.

Fixtures come from ``conftest.py`` (``backend``/``limiter`` run each test against memory and Redis; ``peer()``
is a second instance sharing state). Leases use injected time (``now=``); only the counter-TTL test sleeps.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine
from typing import Any

import pytest
import redis.asyncio as aioredis

from omnirelay.limits import Charge, Limiter
from omnirelay.limits.memory import MemoryLimiter
from omnirelay.limits.redis import RedisLimiter
from tests.limits.conftest import REDIS_URL, Backend

T0 = 1_000_000.0


async def values(limiter: Limiter, *names: str) -> list[int]:
    return [await limiter.get(name) for name in names]


async def accounts(limiter: Limiter) -> None:
    """An account with 1000 left, a key capped at 500 of spend, a monthly budget of 800 (200 used)."""
    assert await limiter.seed({"bal:1": 0, "key:1": 0, "month:1": 200}) == 3


def worst_case(amount: int) -> list[Charge]:
    return [Charge("bal:1", amount, 1000), Charge("key:1", amount, 500), Charge("month:1", amount, 800)]


# -- reserve ----------------------------------------------------------------------------------------------


async def test_reserve_within_caps_adds_to_every_counter(limiter: Limiter) -> None:
    await accounts(limiter)
    assert await limiter.reserve("h1", worst_case(300), now=T0) is None
    assert await values(limiter, "bal:1", "key:1", "month:1") == [300, 300, 500]
    assert await limiter.open_holds() == 1
    assert await limiter.reserve("h2", worst_case(200), now=T0) is None  # key:1 and month:1 now exactly full
    assert await values(limiter, "bal:1", "key:1", "month:1") == [500, 500, 700]
    assert await limiter.open_holds() == 2


async def test_charge_over_its_cap_changes_nothing(limiter: Limiter) -> None:
    await accounts(limiter)
    assert await limiter.reserve("h1", worst_case(400), now=T0) is None
    # bal:1 fits (800 <= 1000) but key:1 does not (800 > 500): index 1, and bal:1 is untouched too
    assert await limiter.reserve("h2", worst_case(400), now=T0) == 1
    assert await limiter.reserve("h2", [Charge("bal:1", 1, 1000), Charge("month:1", 201, 800)], now=T0) == 1
    assert await limiter.reserve("h2", [Charge("bal:1", 601, 1000), Charge("key:1", 1, 500)], now=T0) == 0
    assert await values(limiter, "bal:1", "key:1", "month:1") == [400, 400, 600]
    assert await limiter.open_holds() == 1
    assert await limiter.settle("h2", {}) is False  # h2 was never registered
    assert await limiter.reserve("h2", worst_case(100), now=T0) is None  # and its id is free


async def test_no_cap_always_fits(limiter: Limiter) -> None:
    await limiter.set("spend:1", 10**15)
    charges = [Charge("spend:1", 10**15, None), Charge("fresh:1", 7, None)]
    assert await limiter.reserve("h1", charges, now=T0) is None
    assert await values(limiter, "spend:1", "fresh:1") == [2 * 10**15, 7]  # exact beyond 2^32 and 1e14
    assert await limiter.reserve("h2", [Charge("spend:1", 0, 0), Charge("zero:1", 0, 0)], now=T0) == 0
    assert await limiter.reserve("h2", [Charge("zero:1", 0, 0)], now=T0) is None  # 0 + 0 <= 0


async def test_duplicate_hold_id_and_bad_charges_raise(limiter: Limiter) -> None:
    assert await limiter.reserve("h1", [Charge("c:1", 5, 10)], now=T0) is None
    with pytest.raises(ValueError, match="already registered"):
        await limiter.reserve("h1", [Charge("c:2", 1, None)], now=T0)
    with pytest.raises(ValueError, match="distinct"):
        await limiter.reserve("h2", [Charge("c:2", 1, None), Charge("c:2", 1, None)], now=T0)
    with pytest.raises(ValueError, match=">= 0"):
        await limiter.reserve("h2", [Charge("c:2", -1, None)], now=T0)
    with pytest.raises(ValueError, match=">= 0"):
        await limiter.settle("h1", {"c:1": -1})
    assert await values(limiter, "c:1", "c:2") == [5, 0]
    assert await limiter.open_holds() == 1


async def test_counter_names_round_trip_through_the_hold(limiter: Limiter) -> None:
    name = 'crédit:☃ "quoted" 7'
    assert await limiter.reserve("h1", [Charge(name, 10, 100)], now=T0) is None
    assert await limiter.settle("h1", {name: 4}) is True  # matched the reserved counter: refunded 6
    assert await limiter.reserve("h2", [Charge(name, 10, 100)], lease_s=1, now=T0) is None
    assert await limiter.release_expired(now=T0 + 1) == 1
    assert await limiter.get(name) == 4


# -- settle -----------------------------------------------------------------------------------------------


async def test_settle_refunds_or_charges_the_difference(limiter: Limiter) -> None:
    await accounts(limiter)
    assert await limiter.reserve("cheap", worst_case(300), now=T0) is None
    assert await limiter.reserve("dear", worst_case(100), now=T0) is None
    assert await values(limiter, "bal:1", "key:1", "month:1") == [400, 400, 600]
    # actual < reserved: refund; a counter missing from `actual` cost nothing; one outside the hold is added
    await limiter.seed({"other:1": 1})
    assert await limiter.settle("cheap", {"bal:1": 120, "key:1": 120, "other:1": 120}) is True
    assert await values(limiter, "bal:1", "key:1", "month:1", "other:1") == [220, 220, 300, 121]
    # actual > reserved: charged in full, caps not checked (key:1 ends above its 500)
    assert await limiter.settle("dear", {"bal:1": 450, "key:1": 450, "month:1": 450}) is True
    assert await values(limiter, "bal:1", "key:1", "month:1") == [570, 570, 650]
    assert await limiter.open_holds() == 0


async def test_settling_twice_charges_twice(limiter: Limiter) -> None:
    """Callers settle a hold once: a second settle finds it gone and charges the full actual cost again."""
    await accounts(limiter)
    assert await limiter.reserve("h1", worst_case(300), now=T0) is None
    assert await limiter.settle("h1", {"bal:1": 100, "key:1": 100, "month:1": 100}) is True
    assert await values(limiter, "bal:1", "key:1", "month:1") == [100, 100, 300]
    assert await limiter.settle("h1", {"bal:1": 100, "key:1": 100, "month:1": 100}) is False
    assert await values(limiter, "bal:1", "key:1", "month:1") == [200, 200, 400]
    assert await limiter.open_holds() == 0


# -- leases and the sweeper -------------------------------------------------------------------------------


async def test_expired_hold_is_released_and_a_late_settle_charges_in_full(limiter: Limiter) -> None:
    await accounts(limiter)
    assert await limiter.reserve("crashed", worst_case(300), lease_s=60, now=T0) is None
    assert await limiter.reserve("alive", worst_case(100), lease_s=120, now=T0) is None
    assert await limiter.release_expired(now=T0 + 59.999) == 0
    assert await limiter.release_expired(now=T0 + 60) == 1  # the lease ends at exactly T0 + 60
    assert await values(limiter, "bal:1", "key:1", "month:1") == [100, 100, 300]
    assert await limiter.open_holds() == 1
    assert await limiter.release_expired(now=T0 + 61) == 0  # released once
    # the instance was only slow: its settle still charges the full actual cost, once
    assert await limiter.settle("crashed", {"bal:1": 250, "key:1": 250, "month:1": 250}) is False
    assert await values(limiter, "bal:1", "key:1", "month:1") == [350, 350, 550]
    # a hold past its lease that no sweep released yet settles normally
    assert await limiter.settle("alive", {"bal:1": 50}) is True
    assert await values(limiter, "bal:1", "key:1", "month:1") == [300, 250, 450]
    assert await limiter.release_expired(now=T0 + 1000) == 0
    assert await limiter.open_holds() == 0


async def test_release_expired_respects_limit(limiter: Limiter) -> None:
    for i in range(25):
        assert await limiter.reserve(f"h{i}", [Charge("c:1", 2, None)], lease_s=i + 1, now=T0) is None
    assert await limiter.release_expired(now=T0 + 100, limit=10) == 10
    assert await limiter.get("c:1") == 30
    assert await limiter.release_expired(now=T0 + 100, limit=0) == 0
    assert await limiter.release_expired(now=T0 + 20) == 10  # h10..h19 (leases 11..20 s)
    assert await limiter.settle("h24", {"c:1": 1}) is True  # the oldest unreleased stay releasable
    assert await limiter.release_expired(now=T0 + 100) == 4
    assert await limiter.get("c:1") == 1
    assert await limiter.open_holds() == 0


async def test_concurrent_sweepers_release_each_hold_once(backend: Backend) -> None:
    a, b = backend.make(), backend.peer()
    await a.seed({"c:1": 10_000})
    for i in range(120):
        holder = (a, b)[i % 2]
        assert await holder.reserve(f"h{i}", [Charge("c:1", 3, None), Charge(f"k:{i % 4}", 1, None)], now=T0) is None
    assert await a.get("c:1") == 10_360
    sweeps = await asyncio.gather(*(lim.release_expired(now=T0 + 901, limit=7) for _ in range(15) for lim in (a, b)))
    assert sum(sweeps) == 120
    assert await values(b, "c:1", "k:0", "k:1", "k:2", "k:3") == [10_000, 0, 0, 0, 0]
    assert await a.open_holds() == 0


async def test_settle_racing_the_sweeper_charges_exactly_once(backend: Backend) -> None:
    """Whichever comes first, each hold ends once: settled (True), or released and then charged in full."""
    a, b = backend.make(), backend.peer()
    for i in range(60):
        assert await a.reserve(f"h{i}", [Charge("c:1", 10, None)], lease_s=1, now=T0) is None
    jobs: list[Coroutine[Any, Any, bool | int]] = []
    for i in range(60):
        if i % 5 == 0:
            jobs.append(a.release_expired(now=T0 + 2, limit=5))
        jobs.append(b.settle(f"h{i}", {"c:1": 4}))
    results = await asyncio.gather(*jobs)
    settled = sum(r is True for r in results)
    released = sum(r for r in results if type(r) is int)
    assert settled + released == 60
    assert await a.get("c:1") == 60 * 4  # 10 - 10 + 4 either way
    assert await a.open_holds() == 0


# -- exactness under concurrency --------------------------------------------------------------------------


async def test_concurrent_reserves_are_exact(backend: Backend) -> None:
    a, b = backend.make(), backend.peer()
    results = await asyncio.gather(
        *((a, b)[i % 2].reserve(f"h{i}", [Charge("acct:1", 7, 350), Charge("all:1", 7, None)]) for i in range(200))
    )
    won = [f"h{i}" for i, r in enumerate(results) if r is None]
    assert len(won) == 50 and all(r in (None, 0) for r in results)
    assert await values(a, "acct:1", "all:1") == [350, 350]
    assert await b.open_holds() == 50
    settled = await asyncio.gather(
        *((a, b)[i % 2].settle(hold, {"acct:1": 5, "all:1": 5}) for i, hold in enumerate(won))
    )
    assert all(settled)
    assert await values(b, "acct:1", "all:1") == [250, 250]
    assert await a.open_holds() == 0


# -- counters: ttl and seeding ----------------------------------------------------------------------------


async def test_charge_ttl_is_applied_only_when_the_counter_has_none(limiter: Limiter) -> None:
    await limiter.set("balance:1", 100)  # no expiry: a balance
    assert await limiter.reserve("h1", [Charge("month:1", 5, 100, ttl_s=0.4)], now=T0) is None
    assert await limiter.reserve("h2", [Charge("month:1", 5, 100, ttl_s=100)], now=T0) is None  # not extended
    assert await limiter.reserve("h3", [Charge("balance:1", 5, None), Charge("month:1", 5, None)], now=T0) is None
    assert await limiter.seed({"period:1": 7}, ttl_s={"period:1": 0.4}) == 1
    assert await values(limiter, "month:1", "period:1", "balance:1") == [15, 7, 105]
    await asyncio.sleep(0.6)
    assert await values(limiter, "month:1", "period:1", "balance:1") == [0, 0, 105]
    # The counter expired under its holds. Settling and sweeping leave it missing (no negative refund, no
    # partial cost) and move the counters that still exist as usual.
    assert await limiter.settle("h1", {"month:1": 3}) is True
    assert await limiter.settle("h3", {"balance:1": 2, "month:1": 2}) is True
    assert await limiter.release_expired(now=T0 + 10_000) == 1  # h2
    assert await values(limiter, "month:1", "balance:1") == [0, 102]
    assert await limiter.seed({"month:1": 40, "period:1": 8}) == 2  # so seed can load them from the database


async def test_settle_never_creates_a_counter(limiter: Limiter) -> None:
    """A counter that is gone (lost, evicted, expired) is left for seed: creating it at a partial value would
    make the seed from the database a no-op and the budget look unspent."""
    assert await limiter.seed({"acct:1": 1000}) == 1
    assert await limiter.reserve("h1", [Charge("acct:1", 50, 2000)], lease_s=1, now=T0) is None
    assert await limiter.settle("h1", {"acct:1": 30, "never:1": 30}) is True
    assert await limiter.settle("gone", {"acct:1": 5, "never:2": 5}) is False
    assert await values(limiter, "acct:1", "never:1", "never:2") == [1035, 0, 0]
    assert await limiter.seed({"never:1": 700, "never:2": 800}) == 2


async def test_seed_sets_only_missing_counters(limiter: Limiter) -> None:
    assert await limiter.seed({}) == 0
    assert await limiter.seed({"bal:1": 500, "bal:2": 10**15 + 1}) == 2
    assert await limiter.add("bal:1", 25) == 525  # live spend
    assert await limiter.seed({"bal:1": 500, "bal:2": 0, "bal:3": -4}) == 1  # later instances keep live values
    assert await values(limiter, "bal:1", "bal:2", "bal:3") == [525, 10**15 + 1, -4]
    assert await limiter.reserve("h1", [Charge("bal:4", 1, None)]) is None
    assert await limiter.seed({"bal:4": 99}) == 0  # reserve created it: seed before reserving


# -- the backends agree -----------------------------------------------------------------------------------


async def test_backends_agree_on_a_random_hold_workload(redis_backend: str) -> None:
    """Differential check: a seeded mix of reserves, settles (some late or repeated) and sweeps from two
    Redis clients gives the same results and counters as one memory limiter."""
    rng = random.Random(20240612)
    memory = MemoryLimiter()
    instances = [RedisLimiter.from_url(REDIS_URL, namespace=redis_backend) for _ in range(2)]
    names = ["bal:1", "bal:2", "key:1", "key:2", "key:3", "month:1"]
    caps = {"bal:1": 5000, "bal:2": 3000, "key:1": 1500, "key:2": None, "key:3": 800, "month:1": 6000}
    seeded = {name: rng.randint(0, 500) for name in names}
    assert await memory.seed(seeded) == await instances[0].seed(seeded) == len(names)
    ids = [f"h{i}" for i in range(150)]
    seen: set[object] = set()
    now = T0
    for hold_id in ids:
        now += rng.choice([0.0, 1.0, 5.0, 30.0])
        shared = rng.choice(instances)
        op = rng.random()
        if op < 0.55:
            picked = rng.sample(names, rng.randint(1, 3))
            charges = [Charge(name, rng.randint(0, 400), caps[name]) for name in picked]
            lease = rng.choice([20.0, 60.0, 900.0])
            expected: Any = await memory.reserve(hold_id, charges, lease_s=lease, now=now)
            assert await shared.reserve(hold_id, charges, lease_s=lease, now=now) == expected
            seen.add(("reserve", expected is None))
        elif op < 0.9:
            target = rng.choice(ids[: ids.index(hold_id)] or [hold_id])
            actual = {name: rng.randint(0, 300) for name in rng.sample(names, rng.randint(0, 3))}
            expected = await memory.settle(target, actual)
            assert await shared.settle(target, actual) == expected
            seen.add(("settle", expected))
        else:
            limit = rng.randint(1, 5)
            expected = await memory.release_expired(now=now, limit=limit)
            assert await shared.release_expired(now=now, limit=limit) == expected
            seen.add(("release", expected > 0))
        assert await shared.open_holds() == await memory.open_holds()
    assert await values(instances[1], *names) == await values(memory, *names)
    assert len(seen) == 6  # reserves admitted and refused, settles of live and gone holds, sweeps with work
    for shared in instances:
        await shared.close()


# -- backend specifics ------------------------------------------------------------------------------------


async def test_redis_instances_share_holds(redis_backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two instances, two clients: a hold reserved on one is seen, settled and swept by the other, and every
    hold call is one round trip."""
    clients = [aioredis.Redis.from_url(REDIS_URL), aioredis.Redis.from_url(REDIS_URL)]
    a, b = (RedisLimiter(client, namespace=redis_backend) for client in clients)
    assert await a.seed({"bal:1": 0}) == 1
    assert await b.seed({"bal:1": 0}) == 0
    assert await a.reserve("h1", [Charge("bal:1", 40, 100), Charge("mon:1", 40, None, ttl_s=3600)], now=T0) is None
    with pytest.raises(ValueError, match="already registered"):
        await b.reserve("h1", [Charge("bal:1", 1, 100)], now=T0)
    assert await b.reserve("h2", [Charge("bal:1", 61, 100)], now=T0) == 0
    assert await b.open_holds() == 1
    assert await b.settle("h1", {"bal:1": 15}) is True
    assert await a.settle("h1", {"bal:1": 15}) is False
    assert await values(a, "bal:1", "mon:1") == [30, 0]

    commands: list[object] = []
    execute: Any = clients[1].execute_command

    async def counting(*args: object, **options: object) -> object:
        commands.append(args[0])
        return await execute(*args, **options)

    monkeypatch.setattr(clients[1], "execute_command", counting)
    assert await b.reserve("h3", [Charge("bal:1", 10, 100), Charge("mon:1", 10, None)], lease_s=1, now=T0) is None
    assert await b.release_expired(now=T0 + 1) == 1
    assert await b.settle("h3", {"bal:1": 10}) is False
    assert await b.seed({"bal:1": 0, "bal:9": 1}, ttl_s={"bal:9": 60}) == 1
    assert await b.open_holds() == 0
    assert commands == ["EVALSHA"] * 4 + ["HLEN"]

    probe = aioredis.Redis.from_url(REDIS_URL)
    prefix = f"omnirelay:{{{redis_backend}}}:"
    assert 0 < await probe.pttl(prefix + "ctr:mon:1") <= 3_600_000  # ttl from the creating reserve
    assert 0 < await probe.pttl(prefix + "ctr:bal:9") <= 60_000
    assert await probe.pttl(prefix + "ctr:bal:1") == -1
    assert not await probe.exists(prefix + "hold", prefix + "hold:lease")  # no holds, no keys
    assert await b.reserve("h4", [Charge("bal:1", 1, None)], now=T0) is None
    assert await probe.exists(prefix + "hold", prefix + "hold:lease") == 2
    await probe.aclose()
    await a.close()
    await b.close()


async def test_memory_lease_heap_stays_bounded() -> None:
    limiter = MemoryLimiter()
    for i in range(5000):
        assert await limiter.reserve(f"h{i}", [Charge("c:1", 1, None)], now=T0 + i) is None
        assert await limiter.settle(f"h{i}", {"c:1": 1}) is True
    assert len(limiter._hold_leases) < 100  # settled holds' entries were dropped
    assert await limiter.reserve("again", [Charge("c:1", 1, None)], lease_s=1, now=T0) is None
    assert await limiter.reserve("h1", [Charge("c:1", 1, None)], lease_s=10, now=T0) is None  # an id reused
    assert await limiter.release_expired(now=T0 + 5) == 1
    assert await limiter.open_holds() == 1
    assert await limiter.release_expired(now=T0 + 10) == 1
    assert await limiter.get("c:1") == 5000
