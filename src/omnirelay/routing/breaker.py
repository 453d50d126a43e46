"""Circuit breakers, one per channel and one per upstream key, and the ``Retry-After`` cool-downs beside them.

A breaker is a small state machine over the outcomes of calls::

    closed ──(failure_threshold consecutive failures, or error_rate over window_s with min_calls)──► open
    open ──(open time over: the next call goes through as a probe)──► half_open
    half_open ──probe succeeds──► closed
    half_open ──probe fails──► open again, for twice as long (up to max_open_s)

``BreakerBoard`` holds them by *target* name (``channel:7``, ``key:7:a1b2c3d4e5f6``). The relay asks
``admit(target, now)`` for every candidate it considers: one dict lookup that finds nothing while all is well,
because only targets that are open, probing, cooling down or disabled have an entry in ``blocked``. Outcomes go to
``succeeded``/``failed``; transitions (rare) go to the board's listener, which ``SharedBreakers`` uses to share them
between instances over the limiter's bus when Redis is configured. Nothing here waits on I/O.

Times are wall-clock seconds (``time.time``) so that instances can exchange them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum

import orjson
import structlog

from omnirelay.config import BreakerConfig
from omnirelay.limits import Limiter
from omnirelay.limits.bus import BusPeer

log = structlog.get_logger(__name__)


class State(Enum):
    closed = "closed"
    open = "open"
    half_open = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    enabled: bool = True
    failure_threshold: int = 5
    error_rate: float = 0.5
    min_calls: int = 20
    window_s: float = 60.0
    open_s: float = 30.0
    max_open_s: float = 300.0
    probe_timeout_s: float = 60.0
    buckets: int = 10
    """The error-rate window is kept as this many buckets: memory and work per call stay constant."""

    @classmethod
    def from_config(cls, config: BreakerConfig) -> BreakerPolicy:
        return cls(
            enabled=config.enabled,
            failure_threshold=config.failure_threshold,
            error_rate=config.error_rate,
            min_calls=config.min_calls,
            window_s=config.window_s,
            open_s=config.open_s,
            max_open_s=config.max_open_s,
            probe_timeout_s=config.probe_timeout_s,
        )


class Breaker:
    """One target's state machine. Pure: every method takes the time."""

    __slots__ = (
        "_bucket_s",
        "_calls",
        "_fails",
        "_slot",
        "calls",
        "consecutive",
        "failures",
        "policy",
        "reopened",
        "state",
        "until",
    )

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        self.state = State.closed
        self.until = 0.0
        """Open: when a probe may go. Half-open: when the probe in flight counts as lost."""
        self.consecutive = 0
        self.reopened = 0
        """Failed probes in a row: each doubles the open time."""
        self.calls = self.failures = 0
        """Within the window (kept as running sums over the buckets)."""
        self._bucket_s = policy.window_s / policy.buckets
        self._calls = [0] * policy.buckets
        self._fails = [0] * policy.buckets
        self._slot = -1

    def _bucket(self, now: float) -> int:
        slot = int(now / self._bucket_s)
        count = self.policy.buckets
        if slot != self._slot:
            if self._slot < 0 or slot - self._slot >= count:
                self._calls = [0] * count
                self._fails = [0] * count
                self.calls = self.failures = 0
            else:
                for passed in range(self._slot + 1, slot + 1):
                    index = passed % count
                    self.calls -= self._calls[index]
                    self.failures -= self._fails[index]
                    self._calls[index] = self._fails[index] = 0
            self._slot = slot
        return slot % count

    def window(self, now: float) -> tuple[int, int]:
        """(calls, failures) within the window."""
        self._bucket(now)
        return self.calls, self.failures

    @property
    def quiet(self) -> bool:
        """Closed, and no failure left in the window: nothing to remember."""
        return self.state is State.closed and not self.failures

    def record(self, ok: bool, now: float) -> State | None:
        """Count one outcome; returns the new state when it changed."""
        index = self._bucket(now)
        self._calls[index] += 1
        self.calls += 1
        if ok:
            self.consecutive = 0
            # An open breaker ignores successes of calls sent before it opened; only a probe closes it.
            return self._close() if self.state is State.half_open else None
        self._fails[index] += 1
        self.failures += 1
        self.consecutive += 1
        if self.state is State.half_open:
            return self._open(now)
        if self.state is State.closed and (self.consecutive >= self.policy.failure_threshold or self._rate_exceeded()):
            return self._open(now)
        return None

    def _rate_exceeded(self) -> bool:
        return self.calls >= self.policy.min_calls and self.failures >= self.policy.error_rate * self.calls

    def probe(self, now: float) -> bool:
        """May a call go now as the probe? Open with its time over, or half-open with the last probe lost."""
        if self.state is State.closed or now < self.until:
            return False
        self.state = State.half_open
        self.until = now + self.policy.probe_timeout_s
        return True

    def _open(self, now: float) -> State:
        self.state = State.open
        self.until = now + min(self.policy.open_s * 2**self.reopened, self.policy.max_open_s)
        self.reopened += 1
        return State.open

    def _close(self) -> State:
        self.state = State.closed
        self.until = 0.0
        self.consecutive = self.reopened = 0
        self._slot = -1  # a fresh window: the failures that opened it are history
        return State.closed

    def force(self, state: State, until: float) -> None:
        """Take a state decided elsewhere (another instance)."""
        if state is State.closed:
            self._close()
        else:
            self.state, self.until = state, until


@dataclass(frozen=True, slots=True)
class Change:
    """A transition worth telling other instances about."""

    target: str
    kind: str
    """``open``, ``closed`` or ``cool``."""
    until: float = 0.0


@dataclass(frozen=True, slots=True)
class TargetState:
    """How one target looks now, for the admin API."""

    state: str
    """``closed``, ``open``, ``half_open``, ``cooling`` or ``disabled``."""
    until: float | None
    calls: int
    failures: int


class BreakerBoard:
    """Breakers by target. Only targets that failed within the window have one: the others cost a dict lookup
    per outcome. So the error rate of a target counts its calls from its first failure in the window on (a bias
    towards opening that ``min_calls`` bounds)."""

    def __init__(
        self,
        policy: BreakerPolicy | None = None,
        *,
        listener: Callable[[Change], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy or BreakerPolicy()
        self.listener = listener
        self.clock = clock
        self.blocked: dict[str, float] = {}
        """Targets that may not take a call now, with when they may again (``inf``: disabled)."""
        self._breakers: dict[str, Breaker] = {}
        self._cooling: dict[str, float] = {}
        self._disabled: set[str] = set()

    # --- the hot path -----------------------------------------------------------------------------------------

    def admit(self, target: str, now: float) -> float:
        """0.0 if a call may go to ``target`` now (possibly as the half-open probe); otherwise when it may."""
        until = self.blocked.get(target)
        if until is None:
            return 0.0
        if now < until:
            return until
        breaker = self._breakers.get(target)
        self._cooling.pop(target, None)
        if breaker is not None and breaker.state is not State.closed:
            admitted = breaker.probe(now)
            self.blocked[target] = breaker.until
            return 0.0 if admitted else breaker.until
        del self.blocked[target]
        return 0.0

    def succeeded(self, target: str, now: float) -> None:
        breaker = self._breakers.get(target)
        if breaker is None:
            return  # no failure lately: nothing to count (the error rate starts with the first failure)
        if breaker.record(True, now) is State.closed:
            self._reblock(target)
            log.info("breaker_closed", target=target)
            self._emit(Change(target, "closed"))
        elif breaker.quiet:
            del self._breakers[target]  # a whole window without failures: back to the fast path

    def failed(self, target: str, now: float) -> None:
        if not self.policy.enabled:
            return
        breaker = self._breakers.get(target)
        if breaker is None:
            breaker = self._breakers[target] = Breaker(self.policy)
        if breaker.record(False, now) is State.open:
            self._reblock(target)
            log.warning("breaker_opened", target=target, seconds=round(breaker.until - now, 1))
            self._emit(Change(target, "open", breaker.until))

    # --- cool-downs, disabling, probes --------------------------------------------------------------------------

    def cool(self, target: str, until: float) -> None:
        """Set ``target`` aside until ``until`` (an upstream's ``Retry-After``)."""
        if until <= self._cooling.get(target, 0.0):
            return
        self._cooling[target] = until
        self._reblock(target)
        self._emit(Change(target, "cool", until))

    def cooling(self, target: str, now: float) -> bool:
        return self._cooling.get(target, 0.0) > now

    def force_probe(self, target: str, now: float) -> None:
        """A call goes to a blocked target anyway (nothing else was left): let its outcome decide, as a probe's."""
        breaker = self._breakers.get(target)
        if breaker is not None and breaker.state is not State.closed:
            breaker.state = State.half_open
            breaker.until = max(breaker.until, now + self.policy.probe_timeout_s)

    def disable(self, target: str) -> None:
        self._disabled.add(target)
        self.blocked[target] = math.inf

    def keep_disabled(self, targets: Iterable[str]) -> None:
        """After a reload: the snapshot now leaves out what the database disabled; keep only ``targets`` (whose
        write is still on its way) blocked here."""
        keep = set(targets)
        for target in self._disabled - keep:
            self._disabled.discard(target)
            self._reblock(target)

    def reset(self, target: str) -> None:
        """Forget everything about ``target`` (an admin re-enabled it)."""
        self._breakers.pop(target, None)
        self._cooling.pop(target, None)
        self._disabled.discard(target)
        self.blocked.pop(target, None)

    def apply(self, change: Change) -> None:
        """A transition another instance made."""
        if change.kind == "cool":
            if change.until > self._cooling.get(change.target, 0.0):
                self._cooling[change.target] = change.until
        else:
            breaker = self._breakers.get(change.target)
            if breaker is None:
                if change.kind == "closed":
                    return
                breaker = self._breakers[change.target] = Breaker(self.policy)
            breaker.force(State.closed if change.kind == "closed" else State.open, change.until)
        self._reblock(change.target)

    def state_of(self, target: str, now: float) -> TargetState:
        breaker = self._breakers.get(target)
        calls, failures = breaker.window(now) if breaker is not None else (0, 0)
        if target in self._disabled:
            return TargetState("disabled", None, calls, failures)
        if breaker is not None and breaker.state is not State.closed:
            return TargetState(breaker.state.value, breaker.until, calls, failures)
        if self.cooling(target, now):
            return TargetState("cooling", self._cooling[target], calls, failures)
        return TargetState("closed", None, calls, failures)

    def _reblock(self, target: str) -> None:
        until = 0.0
        breaker = self._breakers.get(target)
        if breaker is not None and breaker.state is not State.closed:
            until = breaker.until
        until = max(until, self._cooling.get(target, 0.0))
        if target in self._disabled:
            until = math.inf
        if until:
            self.blocked[target] = until
        else:
            self.blocked.pop(target, None)

    def _emit(self, change: Change) -> None:
        if self.listener is not None:
            self.listener(change)


BUS_CHANNEL = "routing.breakers"
STATE_PREFIX = "breaker:"


class SharedBreakers(BusPeer):
    """Breaker transitions shared between instances over the limiter's bus (Redis).

    A breaker that opens on one instance opens on all of them; a probe that closes it closes it everywhere; a
    key's ``Retry-After`` holds on every instance. Open states are also written as counters (``breaker:<target>``
    = until, in ms, expiring with it) so an instance that starts, or resubscribes after losing Redis, picks up
    what is open now. Messages carry the sender's id so an instance ignores its own. Publishing is fire and
    forget, off the request path.
    """

    channel = BUS_CHANNEL
    name = "breaker"

    def __init__(self, board: BreakerBoard, limiter: Limiter, targets: Callable[[], Iterable[str]]) -> None:
        super().__init__(limiter)
        self.board = board
        self.targets = targets
        board.listener = self.publish

    def publish(self, change: Change) -> None:
        self.spawn(self._publish(change))

    async def _publish(self, change: Change) -> None:
        message = orjson.dumps({"o": self.origin, "t": change.target, "k": change.kind, "u": change.until})
        try:
            await self.limiter.publish(BUS_CHANNEL, message)
            if change.kind == "open":
                ttl = max(change.until - time.time(), 1.0)
                await self.limiter.set(STATE_PREFIX + change.target, int(change.until * 1000), ttl_s=ttl)
            elif change.kind == "closed":
                await self.limiter.set(STATE_PREFIX + change.target, 0, ttl_s=1.0)
        except Exception as exc:  # Redis away: this instance's breakers still work on their own
            log.warning("breaker_publish_failed", error=type(exc).__name__)

    def receive(self, message: bytes) -> None:
        try:
            data = orjson.loads(message)
            if data.get("o") == self.origin:
                return
            self.board.apply(Change(str(data["t"]), str(data["k"]), float(data.get("u") or 0.0)))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("breaker_message_invalid")

    async def synced(self) -> None:
        await self.load()

    async def load(self) -> None:
        """Open locally whatever another instance has open now."""
        now_ms = time.time() * 1000
        for target in list(self.targets()):
            until_ms = await self.limiter.get(STATE_PREFIX + target)
            if until_ms > now_ms:
                self.board.apply(Change(target, "open", until_ms / 1000))
