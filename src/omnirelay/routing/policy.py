"""How hard one call tries: attempts, the overall deadline, cool-downs and when a key is given up on.

Which gateway error codes may fail over, and whom each blames, is not here: it is ``omnirelay.errors``' table
(``ErrorSpec.retryable``, ``.blame``, ``.permanent``). This is the operator's side of it, from ``Settings``.
"""

from __future__ import annotations

from dataclasses import dataclass

from omnirelay.config import Settings


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    max_attempts: int = 3
    """Upstream attempts per call, all before any byte reached the client."""
    deadline_s: float = 600.0
    """No attempt starts, and none waits for its first byte, later than this after the call arrived."""
    auto_disable_after: int = 2
    """Consecutive permanent errors of one key before it is disabled; 0: never."""
    rate_limit_cooldown_s: float = 1.0
    """How long a key that answered 429 without ``Retry-After`` is set aside."""
    fail_fast: bool = False
    """Refuse a call whose every candidate is held back, rather than try the soonest to recover."""

    @classmethod
    def from_settings(cls, settings: Settings) -> RoutingPolicy:
        return cls(
            max_attempts=settings.max_attempts,
            deadline_s=settings.request_deadline_s,
            auto_disable_after=settings.auto_disable_after,
            rate_limit_cooldown_s=settings.breaker.rate_limit_cooldown_s,
            fail_fast=settings.breaker.fail_fast,
        )
