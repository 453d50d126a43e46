"""In-process limiter: one gateway process, zero set-up. Semantics are those of ``base`` (shared test suite).

Every method runs to completion without awaiting, so on one event loop each call is atomic. Not thread-safe,
and not shared between worker processes: run several workers (or instances) with the Redis backend.

Per scope the sliding log is two deques, request timestamps and ``(timestamp, tokens)`` entries (requests that
carry tokens, and corrections), kept in time order (appends are the common case; an out-of-order ``now`` or an
``adjust_tokens`` inserts by bisection) and pruned from the left on every touch. Scopes whose windows have
emptied are swept every ``SWEEP_EVERY`` calls, so memory follows what is in the window, not how many requests
or keys were ever seen.

Holds are a dict ``hold_id -> (expires_ms, {counter: amount})`` plus a heap of ``(expires_ms, hold_id)`` for the
sweeper. Settling leaves its heap entry behind (skipped when popped, since it no longer matches the dict); the
heap is rebuilt from the dict when such leftovers outnumber the live holds, so it stays proportional to them.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from bisect import insort
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Self

from omnirelay.limits.base import (
    DEFAULT_HOLD_LEASE_S,
    DEFAULT_LEASE_S,
    FITS,
    NEVER,
    WINDOW_MS,
    Charge,
    Limiter,
    RateDecision,
    ScopeLimits,
    ScopeUsage,
    Slot,
    build_decision,
    check_actual,
    check_charges,
    check_scopes,
    to_ms,
)

SWEEP_EVERY = 4096
"""Rate-limit calls between two sweeps of emptied windows and expired counters."""


class _Window:
    """One scope's log: request timestamps, and ``(timestamp, tokens)`` for requests with tokens and for
    corrections. Both in time order; ``tok_sum`` is the sum of ``tok``."""

    __slots__ = ("req", "tok", "tok_sum")

    def __init__(self) -> None:
        self.req: deque[int] = deque()
        self.tok: deque[tuple[int, int]] = deque()
        self.tok_sum = 0

    def prune(self, cutoff: int) -> None:
        req, tok = self.req, self.tok
        while req and req[0] <= cutoff:
            req.popleft()
        while tok and tok[0][0] <= cutoff:
            self.tok_sum -= tok.popleft()[1]

    def add_request(self, at: int) -> None:
        if not self.req or at >= self.req[-1]:
            self.req.append(at)
        else:
            insort(self.req, at)

    def add_tokens(self, at: int, amount: int) -> None:
        if not self.tok or at >= self.tok[-1][0]:
            self.tok.append((at, amount))
        else:
            insort(self.tok, (at, amount))
        self.tok_sum += amount

    def usage(self, limits: ScopeLimits, tokens: int, now: int) -> ScopeUsage:
        req, rpm, tpm = self.req, limits.rpm, limits.tpm
        u = ScopeUsage(req_used=len(req), tok_used=self.tok_sum)
        if rpm is not None and u.req_used + 1 > rpm:
            u.req_retry_ms = NEVER if rpm == 0 else req[u.req_used - rpm] + WINDOW_MS - now
        if tpm is not None and u.tok_used + tokens > tpm:
            u.tok_retry_ms = NEVER if tokens > tpm else self._token_retry(u.tok_used + tokens - tpm, now)
        return u

    def _token_retry(self, need: int, now: int) -> int:
        # Entries with one timestamp leave together: only check where the timestamp changes.
        freed, last = 0, None
        for at, amount in self.tok:
            if last is not None and at != last and freed >= need:
                return last + WINDOW_MS - now
            last = at
            freed += amount
        if last is not None and freed >= need:
            return last + WINDOW_MS - now
        return WINDOW_MS

    def newest(self) -> int | None:
        req, tok = self.req, self.tok
        if req and tok:
            return max(req[-1], tok[-1][0])
        if req:
            return req[-1]
        return tok[-1][0] if tok else None

    def empty(self) -> bool:
        return not self.req and not self.tok


class _Counter:
    __slots__ = ("expires_at", "value")

    def __init__(self, value: int, expires_at: float | None) -> None:
        self.value = value
        self.expires_at = expires_at


class MemorySubscription:
    def __init__(
        self,
        hub: dict[str, set[asyncio.Queue[bytes | None]]],
        channel: str,
        registry: set[MemorySubscription],
    ) -> None:
        self._hub = hub
        self._channel = channel
        self._registry = registry
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._closed = False
        hub.setdefault(channel, set()).add(self._queue)
        registry.add(self)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        if self._closed:
            raise StopAsyncIteration
        message = await self._queue.get()
        if message is None:
            raise StopAsyncIteration
        return message

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._registry.discard(self)
        queues = self._hub.get(self._channel)
        if queues is not None:
            queues.discard(self._queue)
            if not queues:
                del self._hub[self._channel]
        self._queue.put_nowait(None)


class MemoryLimiter(Limiter):
    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._slots: dict[str, dict[str, int]] = {}
        self._counters: dict[str, _Counter] = {}
        self._hub: dict[str, set[asyncio.Queue[bytes | None]]] = {}
        self._subscriptions: set[MemorySubscription] = set()
        self._holder_ids = itertools.count(1)
        self._calls = 0
        self._holds: dict[str, tuple[int, dict[str, int]]] = {}
        self._hold_leases: list[tuple[int, str]] = []

    def _now_ms(self, now: float | None) -> int:
        return to_ms(self._clock() if now is None else now)

    # -- rate limits --------------------------------------------------------------------------------------

    async def check_and_consume(
        self, scopes: Sequence[ScopeLimits], tokens: int, now: float | None = None
    ) -> RateDecision:
        check_scopes(scopes, tokens)
        now_ms = self._now_ms(now)
        cutoff = now_ms - WINDOW_MS
        self._calls += 1
        if self._calls % SWEEP_EVERY == 0:
            self._sweep(cutoff)
        windows = self._windows
        tracked: list[ScopeLimits] = []
        usages: list[ScopeUsage] = []
        allowed = True
        for sl in scopes:
            if sl.rpm is None and sl.tpm is None:
                continue
            win = windows.get(sl.scope)
            if win is None:
                win = windows[sl.scope] = _Window()
            else:
                win.prune(cutoff)
            u = win.usage(sl, tokens, now_ms)
            allowed = allowed and u.req_retry_ms == FITS and u.tok_retry_ms == FITS
            tracked.append(sl)
            usages.append(u)
        for sl, u in zip(tracked, usages, strict=True):
            win = windows[sl.scope]
            if allowed:
                win.add_request(now_ms)
                if tokens:
                    win.add_tokens(now_ms, tokens)
                u.req_used += 1
                u.tok_used += tokens
                u.req_reset_ms = WINDOW_MS
                u.tok_reset_ms = WINDOW_MS if u.tok_used > 0 else 0
            else:
                newest = win.newest()
                if newest is not None:
                    if u.req_used > 0:
                        u.req_reset_ms = newest + WINDOW_MS - now_ms
                    if u.tok_used > 0:
                        u.tok_reset_ms = newest + WINDOW_MS - now_ms
        return build_decision(tracked, usages, allowed, now_ms)

    async def adjust_tokens(
        self, scopes: Sequence[ScopeLimits], delta: int, at: float, now: float | None = None
    ) -> None:
        at_ms = to_ms(at)
        if not delta or at_ms <= self._now_ms(now) - WINDOW_MS:
            return
        for sl in scopes:
            if sl.rpm is not None or sl.tpm is not None:
                win = self._windows.get(sl.scope)
                if win is None:
                    win = self._windows[sl.scope] = _Window()
                win.add_tokens(at_ms, delta)

    def _sweep(self, cutoff: int) -> None:
        for scope, win in list(self._windows.items()):
            win.prune(cutoff)
            if win.empty():
                del self._windows[scope]
        now = self._clock()
        for name, counter in list(self._counters.items()):
            if counter.expires_at is not None and counter.expires_at <= now:
                del self._counters[name]

    # -- concurrency slots ----------------------------------------------------------------------------------

    async def acquire_slot(
        self, scope: str, limit: int, *, lease_s: float = DEFAULT_LEASE_S, now: float | None = None
    ) -> Slot | None:
        if limit <= 0:
            return None
        now_ms = self._now_ms(now)
        holders = self._slots.get(scope)
        if holders is None:
            holders = self._slots[scope] = {}
        if len(holders) >= limit:
            for holder, expires in list(holders.items()):
                if expires <= now_ms:
                    del holders[holder]
            if len(holders) >= limit:
                return None
        holder = str(next(self._holder_ids))
        expires_ms = now_ms + to_ms(lease_s)
        holders[holder] = expires_ms
        return Slot(scope=scope, holder=holder, expires_at=expires_ms / 1000)

    async def renew_slot(
        self, slot: Slot, *, lease_s: float = DEFAULT_LEASE_S, now: float | None = None
    ) -> Slot | None:
        holders = self._slots.get(slot.scope)
        if holders is None or slot.holder not in holders:
            return None
        expires_ms = self._now_ms(now) + to_ms(lease_s)
        holders[slot.holder] = expires_ms
        return Slot(scope=slot.scope, holder=slot.holder, expires_at=expires_ms / 1000)

    async def release(self, slot: Slot) -> None:
        holders = self._slots.get(slot.scope)
        if holders is not None:
            holders.pop(slot.holder, None)
            if not holders:
                del self._slots[slot.scope]

    # -- spend counters -------------------------------------------------------------------------------------

    def _live(self, name: str, now: float) -> _Counter | None:
        counter = self._counters.get(name)
        if counter is not None and counter.expires_at is not None and counter.expires_at <= now:
            del self._counters[name]
            return None
        return counter

    def _added(self, name: str, delta: int, ttl_s: float | None, now: float) -> int:
        counter = self._live(name, now)
        if counter is None:
            counter = self._counters[name] = _Counter(0, None)
        counter.value += delta
        if ttl_s is not None and counter.expires_at is None:
            counter.expires_at = now + ttl_s
        return counter.value

    async def try_add(self, name: str, amount: int, cap: int, *, ttl_s: float | None = None) -> tuple[bool, int]:
        now = self._clock()
        counter = self._live(name, now)
        current = 0 if counter is None else counter.value
        if current + amount > cap:
            return False, current
        return True, self._added(name, amount, ttl_s, now)

    async def add(self, name: str, delta: int, *, ttl_s: float | None = None) -> int:
        return self._added(name, delta, ttl_s, self._clock())

    async def get(self, name: str) -> int:
        counter = self._live(name, self._clock())
        return 0 if counter is None else counter.value

    async def set(self, name: str, value: int, *, ttl_s: float | None = None) -> None:
        expires_at = None if ttl_s is None else self._clock() + ttl_s
        self._counters[name] = _Counter(value, expires_at)

    # -- holds ----------------------------------------------------------------------------------------------

    async def reserve(
        self,
        hold_id: str,
        charges: Sequence[Charge],
        *,
        lease_s: float = DEFAULT_HOLD_LEASE_S,
        now: float | None = None,
    ) -> int | None:
        check_charges(hold_id, charges)
        if hold_id in self._holds:
            raise ValueError(f"hold {hold_id!r} is already registered")
        clock = self._clock()
        for i, charge in enumerate(charges):
            if charge.cap is not None:
                counter = self._live(charge.counter, clock)
                if (0 if counter is None else counter.value) + charge.amount > charge.cap:
                    return i
        for charge in charges:
            self._added(charge.counter, charge.amount, charge.ttl_s, clock)
        expires_ms = self._now_ms(now) + to_ms(lease_s)
        self._holds[hold_id] = (expires_ms, {c.counter: c.amount for c in charges})
        leases = self._hold_leases
        if len(leases) > 2 * len(self._holds) + 64:  # mostly entries of settled holds: rebuild
            leases[:] = [(expires, hid) for hid, (expires, _) in self._holds.items()]
            heapq.heapify(leases)
        else:
            heapq.heappush(leases, (expires_ms, hold_id))
        return None

    async def settle(self, hold_id: str, actual: Mapping[str, int]) -> bool:
        check_actual(actual)
        clock = self._clock()
        hold = self._holds.pop(hold_id, None)
        deltas = dict(actual)
        if hold is not None:
            for name, reserved in hold[1].items():
                deltas[name] = deltas.get(name, 0) - reserved
        for name, delta in deltas.items():
            counter = self._live(name, clock)
            if counter is not None:  # a missing counter is left for seed (see base)
                counter.value += delta
        return hold is not None

    async def release_expired(self, *, now: float | None = None, limit: int = 1000) -> int:
        now_ms = self._now_ms(now)
        clock = self._clock()
        leases, holds = self._hold_leases, self._holds
        released = 0
        while leases and released < limit and leases[0][0] <= now_ms:
            expires_ms, hold_id = heapq.heappop(leases)
            hold = holds.get(hold_id)
            if hold is None or hold[0] != expires_ms:
                continue  # settled (and maybe registered again under the same id)
            del holds[hold_id]
            for name, reserved in hold[1].items():
                counter = self._live(name, clock)
                if counter is not None:
                    counter.value -= reserved
            released += 1
        return released

    async def seed(self, values: Mapping[str, int], *, ttl_s: Mapping[str, float] | None = None) -> int:
        clock = self._clock()
        ttls = ttl_s or {}
        seeded = 0
        for name, value in values.items():
            if self._live(name, clock) is None:
                ttl = ttls.get(name)
                self._counters[name] = _Counter(value, None if ttl is None else clock + ttl)
                seeded += 1
        return seeded

    async def open_holds(self) -> int:
        return len(self._holds)

    # -- invalidation bus -----------------------------------------------------------------------------------

    async def publish(self, channel: str, message: bytes) -> None:
        for queue in self._hub.get(channel, ()):
            queue.put_nowait(message)

    def subscribe(self, channel: str) -> MemorySubscription:
        return MemorySubscription(self._hub, channel, self._subscriptions)

    async def close(self) -> None:
        for subscription in list(self._subscriptions):
            await subscription.aclose()


def from_url(url: str | None, namespace: str) -> MemoryLimiter:
    return MemoryLimiter()
