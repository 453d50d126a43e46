"""The in-memory copy of keys and channels that the hot path reads instead of the database.

A ``Snapshot`` is immutable; a reload builds a new one and swaps the reference, so a request in flight keeps a
consistent view and readers need no lock.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from omnirelay.crypto import SecretBox, upstream_key_id
from omnirelay.store.models import Account, ApiKey, Channel, DisabledUpstreamKey, Group

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: int
    name: str
    account_id: int
    account_name: str
    group: str
    multiplier: Fraction
    models: frozenset[str] | None
    allowed_ips: tuple[IpNetwork, ...] | None
    expires_at: float | None
    revoked: bool
    account_disabled: bool
    spend_cap_micros: int | None
    rpm: int | None
    tpm: int | None
    max_concurrency: int | None
    account_rpm: int | None
    account_tpm: int | None
    account_monthly_budget_micros: int | None
    account_unlimited: bool = False
    account_credits_micros: int = 0
    account_debits_micros: int = 0
    account_month_key: str | None = None
    account_month_debits_micros: int = 0
    spent_micros: int = 0
    budgeted: bool = field(init=False)
    """Does any budget apply to this key's calls (prepaid balance, key cap, monthly budget)? When none does, calls
    are metered but reserve nothing, which saves the limiter round trips. Set once: a call asks several times."""

    def __post_init__(self) -> None:
        budgeted = (
            not self.account_unlimited
            or self.spend_cap_micros is not None
            or self.account_monthly_budget_micros is not None
        )
        object.__setattr__(self, "budgeted", budgeted)  # frozen

    def allows_model(self, model: str) -> bool:
        return self.models is None or model in self.models

    def allows_ip(self, ip: str | None) -> bool:
        if self.allowed_ips is None:
            return True
        if ip is None:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self.allowed_ips)


@dataclass(frozen=True, slots=True)
class ChannelRecord:
    id: int
    name: str
    type: str
    base_url: str
    api_keys: tuple[str, ...]
    models: tuple[str, ...]
    model_map: dict[str, str]
    priority: int
    weight: int
    enabled: bool
    timeout_s: float = 600.0
    connect_timeout_s: float = 10.0
    headers: dict[str, str] = field(default_factory=dict)
    first_byte_timeout_s: float | None = None
    idle_timeout_s: float | None = None
    disabled_keys: int = 0
    """How many of its upstream keys are disabled (and left out of ``api_keys``). A channel whose every key is
    disabled has none to send, which is not the same as a channel that needs none."""

    def upstream_model(self, model: str) -> str:
        return self.model_map.get(model, model)

    def serves(self) -> set[str]:
        """Public model names: the listed models plus every alias in the map."""
        return set(self.models) | set(self.model_map)

    @property
    def first_byte_limit(self) -> float:
        """Seconds until the response headers and, for a stream, its first chunk (never above the total)."""
        limit = self.first_byte_timeout_s
        return self.timeout_s if limit is None or limit > self.timeout_s else limit

    @property
    def idle_limit(self) -> float:
        """Seconds a stream may stay silent between two chunks."""
        return self.idle_timeout_s or self.timeout_s

    @property
    def routable(self) -> bool:
        """Enabled, and with a key to send (or configured without any)."""
        return self.enabled and (bool(self.api_keys) or not self.disabled_keys)


@dataclass(frozen=True, slots=True)
class Snapshot:
    keys_by_hash: dict[str, KeyRecord]
    channels: tuple[ChannelRecord, ...]


def _timestamp(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


async def load_snapshot(session: AsyncSession, box: SecretBox) -> Snapshot:
    groups = {g.name: Fraction(Decimal(g.multiplier)) for g in (await session.scalars(select(Group))).all()}
    accounts = {a.id: a for a in (await session.scalars(select(Account))).all()}
    keys: dict[str, KeyRecord] = {}
    for row in (await session.scalars(select(ApiKey))).all():
        account = accounts[row.account_id]
        keys[row.key_hash] = KeyRecord(
            id=row.id,
            name=row.name,
            account_id=account.id,
            account_name=account.name,
            group=account.group_name,
            multiplier=groups.get(account.group_name, Fraction(1)),
            models=frozenset(row.models) if row.models is not None else None,
            allowed_ips=tuple(ipaddress.ip_network(n, strict=False) for n in row.allowed_ips)
            if row.allowed_ips is not None
            else None,
            expires_at=_timestamp(row.expires_at),
            revoked=row.revoked_at is not None or row.disabled,  # an owner-disabled key is refused alike
            account_disabled=account.disabled,
            spend_cap_micros=row.spend_cap_micros,
            rpm=row.rpm,
            tpm=row.tpm,
            max_concurrency=row.max_concurrency,
            account_rpm=account.rpm,
            account_tpm=account.tpm,
            account_monthly_budget_micros=account.monthly_budget_micros,
            account_unlimited=account.unlimited,
            account_credits_micros=account.credits_micros,
            account_debits_micros=account.debits_micros,
            account_month_key=account.month_key,
            account_month_debits_micros=account.month_debits_micros,
            spent_micros=row.spent_micros,
        )
    rows = await session.execute(select(DisabledUpstreamKey.channel_id, DisabledUpstreamKey.key_id))
    disabled = {(channel_id, key_id) for channel_id, key_id in rows}
    channels = tuple(
        _channel_record(row, box.open(row.api_keys_encrypted), disabled)
        for row in (await session.scalars(select(Channel).order_by(Channel.id))).all()
    )
    return Snapshot(keys_by_hash=keys, channels=channels)


def _optional_seconds(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _channel_record(row: Channel, keys: list[str], disabled: set[tuple[int, str]]) -> ChannelRecord:
    enabled_keys = tuple(k for k in keys if (row.id, upstream_key_id(k)) not in disabled)
    options = row.settings or {}
    return ChannelRecord(
        id=row.id,
        name=row.name,
        type=row.type,
        base_url=row.base_url.rstrip("/"),
        api_keys=enabled_keys,
        models=tuple(row.models or ()),
        model_map=dict(row.model_map or {}),
        priority=row.priority,
        weight=row.weight,
        enabled=row.enabled,
        timeout_s=_optional_seconds(options.get("timeout_s")) or 600.0,
        connect_timeout_s=_optional_seconds(options.get("connect_timeout_s")) or 10.0,
        headers=dict(options.get("headers") or {}),  # type: ignore[call-overload]
        first_byte_timeout_s=_optional_seconds(options.get("first_byte_timeout_s")),
        idle_timeout_s=_optional_seconds(options.get("idle_timeout_s")),
        disabled_keys=len(keys) - len(enabled_keys),
    )
