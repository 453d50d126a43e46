"""Tables. Money columns are integer micro-USD (``*_micros``); times are UTC."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class Group(Base):
    __tablename__ = "groups"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    multiplier: Mapped[str] = mapped_column(String(32), default="1")
    """A decimal string: prices in this group are multiplied by it (``vip`` 0.8)."""


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    group_name: Mapped[str] = mapped_column(String(64), default="default")
    rpm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tpm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    monthly_budget_micros: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    unlimited: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    """Postpaid: no balance check (key caps and budgets still hold). The bootstrap account of an internal gateway."""
    credits_micros: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """Sum of the account's manual ledger entries (top-ups, redemptions, refunds, adjustments of either sign)."""
    debits_micros: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """Sum of its settlements, as a positive number. balance = credits - debits = the sum of the ledger; both
    are cached here, in the same transaction as the entries, so an instance can seed its counters without
    summing the ledger."""
    month_key: Mapped[str | None] = mapped_column(String(7), nullable=True)
    month_debits_micros: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    """sha256 hex of the full key; the key itself is shown once and never stored."""
    key_prefix: Mapped[str] = mapped_column(String(16))
    label: Mapped[str | None] = mapped_column(String(128), nullable=True)
    models: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    allowed_ips: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    spend_cap_micros: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    spent_micros: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    rpm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tpm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_concurrency: Mapped[int | None] = mapped_column(Integer, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    """Switched off by its owner (System API): refused like a revoked key, but may be switched on again."""
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    """Deleted by its owner: revoked too, and left out of the owner's lists (usage rows still name it)."""


class Channel(Base):
    __tablename__ = "channels"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    type: Mapped[str] = mapped_column(String(32))
    base_url: Mapped[str] = mapped_column(Text)
    api_keys_encrypted: Mapped[str] = mapped_column(Text, default="")
    """Upstream keys, a JSON list encrypted with the master key (Fernet)."""
    models: Mapped[list[str]] = mapped_column(JSON, default=list)
    model_map: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    weight: Mapped[int] = mapped_column(Integer, default=1)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    settings: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    """Timeouts, extra headers and other per-channel options."""
    from_config: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class DisabledUpstreamKey(Base):
    """An upstream key of a channel taken out of routing, by the gateway (a permanent error) or by an admin.

    Keys are named by ``crypto.upstream_key_id`` (a hash prefix), never stored in clear here. Deleting the row puts
    the key back into routing.
    """

    __tablename__ = "disabled_upstream_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    key_id: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The gateway code that disabled it (``upstream_auth``, ``upstream_quota``); None when an admin did."""
    disabled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (UniqueConstraint("channel_id", "key_id", name="uq_disabled_upstream_key"),)


class ChannelCheck(Base):
    """One health check: a minimal request to one model of a channel, its result and latency."""

    __tablename__ = "channel_checks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    ok: Mapped[bool] = mapped_column(Boolean)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    latency_ms: Mapped[int] = mapped_column(Integer)
    checked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_channel_checks_channel_checked", "channel_id", "checked_at"),)


class PriceOverride(Base):
    __tablename__ = "price_overrides"

    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    data: Mapped[dict[str, object]] = mapped_column(JSON)
    """Same shape as the config file's ``prices:`` entries (USD as strings)."""


class LedgerEntry(Base):
    """Append-only. A balance is the sum of an account's entries."""

    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    kind: Mapped[str] = mapped_column(String(16))
    """topup | settlement | refund | adjustment | redemption"""
    amount_micros: Mapped[int] = mapped_column(BigInteger)
    """Signed: credits are positive, charges negative."""
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    ref: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The request id or task id this entry belongs to."""
    key_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_ledger_account_created", "account_id", "created_at"), Index("ix_ledger_ref", "ref"))


class UsageLog(Base):
    __tablename__ = "usage_logs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    key_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    account_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    endpoint: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(128))
    upstream_model: Mapped[str | None] = mapped_column(String(128), nullable=True)
    channel_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    status_code: Mapped[int] = mapped_column(Integer)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0)
    reasoning_tokens: Mapped[int] = mapped_column(Integer, default=0)
    usage_estimated: Mapped[bool] = mapped_column(Boolean, default=False)
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    ttft_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    overhead_ms: Mapped[float] = mapped_column(Integer, default=0)
    client_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (
        Index("ix_usage_created", "created_at"),
        Index("ix_usage_key_created", "key_id", "created_at"),
        Index("ix_usage_account_created", "account_id", "created_at"),
    )


class ConfigVersion(Base):
    """One row whose counter every write to keys, accounts, channels or prices bumps.

    Each instance polls it about once a second (a primary-key read, off the hot path) and reloads its in-memory
    snapshot when it moved, so a change made by the CLI, the admin API or another instance is seen everywhere
    within a second, with or without Redis.
    """

    __tablename__ = "config_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)


class RedemptionCode(Base):
    """A top-up voucher: created in batches by the admin, redeemed once. Only the hash of the code is kept."""

    __tablename__ = "redemption_codes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    code_prefix: Mapped[str] = mapped_column(String(16))
    batch: Mapped[str] = mapped_column(String(64), index=True)
    amount_micros: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    redeemed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    redeemed_by: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    """The account that redeemed it."""


class Task(Base):
    """One asynchronous generation (Midjourney, Suno, video, ...): see ``omnirelay.tasks``.

    ``public_id`` is the only id clients see. ``upstream_id`` and ``raw`` are the vendor's and stay private.
    Money: ``cost_micros`` is what the account is charged for the task right now (the ledger holds the same sum
    under ``ref = public_id``); ``billing`` says where the charge stands (``charged`` → ``settled`` on success,
    ``refunded`` on failure), and moves only with a compare-and-set on ``status``.
    """

    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    public_id: Mapped[str] = mapped_column(String(64), unique=True)
    vendor: Mapped[str] = mapped_column(String(32))
    """The family speaking upstream (the channel's), which polls it."""
    surface: Mapped[str] = mapped_column(String(32))
    """The family whose route submitted it (``unified`` for ``/task/submit``): its shape is the webhook body's."""
    action: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(128))
    upstream_model: Mapped[str | None] = mapped_column(String(128), nullable=True)
    account_id: Mapped[int] = mapped_column(BigInteger)
    key_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    channel_id: Mapped[int] = mapped_column(BigInteger)
    upstream_key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    """``crypto.upstream_key_id`` of the channel key that submitted it: polls use the same key."""
    upstream_id: Mapped[str] = mapped_column(String(255))
    parent_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    progress: Mapped[int] = mapped_column(Integer, default=0)
    prompt: Mapped[str] = mapped_column(Text, default="")
    request: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    results: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    raw: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    """The vendor's last answer about the task: private, never sent to a client."""
    price_option: Mapped[str | None] = mapped_column(String(64), nullable=True)
    quantity: Mapped[str] = mapped_column(String(32), default="1")
    """Units charged (a decimal or fraction string: seconds may be fractional)."""
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    billing: Mapped[str] = mapped_column(String(16), default="charged")
    notify_hook: Mapped[str | None] = mapped_column(Text, nullable=True)
    hook_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """None (no hook) | pending | delivered | failed."""
    hook_attempts: Mapped[int] = mapped_column(Integer, default=0)
    polls: Mapped[int] = mapped_column(Integer, default=0)
    next_poll_at: Mapped[float] = mapped_column(Float)
    """Epoch seconds of the next poll (or webhook attempt)."""
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    submitted_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    updated_at: Mapped[float] = mapped_column(Float)

    __table_args__ = (
        Index("ix_tasks_due", "status", "next_poll_at"),
        Index("ix_tasks_hook_due", "hook_state", "next_poll_at"),
        Index("ix_tasks_account", "account_id", "submitted_at"),
    )


class AdminSession(Base):
    """A signed-in console session (``api/admin_auth.py``). Only the hash of the cookie's token is kept; the CSRF
    token is not a credential on its own (it must come with the cookie), so the console can fetch it again."""

    __tablename__ = "admin_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(128))
    """Who signed in: ``token`` for the admin token, else the admin user's name."""
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float, index=True)
