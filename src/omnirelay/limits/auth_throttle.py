"""Per-IP throttling of failed client-key authentications: a sliding window in process memory.

Guessing keys is the attack; an address that fails ``limit`` times within ``window_s`` is refused (429 with
``Retry-After``) until its oldest failure in the window ages out, even when it then presents a valid key, so a
guesser learns nothing from a lucky try. A successful authentication from an address that is not blocked costs one
truthiness test of an (almost always empty) dict.

``AuthThrottle`` is per instance: with several instances behind a balancer an attacker gets ``limit`` per instance.
``SharedAuthThrottle`` (used when ``redis_url`` is set) closes that gap: failures also count in a shared fixed
window per address in the limiter (Redis), and the instance whose failure reaches ``limit`` there blocks the
address for ``window_s`` and tells every instance over the limiter's bus. The counting runs off the request path
(fire and forget), so the shared block lands a moment after the failure that earned it, and the local sliding
window still applies on its own, so the shared throttle is never weaker than the unshared one. Without Redis it
degrades to exactly that. An instance that starts later learns of blocks decided after it subscribed.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

import orjson
import structlog

from omnirelay.limits.base import Limiter
from omnirelay.limits.bus import BusPeer

log = structlog.get_logger(__name__)

MAX_TRACKED = 100_000
"""Addresses with recent failures kept at most; past this the oldest are forgotten (memory stays bounded)."""
BUS_CHANNEL = "auth-throttle"
COUNTER_PREFIX = "authfail:"


class AuthThrottle:
    def __init__(self, limit: int, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self.blocked: dict[str, float] = {}
        """Address -> when it may try again."""
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, ip: str | None) -> float | None:
        """Seconds until ``ip`` may authenticate again, or None when it may now."""
        until = self.blocked.get(ip or "")
        if until is None:
            return None
        left = until - self.clock()
        if left > 0:
            return left
        del self.blocked[ip or ""]
        return None

    def failed(self, ip: str | None) -> float | None:
        """Count a failure; the seconds ``ip`` is now blocked for, or None when it is not."""
        now = self.clock()
        address = ip or ""
        times = self._failures.get(address)
        if times is None:
            if len(self._failures) >= MAX_TRACKED:
                self._forget(now)
            times = self._failures[address] = deque()
        times.append(now)
        horizon = now - self.window_s
        while times and times[0] <= horizon:
            times.popleft()
        if len(times) < self.limit:
            return None
        until = times[-self.limit] + self.window_s
        self.blocked[address] = until
        return until - now

    def blocked_count(self) -> int:
        now = self.clock()
        return sum(1 for until in self.blocked.values() if until > now)

    def _forget(self, now: float) -> None:
        horizon = now - self.window_s
        stale = [address for address, times in self._failures.items() if not times or times[-1] <= horizon]
        for address in stale:
            del self._failures[address]
        if len(self._failures) >= MAX_TRACKED:  # a flood of live addresses: drop the first half seen
            for address in list(self._failures)[: MAX_TRACKED // 2]:
                del self._failures[address]

    def block(self, ip: str, seconds: float) -> None:
        """Refuse ``ip`` for ``seconds`` from now (or longer, if it already is)."""
        until = self.clock() + seconds
        if len(self.blocked) >= MAX_TRACKED:
            now = self.clock()
            for address in [a for a, t in self.blocked.items() if t <= now]:
                del self.blocked[address]
        if until > self.blocked.get(ip, 0.0):
            self.blocked[ip] = until

    def start(self) -> None:
        """Called by the gateway once its event loop runs (nothing to start here)."""

    async def stop(self) -> None:
        """Called by the gateway as it stops."""


class SharedAuthThrottle(BusPeer, AuthThrottle):
    """``AuthThrottle`` whose failures also count across every instance sharing ``limiter`` (see the module)."""

    channel = BUS_CHANNEL
    name = "auth_throttle"

    def __init__(
        self, limiter: Limiter, limit: int, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        AuthThrottle.__init__(self, limit, window_s, clock)
        BusPeer.__init__(self, limiter)

    def failed(self, ip: str | None) -> float | None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # called outside the server's loop (a script, a test): this instance's window only
            return AuthThrottle.failed(self, ip)
        self.spawn(self._count(ip or ""))
        return AuthThrottle.failed(self, ip)

    async def _count(self, address: str) -> None:
        window = int(time.time() // self.window_s)
        try:
            failures = await self.limiter.add(f"{COUNTER_PREFIX}{address}:{window}", 1, ttl_s=self.window_s * 2)
            if failures != self.limit:  # only the failure that reaches the limit blocks (and tells the others)
                return
            self.block(address, self.window_s)
            message = orjson.dumps({"o": self.origin, "ip": address, "s": self.window_s})
            await self.limiter.publish(BUS_CHANNEL, message)
        except Exception as exc:  # Redis away: the local window still applies
            log.warning("auth_throttle_count_failed", error=type(exc).__name__)

    def receive(self, message: bytes) -> None:
        try:
            data = orjson.loads(message)
            if data.get("o") != self.origin:
                self.block(str(data["ip"]), float(data["s"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("auth_throttle_message_invalid")


def create_auth_throttle(limit: int, limiter: Limiter | None) -> AuthThrottle:
    """Shared over ``limiter`` when there is one to share (Redis), else per instance."""
    return AuthThrottle(limit) if limiter is None else SharedAuthThrottle(limiter, limit)
