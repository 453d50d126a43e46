"""The routing state of one gateway: the channel registry (replaced on every reload), the breaker board, and what
each upstream outcome does to them.

The relay asks ``plan(model)`` for a call's candidates and reports every attempt's outcome with ``succeeded`` or
``failed``. What a failure means comes from the error table (``ErrorSpec.blame``, ``.permanent``): a channel's
fault counts against the breakers of the channel and the key; a key's rate limit sets the key aside for its
``Retry-After``; a permanent error (rejected key, no credit) counts a strike, and ``auto_disable_after`` strikes in
a row disable the key through ``on_permanent`` (which persists it).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from omnirelay.errors import Blame, GatewayError
from omnirelay.routing.breaker import BreakerBoard
from omnirelay.routing.policy import RoutingPolicy
from omnirelay.routing.registry import Candidate, ChannelRegistry, RoutePlan

log = structlog.get_logger(__name__)

PermanentHandler = Callable[[Candidate, GatewayError, str], None]
"""Called once when a key is to be disabled: the candidate, the error, the reason to record."""


class Router:
    def __init__(
        self,
        policy: RoutingPolicy,
        board: BreakerBoard,
        *,
        on_permanent: PermanentHandler | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy
        self.board = board
        self.on_permanent = on_permanent
        self.clock = clock
        self.registry = ChannelRegistry(())
        self._strikes: dict[str, int] = {}

    def plan(self, model: str) -> RoutePlan:
        return self.registry.plan(model, self.board, self.clock(), fail_fast=self.policy.fail_fast)

    def succeeded(self, candidate: Candidate) -> None:
        now = self.clock()
        self.board.succeeded(candidate.target, now)
        self.board.succeeded(candidate.key.target, now)
        if self._strikes:
            self._strikes.pop(candidate.key.target, None)

    def failed(self, candidate: Candidate, err: GatewayError) -> None:
        spec = err.code.spec
        now = self.clock()
        if spec.blame is Blame.channel:
            self.board.failed(candidate.target, now)
            self.board.failed(candidate.key.target, now)
            if err.retry_after:
                self.board.cool(candidate.target, now + err.retry_after)
        elif spec.blame is Blame.key:
            if spec.permanent is None or not self.policy.auto_disable_after:
                self.board.cool(candidate.key.target, now + (err.retry_after or self.policy.rate_limit_cooldown_s))
            else:
                self._strike(candidate, err, spec.permanent)

    def _strike(self, candidate: Candidate, err: GatewayError, reason: str) -> None:
        target = candidate.key.target
        strikes = self._strikes.get(target, 0) + 1
        if strikes < self.policy.auto_disable_after:
            self._strikes[target] = strikes
            return
        self._strikes.pop(target, None)
        self.board.disable(target)
        if err.upstream_status is not None:
            reason = f"{reason} (upstream HTTP {err.upstream_status})"
        log.error("upstream_key_disabled", channel=candidate.channel.name, key=candidate.key.id, code=err.code.name)
        if self.on_permanent is not None:
            self.on_permanent(candidate, err, reason)
