"""Rate limits, concurrency slots, spend counters, budget holds and the invalidation bus: one interface, two
backends.

``create_limiter(None)`` gives the in-process backend; ``create_limiter("redis://...")`` the shared one.
Semantics are documented in ``omnirelay.limits.base``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import cast

from omnirelay.limits.base import (
    DEFAULT_LEASE_S,
    WINDOW_MS,
    Charge,
    Finish,
    Limiter,
    LimiterUnavailable,
    LimitState,
    RateDecision,
    RateKind,
    ScopeLimits,
    Slot,
    Subscription,
)
from omnirelay.limits.headers import format_duration, rate_limit_headers

__all__ = [
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
]

# URL scheme -> "module:factory"; imported on use, so the memory backend never loads redis.
BACKENDS: dict[str, str] = {
    "memory": "omnirelay.limits.memory:from_url",
    "redis": "omnirelay.limits.redis:from_url",
    "rediss": "omnirelay.limits.redis:from_url",
    "unix": "omnirelay.limits.redis:from_url",
}


def create_limiter(redis_url: str | None, *, namespace: str = "default") -> Limiter:
    """The limiter for ``redis_url`` (config ``redis_url``; None or empty: in-process)."""
    scheme = redis_url.partition("://")[0] if redis_url else "memory"
    try:
        target = BACKENDS[scheme]
    except KeyError:
        raise ValueError(f"unsupported limiter URL scheme {scheme!r}; expected one of {sorted(BACKENDS)}") from None
    module, _, attr = target.partition(":")
    factory = cast(Callable[[str | None, str], Limiter], getattr(importlib.import_module(module), attr))
    return factory(redis_url or None, namespace)
