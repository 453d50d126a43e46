"""Per-IP throttling of failed client-key authentications: a sliding window in process memory.

Guessing keys is the attack; an address that fails ``limit`` times within ``window_s`` is refused (429 with
``Retry-After``) until its oldest failure in the window ages out, even when it then presents a valid key, so a
guesser learns nothing from a lucky try. A successful authentication from an address that is not blocked costs one
truthiness test of an (almost always empty) dict.

Per instance on purpose: with several instances behind a balancer an attacker gets ``limit`` per instance, which
still turns millions of guesses a minute into a few dozen.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

MAX_TRACKED = 100_000
"""Addresses with recent failures kept at most; past this the oldest are forgotten (memory stays bounded)."""


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
