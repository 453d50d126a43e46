"""In-process limiter: one gateway process, zero set-up. Semantics are those of ``base`` (shared test suite).

Every method runs to completion without awaiting, so on one event loop each call is atomic. Not thread-safe,
and not shared between worker processes: run several workers (or instances) with the Redis backend.

Per scope the sliding log is two deques, request timestamps and ``(timestamp, tokens)`` entries (requests that
carry tokens, and corrections), kept in time order (appends are the common case; an out-of-order ``now`` or an
``adjust_tokens`` inserts by bisection) and pruned from the left on every touch. Scopes whose windows have
emptied are swept every ``SWEEP_EVERY`` calls, so memory follows what is in the window, not how many requests
or keys were ever seen.

Counters are a dict of name to value and expiry; those with an expiry are also in a heap of ``(expires_at,
name)``, and every operation on counters first drops the ones whose expiry is due, so reading one is a dict
lookup. Holds are a dict ``hold_id -> (expires_ms, {counter: amount})`` plus a heap of ``(expires_ms, hold_id)``
for the sweeper. Settling leaves its heap entry behind (skipped when popped, since it no longer matches the
dict); the heap is rebuilt from the dict when such leftovers outnumber the live holds, so it stays proportional
to them. The counters' heap is kept the same way.
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
    Finish,
    Limiter,
    RateDecision,
    ScopeLimits,
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

    def add_tokens(self, at: int, amount: int) -> None:
        tok = self.tok
        if not tok or at >= tok[-1][0]:
            tok.append((at, amount))
        else:
            insort(tok, (at, amount))
        self.tok_sum += amount

    def refused_usage(self, rpm: int | None, tpm: int | None, tokens: int, now: int) -> tuple[int, ...]:
        """The six usage numbers of ``base.build_decision`` for a request that was not admitted (in any scope):
        nothing was recorded, so the counts are the current ones and the resets follow the newest entry."""
        req, req_used, tok_used = self.req, len(self.req), self.tok_sum
        req_retry = tok_retry = FITS
        if rpm is not None and req_used + 1 > rpm:
            req_retry = NEVER if rpm == 0 else req[req_used - rpm] + WINDOW_MS - now
        if tpm is not None and tok_used + tokens > tpm:
            tok_retry = NEVER if tokens > tpm else self._token_retry(tok_used + tokens - tpm, now)
        newest = self.newest()
        reset = 0 if newest is None else newest + WINDOW_MS - now
        return (
            req_used,
            reset if req_used > 0 else 0,
            req_retry,
            tok_used,
            reset if tok_used > 0 else 0,
            tok_retry,
        )

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
        self._expiries: list[tuple[float, str]] = []
        """Heap of ``(expires_at, counter)``; the entries of counters replaced since linger until due."""
        self._holds: dict[str, tuple[int, dict[str, int]]] = {}
        self._hold_leases: list[tuple[int, str]] = []

    def _now_ms(self, now: float | None) -> int:
        return to_ms(self._clock() if now is None else now)

    # -- rate limits --------------------------------------------------------------------------------------

    async def check_and_consume(
        self, scopes: Sequence[ScopeLimits], tokens: int, now: float | None = None
    ) -> RateDecision:
        check_scopes(scopes, tokens)
        return self._consume(scopes, tokens, self._now_ms(now))

    def _consume(self, scopes: Sequence[ScopeLimits], tokens: int, now_ms: int) -> RateDecision:
        """``check_and_consume`` on checked arguments."""
        cutoff = now_ms - WINDOW_MS
        self._calls += 1
        if self._calls % SWEEP_EVERY == 0:
            self._sweep(cutoff)
        windows = self._windows
        tracked: list[ScopeLimits] = []
        wins: list[_Window] = []
        allowed = True
        for sl in scopes:
            rpm, tpm = sl.rpm, sl.tpm
            if rpm is None and tpm is None:
                continue
            win = windows.get(sl.scope)
            if win is None:
                win = windows[sl.scope] = _Window()
            else:
                win.prune(cutoff)
            if (rpm is not None and len(win.req) + 1 > rpm) or (tpm is not None and win.tok_sum + tokens > tpm):
                allowed = False
            tracked.append(sl)
            wins.append(win)
        usage: list[int] = []
        if allowed:
            for win in wins:
                req = win.req
                if not req or now_ms >= req[-1]:
                    req.append(now_ms)
                else:
                    insort(req, now_ms)
                if tokens:
                    win.add_tokens(now_ms, tokens)
                tok_used = win.tok_sum
                # This request is the newest entry of every window: each is back to empty in a full window.
                usage += (len(req), WINDOW_MS, FITS, tok_used, WINDOW_MS if tok_used > 0 else 0, FITS)
        else:
            for sl, win in zip(tracked, wins, strict=True):
                usage += win.refused_usage(sl.rpm, sl.tpm, tokens, now_ms)
        return build_decision(tracked, usage, allowed, now_ms)

    async def adjust_tokens(
        self, scopes: Sequence[ScopeLimits], delta: int, at: float, now: float | None = None
    ) -> None:
        at_ms = to_ms(at)
        if delta and at_ms > self._now_ms(now) - WINDOW_MS:
            self._add_tokens(scopes, delta, at_ms)

    def _add_tokens(self, scopes: Sequence[ScopeLimits], delta: int, at_ms: int) -> None:
        """``adjust_tokens`` once ``at_ms`` is known to be in the window."""
        windows = self._windows
        for sl in scopes:
            if sl.rpm is not None or sl.tpm is not None:
                win = windows.get(sl.scope)
                if win is None:
                    win = windows[sl.scope] = _Window()
                win.add_tokens(at_ms, delta)

    def _sweep(self, cutoff: int) -> None:
        for scope, win in list(self._windows.items()):
            win.prune(cutoff)
            if win.empty():
                del self._windows[scope]
        self._alive(self._clock())

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

    def _alive(self, now: float) -> dict[str, _Counter]:
        """The counters, once those whose expiry is due at ``now`` are gone. Every read goes through here first,
        so a single reading costs a dict lookup: no expiry check per counter."""
        expiries, counters = self._expiries, self._counters
        while expiries and expiries[0][0] <= now:
            expires_at, name = heapq.heappop(expiries)
            counter = counters.get(name)
            if counter is not None and counter.expires_at == expires_at:
                del counters[name]
        return counters

    def _expire_at(self, name: str, counter: _Counter, expires_at: float) -> None:
        """Give ``counter`` (already in ``_counters`` as ``name``) its expiry."""
        counter.expires_at = expires_at
        expiries = self._expiries
        if len(expiries) > 2 * len(self._counters) + 64:  # mostly entries of replaced counters: rebuild
            expiries[:] = [(c.expires_at, n) for n, c in self._counters.items() if c.expires_at is not None]
            heapq.heapify(expiries)
        else:
            heapq.heappush(expiries, (expires_at, name))

    def _charge(self, charges: Sequence[Charge], now: float) -> int | None:
        """Add every charge to its counter if each fits its cap; else change nothing and return the index of the
        first that does not. ``try_add``, ``add`` and ``reserve`` in one place."""
        counters = self._alive(now)
        for i, charge in enumerate(charges):
            cap = charge.cap
            if cap is not None:
                counter = counters.get(charge.counter)
                if (0 if counter is None else counter.value) + charge.amount > cap:
                    return i
        for charge in charges:
            name = charge.counter
            counter = counters.get(name)
            if counter is None:
                counter = counters[name] = _Counter(0, None)
            counter.value += charge.amount
            if charge.ttl_s is not None and counter.expires_at is None:
                self._expire_at(name, counter, now + charge.ttl_s)
        return None

    def _value(self, name: str) -> int:
        """A counter's value, read right after ``_alive``."""
        counter = self._counters.get(name)
        return 0 if counter is None else counter.value

    async def try_add(self, name: str, amount: int, cap: int, *, ttl_s: float | None = None) -> tuple[bool, int]:
        refused = self._charge((Charge(name, amount, cap, ttl_s),), self._clock())
        return refused is None, self._value(name)

    async def add(self, name: str, delta: int, *, ttl_s: float | None = None) -> int:
        self._charge((Charge(name, delta, None, ttl_s),), self._clock())
        return self._value(name)

    async def get(self, name: str) -> int:
        self._alive(self._clock())
        return self._value(name)

    async def set(self, name: str, value: int, *, ttl_s: float | None = None) -> None:
        counter = self._counters[name] = _Counter(value, None)
        if ttl_s is not None:
            self._expire_at(name, counter, self._clock() + ttl_s)

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
        clock = self._clock()
        return self._reserve(hold_id, charges, to_ms(clock if now is None else now) + to_ms(lease_s), clock)

    def _reserve(self, hold_id: str, charges: Sequence[Charge], expires_ms: int, clock: float) -> int | None:
        """``reserve`` on checked charges: the hold's lease ends at ``expires_ms``; ``clock`` ages the counters."""
        holds = self._holds
        if hold_id in holds:
            raise ValueError(f"hold {hold_id!r} is already registered")
        refused = self._charge(charges, clock)
        if refused is not None:
            return refused
        held: dict[str, int] = {}
        for charge in charges:
            held[charge.counter] = charge.amount
        holds[hold_id] = (expires_ms, held)
        leases = self._hold_leases
        if len(leases) > 2 * len(holds) + 64:  # mostly entries of settled holds: rebuild
            leases[:] = [(expires, hid) for hid, (expires, _) in holds.items()]
            heapq.heapify(leases)
        else:
            heapq.heappush(leases, (expires_ms, hold_id))
        return None

    async def settle(self, hold_id: str, actual: Mapping[str, int]) -> bool:
        check_actual(actual)
        return self._settle(hold_id, actual, self._clock())

    def _settle(self, hold_id: str, actual: Mapping[str, int], clock: float) -> bool:
        """``settle`` on checked amounts; ``clock`` ages the counters."""
        hold = self._holds.pop(hold_id, None)
        counters = self._alive(clock)
        # actual - reserved per counter, in two passes (no dict of differences); a missing counter is left for
        # seed (see base).
        for name, amount in actual.items():
            counter = counters.get(name)
            if counter is not None:
                counter.value += amount
        if hold is None:
            return False
        for name, amount in hold[1].items():
            counter = counters.get(name)
            if counter is not None:
                counter.value -= amount
        return True

    async def release_expired(self, *, now: float | None = None, limit: int = 1000) -> int:
        now_ms = self._now_ms(now)
        counters = self._alive(self._clock())
        leases, holds = self._hold_leases, self._holds
        released = 0
        while leases and released < limit and leases[0][0] <= now_ms:
            expires_ms, hold_id = heapq.heappop(leases)
            hold = holds.get(hold_id)
            if hold is None or hold[0] != expires_ms:
                continue  # settled (and maybe registered again under the same id)
            del holds[hold_id]
            for name, reserved in hold[1].items():
                counter = counters.get(name)
                if counter is not None:
                    counter.value -= reserved
            released += 1
        return released

    async def seed(self, values: Mapping[str, int], *, ttl_s: Mapping[str, float] | None = None) -> int:
        clock = self._clock()
        counters = self._alive(clock)
        ttls = ttl_s or {}
        seeded = 0
        for name, value in values.items():
            if name not in counters:
                counter = counters[name] = _Counter(value, None)
                ttl = ttls.get(name)
                if ttl is not None:
                    self._expire_at(name, counter, clock + ttl)
                seeded += 1
        return seeded

    async def open_holds(self) -> int:
        return len(self._holds)

    # -- fused call paths -----------------------------------------------------------------------------------

    async def admit(
        self,
        scopes: Sequence[ScopeLimits],
        tokens: int,
        hold_id: str | None = None,
        charges: Sequence[Charge] = (),
        *,
        lease_s: float = DEFAULT_HOLD_LEASE_S,
        now: float | None = None,
    ) -> tuple[RateDecision | None, int | None]:
        # The base composition's steps on one clock reading, without a coroutine per step.
        if scopes:
            check_scopes(scopes, tokens)
        if hold_id is not None:
            check_charges(hold_id, charges)
        clock = self._clock()
        now_ms = round((clock if now is None else now) * 1000)  # to_ms, inline on the per-call paths
        decision = None
        if scopes:
            decision = self._consume(scopes, tokens, now_ms)
            if not decision.allowed:
                return decision, None
        if hold_id is None:
            return decision, None
        refused = self._reserve(hold_id, charges, now_ms + round(lease_s * 1000), clock)
        if refused is not None and decision is not None and tokens:
            self._add_tokens(scopes, -tokens, now_ms)
        return decision, refused

    async def finish(self, calls: Sequence[Finish], now: float | None = None) -> None:
        clock = self._clock()
        window_start = to_ms(clock if now is None else now) - WINDOW_MS
        for call in calls:
            if call.hold_id is not None:
                check_actual(call.actual)
                self._settle(call.hold_id, call.actual, clock)
            if call.token_delta and call.scopes:
                at_ms = round(call.at * 1000)
                if at_ms > window_start:
                    self._add_tokens(call.scopes, call.token_delta, at_ms)
            if call.slot is not None:
                await self.release(call.slot)  # returns without suspending: the batch stays atomic

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
