"""The limiter contract: rate limits, concurrency slots, spend counters and the invalidation bus.

Two backends implement it with the same observable behaviour (one test suite runs against both):
``memory.MemoryLimiter`` for one process, ``redis.RedisLimiter`` when several instances share state.

Rate limits (``check_and_consume``)
    A **sliding log** over a 60 s window at millisecond resolution. An admitted request at time ``t`` counts
    against ``rpm`` (and its tokens against ``tpm``) while ``now - 60 s < t``, i.e. it leaves the window at
    exactly ``t + 60 s``. Why a log and not 60 one-second buckets: buckets count a request until its *bucket*
    leaves, so requests packed at the end of one bucket and again right after it expires admit up to twice the
    limit within 59.001 s; the log never admits more than the limit in any 60 s span, gives ``retry_after``
    to the millisecond, and lets ``adjust_tokens`` put a correction at the original request's timestamp so
    it leaves the window together with the request. Its cost is O(log n) per call and memory proportional to
    what is in the window (requests and corrections; bounded by ``rpm`` when set, because rejected requests
    are not recorded); buckets would only win at per-scope rates far above anything a key sends.

    All scopes of one call (typically the key and its account) are checked and recorded atomically: either
    every scope records the request and its ``tokens``, or nothing is recorded anywhere. A request is rejected
    when, in any scope, ``used_requests + 1 > rpm`` or ``used_tokens + tokens > tpm`` (so a window pushed over
    its limit by ``adjust_tokens`` rejects even a 0-token request). ``None`` means unlimited: a scope with
    neither limit keeps no state (and costs no round trip when no scope of the call is limited); a scope with
    either limit records both its requests and its tokens. ``rpm=0`` rejects every request and ``tpm=0`` every
    request that carries tokens. Rejected requests are not recorded, so a client that keeps retrying does not
    extend its own lockout.

    ``retry_after_s`` is when the oldest counted entries will have left the window enough for this request to
    fit (the maximum over the failing scopes); ``math.inf`` when it can never fit (``tokens > tpm`` or a limit
    of 0). ``reset_s`` follows OpenAI's definition of ``x-ratelimit-reset-*``, the time until the window is
    back to its initial state: until the scope's newest entry leaves (so the full 60 s on admission, when
    this request is the newest), 0 when nothing of that kind is counted. ``remaining`` is after this request
    when it was admitted, and the current headroom (never negative) when it was not. Per kind, the decision
    describes the tightest scope (least remaining), or the limiting scope for the kind that rejected.

    Time is wall-clock seconds (``time.time``) unless ``now`` is passed, rounded to the millisecond (returned
    as ``RateDecision.at``). The Redis backend sends the caller's clock into its script (not Redis ``TIME``),
    so instances sharing a Redis must keep their clocks in sync (NTP); a skew of ``s`` seconds shifts where an
    instance sees the window edge by ``s``.

Concurrency slots (``acquire_slot``)
    At most ``limit`` holders per scope. Every slot is a lease (10 minutes by default, renewable); an expired
    lease is reclaimed by the next ``acquire_slot`` that finds the scope full, so a crashed instance cannot
    leak slots. ``release`` is idempotent.

Spend counters (``try_add``/``add``/``get``/``set``)
    Named integer counters (micro-USD) that billing uses to hold budgets across instances without a database
    round trip. A counter that does not exist reads as 0. ``ttl_s`` gives a counter an expiry when it has none
    yet (normally: when the call creates it), so a periodic budget resets; later calls never extend it.

Holds (``reserve``/``settle``/``release_expired``/``seed``/``open_holds``)
    Billing's reservation of a call's worst-case cost against several budgets at once. ``reserve`` adds every
    ``Charge`` to its counter and registers the hold only if all fit their caps (else nothing changes and the
    index of the first misfit is returned). ``settle`` removes the hold and adds ``actual - reserved`` per
    counter; if the hold is gone (settled already, or released) it adds the full ``actual`` and returns
    False: the work was done, so it is charged either way, once per ``settle`` call. Callers settle a hold
    once (a second ``settle`` charges again). Caps are not checked when settling.

    Every hold is a lease (``lease_s``, 15 min, from ``now``) so an instance killed mid-call leaks nothing:
    ``release_expired`` removes holds whose lease ended (``expires <= now``) and subtracts what they reserved.
    Every instance may sweep at once; each hold ends exactly once, settled or released. An unreleased hold
    past its lease still settles normally; pick ``lease_s`` above the longest call.

    ``settle`` and ``release_expired`` never create a counter: one that does not exist (its ``ttl_s`` ran out,
    or Redis lost or evicted it) is left for ``seed`` to load from the database, which records the cost;
    re-creating it with a refund or a partial cost would stop that seed and show a wrong budget. ``seed`` sets
    only counters that do not exist (the first instance loads the database's value, later ones keep the live
    one); seed before ``reserve``, which creates missing counters from 0. A TTL-reset counter re-created under
    its old name cannot be told from the old one, so counters named per period (``month:7:2024-06``) keep
    periods apart. Charges name distinct counters; amounts are ``>= 0``; a charge's ``ttl_s`` follows the
    counter rule above.

Fused call paths (``admit``/``finish``)
    What one call does, in as few round trips as the backend allows. ``admit`` is ``check_and_consume`` then,
    if admitted and a hold is asked for, ``reserve``; a refused reservation takes the call's tokens back out of
    the windows (its request still counts, as a refused call does at OpenAI). ``finish`` ends a batch of calls:
    per ``Finish``, ``settle`` of its hold, ``adjust_tokens`` of its correction and the release of its slot. The
    defaults here compose the single operations; the memory backend runs the same steps on one clock reading
    without a coroutine per step, and the Redis backend runs ``admit`` as one script and a whole ``finish`` batch
    as one script, so a budgeted call costs one round trip plus a share of one.

Invalidation bus (``publish``/``subscribe``)
    Fire-and-forget fan-out to every subscriber of a channel, across instances with Redis. A message published
    before a subscription is active is not delivered, and a Redis reconnect may lose messages: subscribers
    should reload what they cache when they (re)subscribe.

Failures: the Redis backend raises ``LimiterUnavailable`` (a ``ConnectionError``) when Redis cannot be
reached; the caller chooses to fail open or closed.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal, Protocol, Self

WINDOW_MS = 60_000
"""The rate-limit window (rpm and tpm are per 60 s)."""
DEFAULT_LEASE_S = 600.0
"""How long a concurrency slot is held before it may be reclaimed, unless renewed."""
DEFAULT_HOLD_LEASE_S = 900.0
"""How long a budget hold lives before ``release_expired`` may release it."""

RateKind = Literal["requests", "tokens"]

FITS = -1
"""Per-scope retry value (ms) meaning: this limit does not stand in the way."""
NEVER = -2
"""Per-scope retry value (ms) meaning: this request can never fit under this limit."""


class LimiterUnavailable(ConnectionError):
    """The shared store (Redis) could not be reached; nothing was checked or recorded."""


@dataclass(frozen=True, slots=True)
class ScopeLimits:
    """The limits of one scope (``key:123``, ``account:7``); ``None`` means unlimited and untracked."""

    scope: str
    rpm: int | None = None
    tpm: int | None = None

    def __post_init__(self) -> None:
        # Checked once here rather than on every call: callers build a key's scopes once and reuse them.
        if (self.rpm is not None and self.rpm < 0) or (self.tpm is not None and self.tpm < 0):
            raise ValueError(f"limits must be >= 0 or None: {self}")


# The records made on every call (LimitState, RateDecision, Charge, Finish) are read-only by convention, not
# frozen: a frozen dataclass sets each field through object.__setattr__, about five times the cost of a plain one.
@dataclass(slots=True)
class LimitState:
    """One limit of the tightest scope, as the ``x-ratelimit-*`` headers show it."""

    limit: int
    remaining: int
    reset_s: float


@dataclass(slots=True)
class RateDecision:
    allowed: bool
    retry_after_s: float
    """0 when allowed; ``math.inf`` when the request can never fit."""
    scope: str | None
    """The limiting scope when rejected."""
    kind: RateKind | None
    """Which limit of ``scope`` rejected the request."""
    requests: LimitState | None
    """The rpm of the tightest scope (the limiting one on a requests rejection); None if no scope has rpm."""
    tokens: LimitState | None
    """The tpm of the tightest scope (the limiting one on a tokens rejection); None if no scope has tpm."""
    at: float
    """The timestamp (s) the request was recorded at: pass it to ``adjust_tokens``."""


@dataclass(frozen=True, slots=True)
class Slot:
    scope: str
    holder: str
    expires_at: float


@dataclass(slots=True)
class Charge:
    """One counter of a ``reserve``: add ``amount`` (micro-USD, ``>= 0``) to ``counter`` if it stays within
    ``cap``."""

    counter: str
    """Counter name (the same namespace as ``try_add``/``add``/``get``/``set``)."""
    amount: int
    cap: int | None
    """Admit only if ``current + amount <= cap``; None: no cap (always fits)."""
    ttl_s: float | None = None
    """Expiry given to the counter if it has none yet, normally because this call creates it (monthly
    budgets)."""


@dataclass(slots=True)
class Finish:
    """The end of one call, for ``Limiter.finish``."""

    hold_id: str | None = None
    """The call's hold, settled with ``actual``; None: no hold."""
    actual: Mapping[str, int] = field(default_factory=dict)
    scopes: Sequence[ScopeLimits] = ()
    token_delta: int = 0
    """Added at ``at`` in the limited ``scopes`` (``adjust_tokens``)."""
    at: float = 0.0
    slot: Slot | None = None


class Subscription(Protocol):
    """Messages of one channel. Entering ``async with`` returns once the subscription is active."""

    def __aiter__(self) -> Self: ...

    async def __anext__(self) -> bytes: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def aclose(self) -> None: ...


class Limiter(Protocol):
    async def check_and_consume(
        self, scopes: Sequence[ScopeLimits], tokens: int, now: float | None = None
    ) -> RateDecision:
        """Called once per request before routing: admit and record it in every scope, or reject it and
        record nothing. ``tokens`` is the estimate to count against tpm (prompt, plus ``max_tokens`` if the
        operator wants the worst case); correct it later with ``adjust_tokens``. Not billing: no money moves.
        """
        ...

    async def adjust_tokens(
        self, scopes: Sequence[ScopeLimits], delta: int, at: float, now: float | None = None
    ) -> None:
        """Called after the response, when real usage is known: add ``delta`` (may be negative) tokens at
        ``at`` (``RateDecision.at``) in each limited scope, so the correction leaves the window together
        with the original request. A no-op if ``at`` has already left the window."""
        ...

    async def acquire_slot(
        self, scope: str, limit: int, *, lease_s: float = DEFAULT_LEASE_S, now: float | None = None
    ) -> Slot | None:
        """Called before the upstream call when the key has a concurrency limit: take one of ``limit`` slots,
        or None if all are held by live leases."""
        ...

    async def renew_slot(
        self, slot: Slot, *, lease_s: float = DEFAULT_LEASE_S, now: float | None = None
    ) -> Slot | None:
        """Called by holders that may outlive their lease (long streams, task polls): extend it to ``now +
        lease_s``. None if the lease was already reclaimed (the holder should stop or re-acquire)."""
        ...

    async def release(self, slot: Slot) -> None:
        """Called when the call ends, however it ends. Idempotent."""
        ...

    async def try_add(self, name: str, amount: int, cap: int, *, ttl_s: float | None = None) -> tuple[bool, int]:
        """Billing's reservation: add ``amount`` only if ``current + amount <= cap``. Returns ``(True, new)``
        or ``(False, current)``, atomically across instances."""
        ...

    async def add(self, name: str, delta: int, *, ttl_s: float | None = None) -> int:
        """Billing's settlement and refunds: add ``delta`` unconditionally (may go negative); returns the new
        value."""
        ...

    async def get(self, name: str) -> int:
        """Current value, 0 if the counter does not exist (or expired)."""
        ...

    async def set(self, name: str, value: int, *, ttl_s: float | None = None) -> None:
        """Replace value and expiry, e.g. when billing reloads a balance from the ledger."""
        ...

    async def reserve(
        self,
        hold_id: str,
        charges: Sequence[Charge],
        *,
        lease_s: float = DEFAULT_HOLD_LEASE_S,
        now: float | None = None,
    ) -> int | None:
        """Billing's reservation before the upstream call. Atomically: if every charge fits its cap, add every
        amount to its counter and register the hold (``hold_id -> {counter: amount}``, expiring at ``now +
        lease_s``); return None. Otherwise change nothing and return the index of the first charge that did
        not fit. A ``hold_id`` already registered raises ``ValueError`` (as do repeated counters and negative
        amounts). ``now`` only places the lease; counter expiries follow the limiter's clock."""
        ...

    async def settle(self, hold_id: str, actual: Mapping[str, int]) -> bool:
        """Billing's settlement when the call ends. Atomically: if the hold is still registered, remove it, add
        ``actual.get(counter, 0) - reserved`` to each of its counters and ``actual`` to counters not in the
        hold; return True. If it is gone (settled already, or released by the sweeper), add the full actual
        amounts and return False: the work was done, so it is charged either way, exactly once per call.
        Settle each hold once. Caps are not checked. Counters that do not exist are left alone (see Holds)."""
        ...

    async def release_expired(self, *, now: float | None = None, limit: int = 1000) -> int:
        """The sweeper: remove up to ``limit`` holds whose lease has ended (``expires <= now``) and subtract
        their reserved amounts (from counters that still exist); return how many. Safe to run from every
        instance at once: each hold is released at most once, and never both settled and released."""
        ...

    async def seed(self, values: Mapping[str, int], *, ttl_s: Mapping[str, float] | None = None) -> int:
        """Set each counter to its value (with the expiry in ``ttl_s``, if any) only where the counter does not
        exist yet; return how many were set. The first instance to see an account seeds it from the
        database; later ones keep the live value."""
        ...

    async def open_holds(self) -> int:
        """How many holds are registered (for tests, metrics and a consistency check)."""
        ...

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
        """``check_and_consume`` (when ``scopes``), then ``reserve`` (when ``hold_id``) if admitted. Returns the
        decision (None without scopes) and ``reserve``'s answer (None: reserved, or nothing to reserve; else the
        index of the first charge over its cap, after the call's tokens were taken back out of the windows)."""
        decision = None
        if scopes:
            decision = await self.check_and_consume(scopes, tokens, now)
            if not decision.allowed:
                return decision, None
        if hold_id is None:
            return decision, None
        refused = await self.reserve(hold_id, charges, lease_s=lease_s, now=now)
        if refused is not None and decision is not None and tokens:
            await self.adjust_tokens(scopes, -tokens, decision.at, now)
        return decision, refused

    async def finish(self, calls: Sequence[Finish], now: float | None = None) -> None:
        """End each call: settle its hold, correct its tokens, release its slot (see ``Finish``)."""
        for call in calls:
            if call.hold_id is not None:
                await self.settle(call.hold_id, call.actual)
            if call.token_delta and call.scopes:
                await self.adjust_tokens(call.scopes, call.token_delta, call.at, now)
            if call.slot is not None:
                await self.release(call.slot)

    async def publish(self, channel: str, message: bytes) -> None:
        """Called after an admin write (keys, channels, prices) so every instance refreshes its cache."""
        ...

    def subscribe(self, channel: str) -> Subscription:
        """Messages published to ``channel`` from now on; use ``async with`` to know it is active."""
        ...

    async def close(self) -> None:
        """Close subscriptions and connections. The limiter is unusable afterwards."""
        ...

    def slot(
        self, scope: str, limit: int, *, lease_s: float = DEFAULT_LEASE_S
    ) -> AbstractAsyncContextManager[Slot | None]:
        """``async with limiter.slot(scope, 3) as slot:``; ``slot`` is None when refused, released on exit."""
        return _held_slot(self, scope, limit, lease_s)


@asynccontextmanager
async def _held_slot(limiter: Limiter, scope: str, limit: int, lease_s: float) -> AsyncIterator[Slot | None]:
    slot = await limiter.acquire_slot(scope, limit, lease_s=lease_s)
    try:
        yield slot
    finally:
        if slot is not None:
            await limiter.release(slot)


def check_scopes(scopes: Sequence[ScopeLimits], tokens: int) -> None:
    """What ``ScopeLimits`` cannot check alone (each checks its own limits when built)."""
    if tokens < 0:
        raise ValueError(f"tokens must be >= 0, got {tokens}")
    if len(scopes) > 1 and len({s.scope for s in scopes}) != len(scopes):
        raise ValueError("scopes must be distinct")


def check_charges(hold_id: str, charges: Sequence[Charge]) -> None:
    if not hold_id:
        raise ValueError("hold_id must not be empty")
    seen: set[str] = set()
    negative: Charge | None = None
    for c in charges:  # one loop for both checks (a set comprehension would make a function per call)
        if c.counter in seen:
            raise ValueError("charges must name distinct counters")
        seen.add(c.counter)
        if c.amount < 0 and negative is None:
            negative = c
    if negative is not None:  # reported after the duplicates, as a check of its own would be
        raise ValueError(f"charge amounts must be >= 0: {negative}")


def check_actual(actual: Mapping[str, int]) -> None:
    for counter, amount in actual.items():
        if amount < 0:
            raise ValueError(f"actual amounts must be >= 0, got {amount} for {counter!r}")


def build_decision(scopes: Sequence[ScopeLimits], usage: Sequence[int], allowed: bool, now_ms: int) -> RateDecision:
    """Turn per-scope usage into a decision. ``usage`` holds six ints per scope of ``scopes``, in order (the
    layout the Redis script returns, so neither backend builds an object per scope): for requests, then for
    tokens, the amount counted (including this request when allowed), the reset (ms, see ``reset_s``) and the
    retry (ms, or ``FITS``/``NEVER``)."""
    requests: LimitState | None = None
    tokens: LimitState | None = None
    i = 0
    for sl in scopes:  # per kind the tightest scope: least remaining, then latest reset; the first on a tie
        if sl.rpm is not None:
            state = _state(sl.rpm, usage, i)
            if requests is None or (state.remaining, -state.reset_s) < (requests.remaining, -requests.reset_s):
                requests = state
        if sl.tpm is not None:
            state = _state(sl.tpm, usage, i + 3)
            if tokens is None or (state.remaining, -state.reset_s) < (tokens.remaining, -tokens.reset_s):
                tokens = state
        i += 6
    if allowed:
        return RateDecision(True, 0.0, None, None, requests, tokens, now_ms / 1000)
    retry = -1.0
    limiting = -1  # the offset in ``usage`` of the (scope, kind) that rejected the request
    for i in range(0, len(usage), 3):
        r = usage[i + 2]
        if r != FITS:
            seconds = math.inf if r == NEVER else r / 1000
            if seconds > retry:
                retry, limiting = seconds, i
    scope: str | None = None
    kind: RateKind | None = None
    if limiting >= 0:  # the rejecting kind shows the rejecting scope, whatever the other scopes hold
        sl = scopes[limiting // 6]
        scope = sl.scope
        limit = sl.tpm if limiting % 6 else sl.rpm
        assert limit is not None  # only a set limit rejects
        if limiting % 6:
            kind, tokens = "tokens", _state(limit, usage, limiting)
        else:
            kind, requests = "requests", _state(limit, usage, limiting)
    return RateDecision(False, retry, scope, kind, requests, tokens, now_ms / 1000)


def _state(limit: int, usage: Sequence[int], i: int) -> LimitState:
    """The state of a limit whose counted amount and reset (ms) are ``usage[i]`` and ``usage[i + 1]``."""
    remaining = limit - usage[i]
    # A conditional, not max(): the builtin parses keyword arguments on every call.
    return LimitState(limit, remaining if remaining > 0 else 0, usage[i + 1] / 1000)


def to_ms(seconds: float) -> int:
    return round(seconds * 1000)
