"""Writes and reads that go to the database: admin and CLI operations, start-up sync. Never on the relay path."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from omnirelay.billing.money import usd_to_micros
from omnirelay.config import ChannelConfig, KeyConfig
from omnirelay.crypto import SecretBox, display_prefix, hash_key, new_api_key
from omnirelay.store.models import (
    Account,
    ApiKey,
    Channel,
    ChannelCheck,
    ConfigVersion,
    DisabledUpstreamKey,
    Group,
    LedgerEntry,
)

DEFAULT_ACCOUNT = "default"


@dataclass(frozen=True, slots=True)
class NewKey:
    id: int
    name: str
    key: str
    """The only time the full key exists outside the client."""


async def bump_config_version(session: AsyncSession) -> None:
    """Tell every running instance (they poll this row) that keys, channels or prices changed."""
    result = await session.execute(
        update(ConfigVersion).where(ConfigVersion.id == 1).values(version=ConfigVersion.version + 1)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        session.add(ConfigVersion(id=1, version=1))
        await session.flush()


async def config_version(session: AsyncSession) -> int:
    return await session.scalar(select(ConfigVersion.version).where(ConfigVersion.id == 1)) or 0


async def ensure_group(session: AsyncSession, name: str, multiplier: str = "1") -> Group:
    group = await session.get(Group, name)
    if group is None:
        group = Group(name=name, multiplier=multiplier)
        session.add(group)
        await session.flush()
    return group


async def ensure_account(session: AsyncSession, name: str = DEFAULT_ACCOUNT, group: str = "default") -> Account:
    account = await session.scalar(select(Account).where(Account.name == name))
    if account is None:
        await ensure_group(session, group)
        account = Account(name=name, group_name=group, unlimited=name == DEFAULT_ACCOUNT)
        session.add(account)
        await session.flush()
    return account


async def create_key(
    session: AsyncSession,
    name: str,
    *,
    account: str = DEFAULT_ACCOUNT,
    models: list[str] | None = None,
    expires_at: datetime | None = None,
    key: str | None = None,
    spend_cap_micros: int | None = None,
    rpm: int | None = None,
    tpm: int | None = None,
    max_concurrency: int | None = None,
    allowed_ips: list[str] | None = None,
    label: str | None = None,
) -> NewKey:
    owner = await ensure_account(session, account)
    secret = key or new_api_key()
    row = ApiKey(
        account_id=owner.id,
        name=name,
        key_hash=hash_key(secret),
        key_prefix=display_prefix(secret),
        models=models,
        expires_at=expires_at,
        spend_cap_micros=spend_cap_micros,
        rpm=rpm,
        tpm=tpm,
        max_concurrency=max_concurrency,
        allowed_ips=allowed_ips,
        label=label,
    )
    session.add(row)
    await session.flush()
    await bump_config_version(session)
    return NewKey(id=row.id, name=name, key=secret)


async def revoke_key(session: AsyncSession, key_id: int) -> bool:
    result = await session.execute(
        update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)).values(revoked_at=datetime.now(UTC))
    )
    await bump_config_version(session)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def list_keys(session: AsyncSession) -> list[ApiKey]:
    return list((await session.scalars(select(ApiKey).order_by(ApiKey.id))).all())


async def sync_config_keys(session: AsyncSession, keys: list[KeyConfig]) -> None:
    """Bootstrap keys from the config file: created once, matched by hash afterwards."""
    for spec in keys:
        if await session.scalar(select(ApiKey.id).where(ApiKey.key_hash == hash_key(spec.key))) is not None:
            continue
        cap = None if spec.quota_usd is None else usd_to_micros(spec.quota_usd)
        await create_key(
            session, spec.name, account=spec.account, models=spec.models, key=spec.key, spend_cap_micros=cap
        )


async def sync_config_channels(session: AsyncSession, channels: list[ChannelConfig], box: SecretBox) -> None:
    """Channels named in the config file are owned by it: created or overwritten on every start, except that an
    operator's (or the gateway's) decision to disable an existing channel survives the restart."""
    for spec in channels:
        row = await session.scalar(select(Channel).where(Channel.name == spec.name))
        if row is None:
            row = Channel(name=spec.name, enabled=spec.enabled)
            session.add(row)
        elif not spec.enabled:
            row.enabled = False
        row.type = spec.type
        row.base_url = spec.base_url
        row.api_keys_encrypted = box.seal(spec.api_keys)
        row.models = spec.models
        row.model_map = spec.model_map
        row.priority = spec.priority
        row.weight = spec.weight
        row.from_config = True
        row.settings = {
            "timeout_s": spec.timeout_s,
            "connect_timeout_s": spec.connect_timeout_s,
            "first_byte_timeout_s": spec.first_byte_timeout_s,
            "idle_timeout_s": spec.idle_timeout_s,
            "headers": spec.headers,
        }
    await session.flush()
    await bump_config_version(session)


async def disable_upstream_key(
    session: AsyncSession, channel_id: int, key_id: str, reason: str, error_code: str | None
) -> bool:
    """Take one upstream key of a channel out of routing (every instance, within a second). False if it was
    disabled already (another instance got there first) or the channel is gone."""
    exists = await session.scalar(
        select(DisabledUpstreamKey.id).where(
            DisabledUpstreamKey.channel_id == channel_id, DisabledUpstreamKey.key_id == key_id
        )
    )
    if exists is not None or await session.get(Channel, channel_id) is None:
        return False
    session.add(DisabledUpstreamKey(channel_id=channel_id, key_id=key_id, reason=reason, error_code=error_code))
    await session.flush()
    await bump_config_version(session)
    return True


async def disable_channel(session: AsyncSession, channel_id: int, reason: str) -> bool:
    """Take a whole channel out of routing (one that has no keys of its own failed permanently)."""
    result = await session.execute(
        update(Channel)
        .where(Channel.id == channel_id, Channel.enabled.is_(True))
        .values(enabled=False, disabled_reason=reason)
    )
    await bump_config_version(session)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def record_channel_checks(session: AsyncSession, checks: list[dict[str, object]]) -> None:
    """Health check results (``ChannelCheck`` columns); history for the admin API, no config change."""
    if checks:
        await session.execute(insert(ChannelCheck), checks)


MANUAL_KINDS = frozenset({"topup", "adjustment", "redemption", "refund"})
"""Entries people make. Settlements are written only by the batch writer, with the usage rows they price."""


async def post_entry(
    session: AsyncSession,
    account_id: int,
    amount_micros: int,
    *,
    kind: str,
    reason: str | None = None,
    ref: str | None = None,
    key_id: int | None = None,
) -> LedgerEntry:
    """Append a manual ledger entry and move ``credits_micros`` by its (signed) amount in the same transaction.

    ``credits_micros`` sums every manual entry, ``debits_micros`` every settlement, so the balance
    (credits - debits) always equals the sum of the ledger. Credits are the cap every instance reserves against
    once its snapshot reloads (the config version is bumped here); a negative adjustment simply lowers it.
    """
    if kind not in MANUAL_KINDS:
        raise ValueError(f"unknown ledger entry kind '{kind}'")
    if amount_micros == 0:
        raise ValueError("a ledger entry moves money: amount must not be zero")
    entry = LedgerEntry(
        account_id=account_id, kind=kind, amount_micros=amount_micros, reason=reason, ref=ref, key_id=key_id
    )
    session.add(entry)
    result = await session.execute(
        update(Account).where(Account.id == account_id).values(credits_micros=Account.credits_micros + amount_micros)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise LookupError(f"no account with id {account_id}")
    await session.flush()
    await bump_config_version(session)
    return entry
