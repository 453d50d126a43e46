"""Admission and settlement around one relayed call: price, rate limits, concurrency, budget reservation.

``admit`` runs before any upstream is contacted and raises the client-facing error when the call may not go
ahead; ``settle`` runs exactly once when the call ends, from synchronous code (it schedules the limiter work),
and turns the usage into a cost, a ledger entry and a usage row.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from omnirelay.billing.cost import PriceUnavailable
from omnirelay.billing.ledger import MAX_CACHED_KEYS, Billing
from omnirelay.billing.meters import Meter
from omnirelay.billing.prices import Price
from omnirelay.errors import ErrorCode, GatewayError
from omnirelay.formats.usage import Usage
from omnirelay.limits import Charge, Finish, Limiter, RateDecision, ScopeLimits, Slot, rate_limit_headers
from omnirelay.limits.headers import rate_limit_header_lines
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
    limit = body.get("max_completion_tokens", body.get("max_tokens", body.get("max_output_tokens")))  # last: Responses
    count = body.get("n", 1)
    return (limit if isinstance(limit, int) else None), count if isinstance(count, int) and count > 0 else 1


def scopes_of(key: KeyRecord) -> list[ScopeLimits]:
    scopes = []
    if key.rpm is not None or key.tpm is not None:
        scopes.append(ScopeLimits(f"key:{key.id}", key.rpm, key.tpm))
    if key.account_rpm is not None or key.account_tpm is not None:
        scopes.append(ScopeLimits(f"account:{key.account_id}", key.account_rpm, key.account_tpm))
    return scopes


@dataclass(frozen=True, slots=True)
class KeyTerms:
    """What admission reads of a key on every call, derived once per key record (records are immutable: an edit
    or a reload makes a new one)."""

    key: KeyRecord
    scopes: tuple[ScopeLimits, ...]
    counts_prompt: bool
    """A token limit or a budget needs the prompt's token count."""

    @classmethod
    def of(cls, key: KeyRecord) -> KeyTerms:
        scopes = tuple(scopes_of(key))
        return cls(key, scopes, key.budgeted or any(scope.tpm is not None for scope in scopes))


@dataclass(slots=True)
class Ticket:
    """What admission granted one call; handed back to ``settle``."""

    price: Price
    admitted_tokens: int
    """0 when no limit or budget applies to the key (nothing to correct afterwards)."""
    hold_id: str | None
    """The budget hold's id (the limiter's ``reserve``); None when no budget applies to the key."""
    counters: tuple[str, ...]
    """The budget counters the hold reserved on."""
    scopes: Sequence[ScopeLimits] = ()
    decision: RateDecision | None = None
    slot: Slot | None = None
    settled: bool = False
    meter: Meter | None = None
    """Set for calls priced by unit (images, audio, speech, moderations) rather than by tokens alone."""

    @property
    def headers(self) -> dict[str, str]:
        return rate_limit_headers(self.decision) if self.decision is not None else {}

    def header_lines(self) -> list[tuple[bytes, bytes]]:
        """``headers`` encoded, for the answer's own header lines."""
        return rate_limit_header_lines(self.decision) if self.decision is not None else []


class Admission:
    def __init__(self, billing: Billing, limiter: Limiter) -> None:
        self.billing = billing
        self.limiter = limiter
        self._terms: dict[int, KeyTerms] = {}
        """Per key id, the ``KeyTerms`` of the latest record seen."""
        self._ending: list[Finish] = []
        self._finisher: asyncio.Task[None] | None = None

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
        meter: Meter | None = None,
    ) -> Ticket:
        """``prompt_tokens`` counts the prompt offline; it is called only when a token limit or a budget needs
        the number, since counting a long prompt costs more than the rest of the relay."""
        billing = self.billing
        price = billing.price_for(model, upstream_model)
        unit_worst = None
        if meter is not None:
            try:
                unit_worst = meter.worst_case(price, key.multiplier)
            except PriceUnavailable:
                raise GatewayError(
                    ErrorCode.not_priced,
                    f"The model '{model}' has no price for this endpoint's unit; the operator must price it.",
                    param="model",
                ) from None
        terms = self._terms.get(key.id)
        if terms is None or terms.key is not key:
            if len(self._terms) >= MAX_CACHED_KEYS:  # ids of deleted keys: start over rather than grow
                self._terms.clear()
            terms = self._terms[key.id] = KeyTerms.of(key)
        scopes = terms.scopes
        admitted_tokens, decision = 0, None
        hold_id: str | None = None
        counters: tuple[str, ...] = ()
        if scopes or key.budgeted:
            max_output, choices = requested_output(surface, body) if meter is None else (0, 1)
            prompt = prompt_tokens() if terms.counts_prompt else 0
            admitted_tokens = prompt + (max_output or 0) * choices
            worst = 0
            charges: list[Charge] = []
            if key.budgeted:
                output = max_output * choices if max_output is not None else None
                worst = billing.worst_case(price, key, prompt, output) if unit_worst is None else unit_worst
                budgets = billing.budgets(key)
                charges = budgets.charges(worst)
                hold_id, counters = request_id, budgets.counters
            # One step (one Redis round trip): the rate windows, then the budget hold if the rate admits the call.
            decision, refused = await self.limiter.admit(
                scopes, admitted_tokens, hold_id, charges, lease_s=billing.hold_lease_s
            )
            if decision is not None and not decision.allowed:
                raise self._rate_refusal(decision)
            if refused is not None:
                raise billing.refusal(charges[refused], key, worst)
        ticket = Ticket(price, admitted_tokens, hold_id, counters, scopes, decision, None, False, meter)
        if key.max_concurrency is not None:
            ticket.slot = await self.limiter.acquire_slot(f"key:{key.id}", key.max_concurrency)
            if ticket.slot is None:
                # Nothing was sent: the hold goes back whole and the tokens leave the windows.
                ticket.settled = True
                self._end(ticket, 0, -admitted_tokens)
                raise GatewayError(
                    ErrorCode.rate_limited,
                    f"This API key allows {key.max_concurrency} concurrent requests; wait for one to finish.",
                    retry_after=1,
                )
        return ticket

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

    def settle(self, ticket: Ticket, key: KeyRecord, usage: Usage) -> int:
        """Cost of the call; schedules the counter, window and slot updates. Idempotent per ticket."""
        if ticket.settled:
            return 0
        ticket.settled = True
        if ticket.meter is not None:
            cost = ticket.meter.cost(ticket.price, usage, key.multiplier)
        else:
            cost = self.billing.cost(ticket.price, key, usage)
        if ticket.hold_id is None and ticket.decision is None and ticket.slot is None:
            return cost  # nothing held, nothing to give back
        self._end(ticket, cost, usage.total_tokens - ticket.admitted_tokens)
        return cost

    def _end(self, ticket: Ticket, cost: int, token_delta: int) -> None:
        """Queue the limiter's side of a call's end: its hold settled at ``cost``, its tokens corrected by
        ``token_delta``, its slot released. Ends queued in one turn of the event loop go to the limiter as one
        batch (one Redis round trip for all of them)."""
        hold_id, decision = ticket.hold_id, ticket.decision
        self._ending.append(
            Finish(
                hold_id,
                dict.fromkeys(ticket.counters, cost) if hold_id is not None else {},
                ticket.scopes,
                token_delta if decision is not None else 0,
                decision.at if decision is not None else 0.0,
                ticket.slot,
            )
        )
        if self._finisher is None:
            self._finisher = asyncio.get_running_loop().create_task(self._finish_queued(), name="limiter-finish")

    async def _finish_queued(self) -> None:
        try:
            while self._ending:
                await asyncio.sleep(0)  # let the calls ending in this turn join the batch
                batch, self._ending = self._ending, []
                try:
                    await self.limiter.finish(batch)
                except Exception as exc:  # the limiter is away; leases and windows expire on their own
                    log.error("settlement_failed", error=type(exc).__name__, calls=len(batch))
        finally:
            self._finisher = None

    async def drain(self) -> None:
        """Wait until every queued end reached the limiter."""
        while self._finisher is not None:
            await asyncio.shield(self._finisher)
