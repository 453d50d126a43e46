"""Admission and settlement around one relayed call: price, rate limits, concurrency, budget reservation.

``admit`` runs before any upstream is contacted and raises the client-facing error when the call may not go
ahead; ``settle`` runs exactly once when the call ends, from synchronous code (it schedules the limiter work),
and turns the usage into a cost, a ledger entry and a usage row.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from omnirelay.billing.ledger import Billing, Hold
from omnirelay.billing.prices import Price
from omnirelay.errors import ErrorCode, GatewayError
from omnirelay.formats.usage import Usage
from omnirelay.limits import Limiter, RateDecision, ScopeLimits, Slot, rate_limit_headers
from omnirelay.providers.kinds import WireFormat
from omnirelay.store.snapshot import KeyRecord

log = structlog.get_logger(__name__)


def requested_output(surface: WireFormat, body: dict[str, Any]) -> tuple[int | None, int]:
    """(max output tokens per choice, number of choices) as the client asked, in its own format's fields."""
    if surface == "anthropic":
        limit = body.get("max_tokens")
        return (limit if isinstance(limit, int) else None), 1
    if surface == "gemini":
        config = body.get("generationConfig") or body.get("generation_config") or {}
        limit = config.get("maxOutputTokens", config.get("max_output_tokens")) if isinstance(config, dict) else None
        count = config.get("candidateCount", 1) if isinstance(config, dict) else 1
        return (limit if isinstance(limit, int) else None), count if isinstance(count, int) and count > 0 else 1
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    count = body.get("n", 1)
    return (limit if isinstance(limit, int) else None), count if isinstance(count, int) and count > 0 else 1


def scopes_of(key: KeyRecord) -> list[ScopeLimits]:
    scopes = []
    if key.rpm is not None or key.tpm is not None:
        scopes.append(ScopeLimits(f"key:{key.id}", key.rpm, key.tpm))
    if key.account_rpm is not None or key.account_tpm is not None:
        scopes.append(ScopeLimits(f"account:{key.account_id}", key.account_rpm, key.account_tpm))
    return scopes


@dataclass(slots=True)
class Ticket:
    """What admission granted one call; handed back to ``settle``."""

    price: Price
    admitted_tokens: int
    hold: Hold | None
    """None when no budget applies to the key."""
    scopes: list[ScopeLimits] = field(default_factory=list)
    decision: RateDecision | None = None
    slot: Slot | None = None
    settled: bool = False

    @property
    def headers(self) -> dict[str, str]:
        return rate_limit_headers(self.decision) if self.decision is not None else {}


class Admission:
    def __init__(self, billing: Billing, limiter: Limiter) -> None:
        self.billing = billing
        self.limiter = limiter
        self._tasks: set[asyncio.Task[None]] = set()

    async def admit(
        self,
        *,
        request_id: str,
        key: KeyRecord,
        surface: WireFormat,
        model: str,
        upstream_model: str | None,
        body: dict[str, Any],
        prompt_tokens: Callable[[], int],
    ) -> Ticket:
        """``prompt_tokens`` counts the prompt offline; it is called only when a token limit or a budget needs
        the number, since counting a long prompt costs more than the rest of the relay."""
        price = self.billing.price_for(model, upstream_model)
        max_output, choices = requested_output(surface, body)
        scopes = scopes_of(key)
        needs_count = key.budgeted or any(scope.tpm is not None for scope in scopes)
        prompt = prompt_tokens() if needs_count else 0
        admitted_tokens = prompt + (max_output or 0) * choices
        decision = None
        if scopes:
            decision = await self.limiter.check_and_consume(scopes, admitted_tokens)
            if not decision.allowed:
                raise self._rate_refusal(decision)
        slot = None
        if key.max_concurrency is not None:
            slot = await self.limiter.acquire_slot(f"key:{key.id}", key.max_concurrency)
            if slot is None:
                await self._undo_rate(scopes, decision, admitted_tokens)
                raise GatewayError(
                    ErrorCode.rate_limited,
                    f"This API key allows {key.max_concurrency} concurrent requests; wait for one to finish.",
                    retry_after=1,
                )
        hold = None
        if key.budgeted:
            output = max_output * choices if max_output is not None else None
            worst = self.billing.worst_case(price, key, prompt, output)
            try:
                hold = await self.billing.reserve(request_id, key, price, worst)
            except GatewayError:
                if slot is not None:
                    await self.limiter.release(slot)
                await self._undo_rate(scopes, decision, admitted_tokens)
                raise
        return Ticket(price, admitted_tokens, hold, scopes, decision, slot)

    def _rate_refusal(self, decision: RateDecision) -> GatewayError:
        kind = decision.kind or "requests"
        scope = "account" if (decision.scope or "").startswith("account:") else "API key"
        if math.isinf(decision.retry_after_s):
            return GatewayError(
                ErrorCode.request_too_large,
                f"This request needs more tokens than this {scope}'s per-minute limit allows.",
                status=429,
                headers=rate_limit_headers(decision),
            )
        return GatewayError(
            ErrorCode.rate_limited,
            f"Rate limit reached for this {scope} on {kind} per min. "
            f"Please try again in {decision.retry_after_s:.1f}s.",
            type_override=kind,
            headers=rate_limit_headers(decision),
        )

    async def _undo_rate(self, scopes: list[ScopeLimits], decision: RateDecision | None, tokens: int) -> None:
        """A refused call does not count against the token window (its request still counts, as at OpenAI)."""
        if decision is not None and tokens:
            await self.limiter.adjust_tokens(scopes, -tokens, decision.at)

    def settle(self, ticket: Ticket, key: KeyRecord, usage: Usage) -> int:
        """Cost of the call; schedules the counter, window and slot updates. Idempotent per ticket."""
        if ticket.settled:
            return 0
        ticket.settled = True
        cost = self.billing.cost(ticket.price, key, usage)
        if ticket.hold is None and ticket.decision is None and ticket.slot is None:
            return cost  # nothing held, nothing to give back
        task = asyncio.get_running_loop().create_task(self._settle(ticket, usage, cost))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return cost

    async def _settle(self, ticket: Ticket, usage: Usage, cost: int) -> None:
        try:
            if ticket.hold is not None:
                await self.billing.settle(ticket.hold, cost)
            if ticket.decision is not None:
                delta = usage.total_tokens - ticket.admitted_tokens
                if delta:
                    await self.limiter.adjust_tokens(ticket.scopes, delta, ticket.decision.at)
            if ticket.slot is not None:
                await self.limiter.release(ticket.slot)
        except Exception as exc:  # the limiter is away; leases and windows expire on their own
            log.error("settlement_failed", error=type(exc).__name__)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
