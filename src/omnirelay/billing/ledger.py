"""Reserve before, settle after: budgets that hold under concurrency and across instances.

Every budget is a counter of money spent, kept in the limiter (in process, or Redis when instances share it) so
the hot path never waits on the database:

==============================  =====================================  ======================================
counter                         cap                                    seeded from
==============================  =====================================  ======================================
``acct:{id}:spent``             ``accounts.credits_micros``            ``accounts.debits_micros``
``key:{id}:spent``              ``api_keys.spent_cap_micros``          ``api_keys.spent_micros``
``acct:{id}:month:{YYYY-MM}``   ``accounts.monthly_budget_micros``     ``accounts.month_debits_micros``
==============================  =====================================  ======================================

Calls of a key that no budget applies to (unlimited account, no key cap, no monthly budget) are metered and
written to the ledger but reserve nothing. A call of a budgeted key reserves its worst-case cost on all of them
at once (one atomic ``reserve`` with a lease); when it ends
the actual cost is settled (``settle`` moves each counter by actual - reserved) and a ledger entry of -cost is
queued with its usage row. A call that fails before producing anything settles at 0, which releases the hold.
An instance that dies mid-call leaves holds whose leases expire; every instance runs ``release_expired`` on a
timer, so no reservation dangles. Counters are seeded once per counter lifetime (set only where missing): in
memory at process start, in Redis when the key is first seen or after Redis lost it.

Caps come from the in-memory snapshot of accounts and keys, which follows the database within a second of any
top-up or edit (the config-version poll), so a top-up takes effect without touching the counters.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import repeat

import structlog

from omnirelay.billing.cost import cost_of_tokens, worst_case_cost
from omnirelay.billing.money import micros_to_usd_str
from omnirelay.billing.prices import Price, PriceTable
from omnirelay.errors import ErrorCode, GatewayError
from omnirelay.formats.usage import Usage
from omnirelay.limits import Charge, Limiter
from omnirelay.store.snapshot import KeyRecord
from omnirelay.store.writer import month_key

log = structlog.get_logger(__name__)

MONTH_TTL_S = 40 * 24 * 3600
"""A monthly counter outlives its month a little, then disappears (the next month has its own name)."""
MAX_CACHED_KEYS = 65_536
"""Per-key caches start over past this many key ids, so keys deleted long ago do not pile up."""


def account_counter(account_id: int) -> str:
    return f"acct:{account_id}:spent"


def key_counter(key_id: int) -> str:
    return f"key:{key_id}:spent"


def month_counter(account_id: int, month: str) -> str:
    return f"acct:{account_id}:month:{month}"


@dataclass(slots=True)
class Hold:
    hold_id: str
    key: KeyRecord
    price: Price
    reserved: int
    counters: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Budgets:
    """The budget counters a charge of ``key`` moves, with their caps, for the calls of one month. Derived once
    per key record and month: records are immutable (an edit or a reload makes a new one)."""

    key: KeyRecord
    month: str | None
    """The month the monthly counter is named for; None when the account has no monthly budget."""
    counters: tuple[str, ...]
    caps: tuple[int | None, ...]
    ttls: tuple[float | None, ...]
    """Per counter, the ``cap`` and ``ttl_s`` of its ``Charge``."""

    @classmethod
    def of(cls, key: KeyRecord, month: str | None) -> Budgets:
        terms: list[tuple[str, int | None, float | None]] = [
            (account_counter(key.account_id), None if key.account_unlimited else key.account_credits_micros, None)
        ]
        if key.spend_cap_micros is not None:
            terms.append((key_counter(key.id), key.spend_cap_micros, None))
        if month is not None:
            terms.append((month_counter(key.account_id, month), key.account_monthly_budget_micros, MONTH_TTL_S))
        names, caps, ttls = zip(*terms, strict=True)
        return cls(key, month, names, caps, ttls)

    def charges(self, amount: int) -> list[Charge]:
        """The charges reserving ``amount`` on every counter."""
        return list(map(Charge, self.counters, repeat(amount), self.caps, self.ttls))


class Billing:
    def __init__(self, limiter: Limiter, prices: PriceTable, *, hold_lease_s: float = 900.0) -> None:
        self.limiter = limiter
        self.prices = prices
        self.hold_lease_s = hold_lease_s
        """Longest a reservation outlives a dead instance. A call that runs longer is still settled exactly (the
        limiter charges the full cost when its hold is gone); it just holds no budget past this point."""
        self._seeded: set[str] = set()
        self._budgets: dict[int, Budgets] = {}
        """Per key id, its ``Budgets`` for the latest record and month seen (replaced when either changes)."""

    def price_for(self, model: str, upstream_model: str | None = None) -> Price:
        """The public name's price first (an operator may price an alias), then the upstream model's."""
        price = self.prices.get(model)
        if price is None and upstream_model is not None:
            price = self.prices.get(upstream_model)
        if price is None:
            raise GatewayError(
                ErrorCode.not_priced,
                f"The model '{model}' has no price configured; the operator must price it or mark it free.",
                param="model",
            )
        return price

    def worst_case(self, price: Price, key: KeyRecord, prompt_tokens: int, max_output_tokens: int | None) -> int:
        return worst_case_cost(price, prompt_tokens, max_output_tokens, key.multiplier)

    def cost(self, price: Price, key: KeyRecord, usage: Usage) -> int:
        return cost_of_tokens(price, usage, key.multiplier)

    def budgets(self, key: KeyRecord) -> Budgets:
        """The budget counters of ``key``'s calls this month, with their caps."""
        month = None if key.account_monthly_budget_micros is None else month_key(datetime.now(UTC))
        budgets = self._budgets.get(key.id)
        if budgets is None or budgets.key is not key or budgets.month != month:
            if len(self._budgets) >= MAX_CACHED_KEYS:  # ids of deleted keys: start over rather than grow
                self._budgets.clear()
            budgets = self._budgets[key.id] = Budgets.of(key, month)
        return budgets

    async def seed(self, keys: Iterable[KeyRecord]) -> None:
        """Give each counter its database value where the limiter has none yet (once per counter per process)."""
        values: dict[str, int] = {}
        ttls: dict[str, float] = {}
        month = month_key(datetime.now(UTC))
        for key in keys:
            if not key.budgeted:
                continue
            values.setdefault(account_counter(key.account_id), key.account_debits_micros)
            values.setdefault(key_counter(key.id), key.spent_micros)
            monthly = month_counter(key.account_id, month)
            values.setdefault(monthly, key.account_month_debits_micros if key.account_month_key == month else 0)
            ttls[monthly] = MONTH_TTL_S
        fresh = {name: value for name, value in values.items() if name not in self._seeded}
        if fresh:
            await self.limiter.seed(fresh, ttl_s={n: t for n, t in ttls.items() if n in fresh})
            self._seeded.update(fresh)

    async def reserve(self, hold_id: str, key: KeyRecord, price: Price, amount: int) -> Hold:
        budgets = self.budgets(key)
        charges = budgets.charges(amount)
        refused = await self.limiter.reserve(hold_id, charges, lease_s=self.hold_lease_s)
        if refused is not None:
            raise self.refusal(charges[refused], key, amount)
        return Hold(hold_id, key, price, amount, budgets.counters)

    def refusal(self, charge: Charge, key: KeyRecord, amount: int) -> GatewayError:
        """The client's error when ``charge`` (of a reservation of ``amount``) did not fit its cap."""
        need = micros_to_usd_str(amount, trim=True)
        if charge.counter.startswith("key:"):
            message = f"This API key has reached its spend cap; this request may cost up to ${need}."
        elif ":month:" in charge.counter:
            message = f"The account's monthly budget is used up; this request may cost up to ${need}."
        else:
            message = (
                f"Insufficient balance: this request may cost up to ${need}. Top up the account or lower max_tokens."
            )
        return GatewayError(ErrorCode.insufficient_quota, message)

    async def settle(self, hold: Hold, cost: int) -> None:
        try:
            await self.limiter.settle(hold.hold_id, dict.fromkeys(hold.counters, cost))
        except Exception as exc:  # Redis away: the lease expires and the sweeper releases the hold
            log.error("settle_failed", hold=hold.hold_id, error=type(exc).__name__)

    def counters(self, key: KeyRecord) -> tuple[str, ...]:
        """The budget counters a charge of this key moves (none when no budget applies to it)."""
        if not key.budgeted:
            return ()
        return self.budgets(key).counters

    async def adjust(self, key: KeyRecord, delta: int) -> None:
        """Move every budget counter of ``key`` by ``delta`` with no cap check: a charge already written to the
        ledger (a task re-priced on success, or refunded), so the counters follow the database."""
        if not delta or not key.budgeted:
            return
        try:
            for counter in self.counters(key):
                await self.limiter.add(counter, delta, ttl_s=MONTH_TTL_S if ":month:" in counter else None)
        except Exception as exc:  # Redis away: the counters drift until reseeded; the ledger is right
            log.error("counter_adjust_failed", key=key.id, error=type(exc).__name__)

    async def release_expired(self) -> int:
        return await self.limiter.release_expired()

    async def available(self, key: KeyRecord) -> int | None:
        """The account's balance less what is reserved now; None for an unlimited account."""
        if key.account_unlimited:
            return None
        return key.account_credits_micros - await self.limiter.get(account_counter(key.account_id))
