"""Queries and writes behind the admin API, the self-service account routes and the CLI. Never on the relay path.

Every write that changes what the hot path caches (accounts, groups, keys, channels, prices) bumps the config
version in the same transaction, so every running instance reloads within a second. Times are UTC: filters are
converted to aware UTC datetimes before they are bound (SQLite stores them as naive UTC strings, PostgreSQL as
``timestamptz``), and every time filter is a plain range on ``created_at`` so the ``*_created`` indexes apply.
"""

from __future__ import annotations

import base64
import secrets
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, case, delete, func, literal_column, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from omnirelay.crypto import SecretBox, hash_key
from omnirelay.store.models import (
    Account,
    ApiKey,
    Channel,
    ChannelCheck,
    DisabledUpstreamKey,
    Group,
    LedgerEntry,
    PriceOverride,
    RedemptionCode,
    UsageLog,
)
from omnirelay.store.repo import bump_config_version, post_entry

Bucket = Literal["minute", "hour", "day"]
GroupBy = Literal["model", "key", "channel", "account"]


def utc(value: datetime) -> datetime:
    """An aware UTC datetime; a naive one is taken to be UTC already (that is how SQLite hands them back)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def current_month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


def month_spend(account: Account) -> int:
    return account.month_debits_micros if account.month_key == current_month() else 0


# --- accounts and groups --------------------------------------------------------------------------------------


async def account_named(session: AsyncSession, name: str) -> Account | None:
    return await session.scalar(select(Account).where(Account.name == name))


async def find_account(session: AsyncSession, ref: int | str) -> Account | None:
    """By id (an int, or a string of digits that names no account) or by name."""
    if isinstance(ref, str):
        by_name = await account_named(session, ref)
        if by_name is not None or not ref.isdigit():
            return by_name
        ref = int(ref)
    return await session.get(Account, ref)


async def list_accounts(session: AsyncSession, *, limit: int, after: int | None = None) -> list[Account]:
    query = select(Account).order_by(Account.id).limit(limit)
    if after is not None:
        query = query.where(Account.id > after)
    return list((await session.scalars(query)).all())


async def create_account(session: AsyncSession, name: str, **columns: Any) -> Account:
    account = Account(name=name, **columns)
    session.add(account)
    await session.flush()
    await bump_config_version(session)
    return account


async def update_row(
    session: AsyncSession, row: Account | ApiKey | Group | Channel, changes: Mapping[str, Any]
) -> None:
    """Set the given columns and tell every instance (accounts, keys, groups and channels are all cached)."""
    for column, value in changes.items():
        setattr(row, column, value)
    await session.flush()
    await bump_config_version(session)


async def key_counts(session: AsyncSession, account_ids: Sequence[int]) -> dict[int, int]:
    """Active (unrevoked) keys per account."""
    rows = await session.execute(
        select(ApiKey.account_id, func.count())
        .where(ApiKey.account_id.in_(account_ids), ApiKey.revoked_at.is_(None))
        .group_by(ApiKey.account_id)
    )
    return {account_id: count for account_id, count in rows}


async def ledger_page(
    session: AsyncSession, account_id: int, *, limit: int, before: int | None = None, kind: str | None = None
) -> list[LedgerEntry]:
    """Newest first; pass the last id seen as ``before`` for the next page."""
    query = select(LedgerEntry).where(LedgerEntry.account_id == account_id).order_by(LedgerEntry.id.desc())
    if before is not None:
        query = query.where(LedgerEntry.id < before)
    if kind is not None:
        query = query.where(LedgerEntry.kind == kind)
    return list((await session.scalars(query.limit(limit))).all())


async def entry_with_ref(session: AsyncSession, account_id: int, kind: str, ref: str) -> LedgerEntry | None:
    """The manual entry an idempotency key already produced, if any."""
    query = select(LedgerEntry).where(
        LedgerEntry.account_id == account_id, LedgerEntry.kind == kind, LedgerEntry.ref == ref
    )
    return await session.scalar(query.limit(1))


async def ledger_sum(session: AsyncSession, account_id: int) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount_micros), 0)).where(LedgerEntry.account_id == account_id)
    )
    return int(total or 0)


async def list_groups(session: AsyncSession) -> list[tuple[Group, int]]:
    counts = dict((await session.execute(select(Account.group_name, func.count()).group_by(Account.group_name))).all())
    groups = (await session.scalars(select(Group).order_by(Group.name))).all()
    return [(group, counts.get(group.name, 0)) for group in groups]


async def upsert_group(session: AsyncSession, name: str, multiplier: str) -> Group:
    group = await session.get(Group, name)
    if group is None:
        group = Group(name=name, multiplier=multiplier)
        session.add(group)
    else:
        group.multiplier = multiplier
    await session.flush()
    await bump_config_version(session)
    return group


async def group_in_use(session: AsyncSession, name: str) -> bool:
    return await session.scalar(select(Account.id).where(Account.group_name == name).limit(1)) is not None


async def delete_group(session: AsyncSession, group: Group) -> None:
    await session.delete(group)
    await session.flush()
    await bump_config_version(session)


# --- keys -----------------------------------------------------------------------------------------------------


async def list_keys(
    session: AsyncSession, *, limit: int, after: int | None = None, account_id: int | None = None
) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.id).limit(limit)
    if after is not None:
        query = query.where(ApiKey.id > after)
    if account_id is not None:
        query = query.where(ApiKey.account_id == account_id)
    return list((await session.scalars(query)).all())


# --- channels -------------------------------------------------------------------------------------------------


async def list_channels(session: AsyncSession) -> list[Channel]:
    return list((await session.scalars(select(Channel).order_by(Channel.id))).all())


async def channel_named(session: AsyncSession, name: str) -> Channel | None:
    return await session.scalar(select(Channel).where(Channel.name == name))


async def find_channel(session: AsyncSession, ref: int | str) -> Channel | None:
    """By id or by name (as :func:`find_account`)."""
    if isinstance(ref, str):
        by_name = await channel_named(session, ref)
        if by_name is not None or not ref.isdigit():
            return by_name
        ref = int(ref)
    return await session.get(Channel, ref)


async def create_channel(session: AsyncSession, box: SecretBox, api_keys: list[str], **columns: Any) -> Channel:
    channel = Channel(api_keys_encrypted=box.seal(api_keys), from_config=False, **columns)
    session.add(channel)
    await session.flush()
    await bump_config_version(session)
    return channel


async def set_channel_enabled(session: AsyncSession, channel: Channel, enabled: bool, reason: str | None) -> None:
    await update_row(session, channel, {"enabled": enabled, "disabled_reason": None if enabled else reason})


async def delete_channel(session: AsyncSession, channel: Channel) -> None:
    await session.delete(channel)
    await session.flush()
    await bump_config_version(session)


async def disabled_keys(session: AsyncSession, channel_ids: Sequence[int]) -> dict[int, dict[str, DisabledUpstreamKey]]:
    """The disabled upstream keys of these channels: channel id → key id → row."""
    found: dict[int, dict[str, DisabledUpstreamKey]] = defaultdict(dict)
    if channel_ids:
        rows = await session.scalars(select(DisabledUpstreamKey).where(DisabledUpstreamKey.channel_id.in_(channel_ids)))
        for row in rows:
            found[row.channel_id][row.key_id] = row
    return found


async def enable_upstream_key(session: AsyncSession, channel_id: int, key_id: str) -> bool:
    """Put a disabled key back into routing; False if it was not disabled."""
    result = await session.execute(
        delete(DisabledUpstreamKey).where(
            DisabledUpstreamKey.channel_id == channel_id, DisabledUpstreamKey.key_id == key_id
        )
    )
    await bump_config_version(session)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def recent_checks(session: AsyncSession, channel_id: int, limit: int) -> list[ChannelCheck]:
    query = (
        select(ChannelCheck)
        .where(ChannelCheck.channel_id == channel_id)
        .order_by(ChannelCheck.checked_at.desc(), ChannelCheck.id.desc())
        .limit(limit)
    )
    return list((await session.scalars(query)).all())


# --- prices ---------------------------------------------------------------------------------------------------


async def load_price_overrides(session: AsyncSession) -> dict[str, dict[str, object]]:
    """The admin's price overrides by model (each a whole ``prices.json``-shaped entry, USD as strings)."""
    rows = (await session.scalars(select(PriceOverride).order_by(PriceOverride.model))).all()
    return {row.model: dict(row.data) for row in rows}


async def put_price_override(session: AsyncSession, model: str, spec: Mapping[str, object]) -> None:
    row = await session.get(PriceOverride, model)
    if row is None:
        session.add(PriceOverride(model=model, data=dict(spec)))
    else:
        row.data = dict(spec)
    await session.flush()
    await bump_config_version(session)


async def delete_price_override(session: AsyncSession, model: str) -> bool:
    result = await session.execute(delete(PriceOverride).where(PriceOverride.model == model))
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    await bump_config_version(session)
    return True


# --- redemption codes -----------------------------------------------------------------------------------------

CODE_PREFIX = "ORC"


def new_redemption_code() -> str:
    """``ORC-XXXX-XXXX-XXXX-XXXX-XXXX-XXXX``: 120 random bits in base32, easy to read out and type."""
    body = base64.b32encode(secrets.token_bytes(15)).decode()
    return "-".join([CODE_PREFIX, *(body[i : i + 4] for i in range(0, len(body), 4))])


def normalize_code(code: str) -> str:
    return code.strip().upper()


async def create_redemption_codes(session: AsyncSession, *, count: int, amount_micros: int, batch: str) -> list[str]:
    """Create ``count`` codes; the codes themselves exist only in the return value (the table keeps hashes)."""
    codes = [new_redemption_code() for _ in range(count)]
    session.add_all(
        RedemptionCode(code_hash=hash_key(code), code_prefix=code[:8], batch=batch, amount_micros=amount_micros)
        for code in codes
    )
    await session.flush()
    return codes


async def list_redemption_codes(
    session: AsyncSession,
    *,
    limit: int,
    after: int | None = None,
    batch: str | None = None,
    redeemed: bool | None = None,
) -> list[RedemptionCode]:
    query = select(RedemptionCode).order_by(RedemptionCode.id).limit(limit)
    if after is not None:
        query = query.where(RedemptionCode.id > after)
    if batch is not None:
        query = query.where(RedemptionCode.batch == batch)
    if redeemed is not None:
        query = query.where(
            RedemptionCode.redeemed_at.is_not(None) if redeemed else RedemptionCode.redeemed_at.is_(None)
        )
    return list((await session.scalars(query)).all())


async def delete_unredeemed_code(session: AsyncSession, code_id: int) -> bool | None:
    """True when deleted, False when it was redeemed already (kept: the ledger refers to it), None when unknown."""
    row = await session.get(RedemptionCode, code_id)
    if row is None:
        return None
    if row.redeemed_at is not None:
        return False
    await session.delete(row)
    await session.flush()
    return True


class Redeemed(Enum):
    ok = "ok"
    unknown = "unknown"
    already = "already"


@dataclass(frozen=True, slots=True)
class Redemption:
    outcome: Redeemed
    amount_micros: int = 0


async def redeem_code(session: AsyncSession, code: str, account_id: int, key_id: int | None) -> Redemption:
    """Redeem once, atomically: the conditional UPDATE lets exactly one of any number of concurrent attempts win,
    and the credit is posted in the same transaction."""
    code_hash = hash_key(normalize_code(code))
    won = await session.execute(
        update(RedemptionCode)
        .where(RedemptionCode.code_hash == code_hash, RedemptionCode.redeemed_at.is_(None))
        .values(redeemed_at=datetime.now(UTC), redeemed_by=account_id)
        .returning(RedemptionCode.id, RedemptionCode.amount_micros)
    )
    row = won.first()
    if row is None:
        exists = await session.scalar(select(RedemptionCode.id).where(RedemptionCode.code_hash == code_hash))
        return Redemption(Redeemed.unknown if exists is None else Redeemed.already)
    code_id, amount = row
    await post_entry(
        session, account_id, amount, kind="redemption", reason="redemption code", ref=f"code:{code_id}", key_id=key_id
    )
    return Redemption(Redeemed.ok, amount)


# --- usage ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UsageFilter:
    start: datetime | None = None
    end: datetime | None = None
    """Exclusive."""
    key_id: int | None = None
    account_id: int | None = None
    model: str | None = None
    channel_id: int | None = None
    status: str | None = None
    """``ok`` (below 400), ``error`` (400 and above) or one HTTP status code."""

    def conditions(self) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        if self.start is not None:
            where.append(UsageLog.created_at >= utc(self.start))
        if self.end is not None:
            where.append(UsageLog.created_at < utc(self.end))
        return where + self.dimensions(UsageLog)

    def dimensions(self, table: Any) -> list[ColumnElement[bool]]:
        """The conditions other than time, on ``usage_logs`` or on a rollup table (the same column names)."""
        where: list[ColumnElement[bool]] = []
        for column, value in (
            (table.key_id, self.key_id),
            (table.account_id, self.account_id),
            (table.model, self.model),
            (table.channel_id, self.channel_id),
        ):
            if value is not None:
                where.append(column == value)
        if self.status == "ok":
            where.append(table.status_code < 400)
        elif self.status == "error":
            where.append(table.status_code >= 400)
        elif self.status is not None:
            where.append(table.status_code == int(self.status))
        return where


async def usage_page(
    session: AsyncSession, filters: UsageFilter, *, limit: int, cursor: int | None = None, newest_first: bool = True
) -> list[UsageLog]:
    """One page of usage rows; ``cursor`` is the last id of the previous page."""
    order = UsageLog.id.desc() if newest_first else UsageLog.id.asc()
    query = select(UsageLog).where(*filters.conditions()).order_by(order).limit(limit)
    if cursor is not None:
        query = query.where(UsageLog.id < cursor if newest_first else UsageLog.id > cursor)
    return list((await session.scalars(query)).all())


async def usage_cost(session: AsyncSession, filters: UsageFilter) -> int:
    total = await session.scalar(select(func.coalesce(func.sum(UsageLog.cost_micros), 0)).where(*filters.conditions()))
    return int(total or 0)


@dataclass(slots=True)
class AggregateRow:
    bucket_start: datetime
    group: str | None
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_micros: int = 0
    errors: int = 0
    p50_latency_ms: float | None = None
    p95_latency_ms: float | None = None


GROUP_COLUMNS = {
    "model": UsageLog.model,
    "key": UsageLog.key_id,
    "channel": UsageLog.channel_id,
    "account": UsageLog.account_id,
}


def bucket_expression(dialect: str, bucket: Bucket) -> ColumnElement[Any]:
    if dialect == "postgresql":
        # Literals, not bound parameters: PostgreSQL must see that GROUP BY repeats the selected expression.
        utc_time = func.timezone(literal_column("'UTC'"), UsageLog.created_at)
        return func.date_trunc(literal_column(f"'{bucket}'"), utc_time)
    pattern = {"minute": "%Y-%m-%d %H:%M:00", "hour": "%Y-%m-%d %H:00:00"}.get(bucket, "%Y-%m-%d 00:00:00")
    return func.strftime(pattern, UsageLog.created_at)


def _bucket_value(value: datetime | str) -> datetime:
    return utc(datetime.fromisoformat(value) if isinstance(value, str) else value)


def _group_value(value: object) -> str | None:
    return None if value is None else str(value)


def percentile(sorted_values: Sequence[float], fraction: float) -> float | None:
    """Linear interpolation between closest ranks: what PostgreSQL's ``percentile_cont`` computes."""
    if not sorted_values:
        return None
    position = fraction * (len(sorted_values) - 1)
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


async def usage_aggregate(
    session: AsyncSession, filters: UsageFilter, *, bucket: Bucket, by: GroupBy, percentiles: bool = True
) -> list[AggregateRow]:
    """Totals per time bucket and group, with latency percentiles: in SQL on PostgreSQL, in Python on SQLite (over
    the latencies of the same filtered rows, read in one more range query). ``percentiles=False`` leaves them
    None: the totals alone are much cheaper over a long window."""
    dialect = session.get_bind().dialect.name
    bucket_col = bucket_expression(dialect, bucket).label("bucket")
    group_col = GROUP_COLUMNS[by].label("grp")
    measures: list[Any] = [
        func.count().label("requests"),
        func.coalesce(func.sum(UsageLog.prompt_tokens), 0),
        func.coalesce(func.sum(UsageLog.completion_tokens), 0),
        func.coalesce(func.sum(UsageLog.cost_micros), 0),
        func.coalesce(func.sum(case((UsageLog.status_code >= 400, 1), else_=0)), 0),
    ]
    if dialect == "postgresql" and percentiles:
        measures += [
            func.percentile_cont(0.5).within_group(UsageLog.latency_ms),
            func.percentile_cont(0.95).within_group(UsageLog.latency_ms),
        ]
    query: Select[Any] = (
        select(bucket_col, group_col, *measures)
        .where(*filters.conditions())
        .group_by(bucket_col, group_col)
        .order_by(bucket_col, group_col)
    )
    rows: dict[tuple[datetime, str | None], AggregateRow] = {}
    for values in await session.execute(query):
        start, group = _bucket_value(values[0]), _group_value(values[1])
        row = AggregateRow(start, group, *(int(v) for v in values[2:7]))
        if dialect == "postgresql" and percentiles:
            row.p50_latency_ms, row.p95_latency_ms = (None if v is None else float(v) for v in values[7:9])
        rows[(start, group)] = row
    if dialect != "postgresql" and percentiles:
        await _fill_percentiles(session, filters, bucket_col, group_col, rows)
    return list(rows.values())


async def _fill_percentiles(
    session: AsyncSession,
    filters: UsageFilter,
    bucket_col: ColumnElement[Any],
    group_col: ColumnElement[Any],
    rows: Mapping[tuple[datetime, str | None], AggregateRow],
) -> None:
    latencies: dict[tuple[datetime, str | None], list[float]] = defaultdict(list)
    query = select(bucket_col, group_col, UsageLog.latency_ms).where(*filters.conditions())
    for bucket_value, group, latency in await session.execute(query):
        latencies[(_bucket_value(bucket_value), _group_value(group))].append(float(latency))
    for key, values in latencies.items():
        values.sort()
        row = rows[key]
        row.p50_latency_ms, row.p95_latency_ms = percentile(values, 0.5), percentile(values, 0.95)


async def names_for(session: AsyncSession, by: GroupBy, ids: Sequence[str]) -> dict[str, str]:
    """Display names of the keys, channels or accounts an aggregate groups by (models are their own name)."""
    table = {"key": ApiKey, "channel": Channel, "account": Account}.get(by)
    numeric = [int(i) for i in ids if i.isdigit()]
    if table is None or not numeric:
        return {}
    rows = await session.execute(select(table.id, table.name).where(table.id.in_(numeric)))  # type: ignore[attr-defined]
    return {str(row_id): name for row_id, name in rows}
