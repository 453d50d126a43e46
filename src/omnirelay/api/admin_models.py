"""Bodies and answers of the admin API (``api/admin.py``), as pydantic models.

Inputs forbid unknown fields and carry their constraints in ``Field``/validators, so a bad value is a 422 that
names the field. USD inputs are ``Decimal`` (a JSON number or a decimal string, at most 6 decimals: exact micros).
In a ``*Patch`` body a field left out is unchanged and ``null`` clears the limits that may be absent.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Generic, Self, TypeVar
from urllib.parse import urlparse

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from omnirelay.api.account import epoch_iso, iso, usd
from omnirelay.crypto import mask_secret, upstream_key_id
from omnirelay.providers.kinds import CHANNEL_KINDS
from omnirelay.routing.health import CheckResult
from omnirelay.store.admin_repo import AggregateRow, current_month, month_spend, utc
from omnirelay.store.models import (
    Account,
    ApiKey,
    Channel,
    ChannelCheck,
    DisabledUpstreamKey,
    LedgerEntry,
    RedemptionCode,
    Task,
    UsageLog,
)

T = TypeVar("T")


def micros(prefix: str, amount: int | None) -> dict[str, Any]:
    """``{prefix}_usd`` (a decimal string) and ``{prefix}_micros`` (the exact integer) of one amount."""
    return {f"{prefix}_usd": usd(amount), f"{prefix}_micros": amount}


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise ValueError(f"not an IP address or CIDR network: {value!r}") from None


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _not_zero(value: Decimal) -> Decimal:
    if value == 0:
        raise ValueError("an adjustment moves money: it must not be zero")
    return value


def _seconds(value: object, default: float) -> float:
    return float(value) if isinstance(value, int | float) else default


def _optional_seconds(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _channel_type(value: str) -> str:
    from omnirelay.providers.task_vendors import by_channel_type  # task vendor families are channel types too

    if value not in CHANNEL_KINDS and value not in by_channel_type():
        raise ValueError(f"unknown channel type {value!r}; known: {', '.join(sorted(CHANNEL_KINDS))}")
    return value


def _http_url(value: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError("must be an http:// or https:// URL")
    return value


PositiveUsd = Annotated[Decimal, Field(gt=0, decimal_places=6, examples=["10.00"])]
NonNegativeUsd = Annotated[Decimal, Field(ge=0, decimal_places=6)]
SignedUsd = Annotated[Decimal, Field(decimal_places=6, examples=["-2.50"]), AfterValidator(_not_zero)]
Name = Annotated[str, Field(min_length=1, max_length=128)]
GroupName = Annotated[str, Field(min_length=1, max_length=64)]
Reason = Annotated[str, Field(max_length=500)]
Count = Annotated[int, Field(ge=0)]
Concurrency = Annotated[int, Field(ge=1)]
Cidr = Annotated[str, AfterValidator(_cidr)]
Expiry = Annotated[datetime, AfterValidator(_aware)]
ChannelType = Annotated[str, AfterValidator(_channel_type)]
BaseUrl = Annotated[str, AfterValidator(_http_url)]
UpstreamKey = Annotated[str, Field(min_length=1)]
Seconds = Annotated[float, Field(gt=0)]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _reject_null(value: object) -> object:
    if value is None:
        raise ValueError("may not be null (leave the field out to keep it)")
    return value


# --- inputs ---------------------------------------------------------------------------------------------------


class AccountIn(Input):
    name: Name
    group: GroupName = "default"
    unlimited: bool = Field(False, description="Postpaid: no balance check (key caps and budgets still hold).")
    rpm: Count | None = None
    tpm: Count | None = None
    monthly_budget_usd: NonNegativeUsd | None = None


class AccountPatch(Input):
    name: Name | None = None
    group: GroupName | None = None
    unlimited: bool | None = None
    rpm: Count | None = None
    tpm: Count | None = None
    monthly_budget_usd: NonNegativeUsd | None = None

    @field_validator("name", "group", "unlimited")
    @classmethod
    def not_null(cls, value: object) -> object:
        return _reject_null(value)


IdempotencyRef = Annotated[
    str | None,
    Field(
        None,
        min_length=1,
        max_length=64,
        description="Idempotency key: a retry with the same ref returns the first entry instead of posting twice.",
    ),
]


class TopupIn(Input):
    amount_usd: PositiveUsd
    reason: Reason | None = None
    ref: IdempotencyRef = None


class AdjustmentIn(Input):
    amount_usd: SignedUsd = Field(description="Signed: positive credits the account, negative debits it.")
    reason: Annotated[str, Field(min_length=1, max_length=500)]
    ref: IdempotencyRef = None


class GroupIn(Input):
    multiplier: Annotated[Decimal, Field(gt=0, decimal_places=6, examples=["0.8"])]


class KeyIn(Input):
    account: int | str = Field(description="The owning account's id or name.")
    name: Name
    models: list[Name] | None = Field(None, description="Allowed models; null allows every model.")
    allowed_ips: list[Cidr] | None = Field(None, description="IP addresses or CIDR networks; null allows any.")
    expires_at: Expiry | None = None
    spend_cap_usd: NonNegativeUsd | None = None
    rpm: Count | None = None
    tpm: Count | None = None
    max_concurrency: Concurrency | None = None
    label: Reason | None = None

    @field_validator("expires_at")
    @classmethod
    def in_future(cls, value: datetime | None) -> datetime | None:
        if value is not None and value <= datetime.now(UTC):
            raise ValueError("must be in the future")
        return value


class KeyPatch(Input):
    name: Name | None = None
    models: list[Name] | None = None
    allowed_ips: list[Cidr] | None = None
    expires_at: Expiry | None = None
    spend_cap_usd: NonNegativeUsd | None = None
    rpm: Count | None = None
    tpm: Count | None = None
    max_concurrency: Concurrency | None = None
    label: Reason | None = None

    @field_validator("name")
    @classmethod
    def not_null(cls, value: object) -> object:
        return _reject_null(value)


class ChannelIn(Input):
    name: Name
    type: ChannelType = "openai"
    base_url: BaseUrl
    api_keys: list[UpstreamKey] = Field(default_factory=list, description="Stored encrypted; never returned.")
    models: list[Name] = Field(default_factory=list)
    model_map: dict[str, str] = Field(default_factory=dict, description="Public name -> upstream name.")
    priority: int = Field(0, description="Lower tiers are tried first.")
    weight: Count = 1
    enabled: bool = True
    timeout_s: Seconds = Field(600.0, description="Total, from sending the request to the answer's last byte.")
    connect_timeout_s: Seconds = 10.0
    first_byte_timeout_s: Seconds | None = Field(
        None, description="Until the headers and a stream's first chunk; then the next channel is tried."
    )
    idle_timeout_s: Seconds | None = Field(None, description="Longest silence between two chunks of a stream.")
    headers: dict[str, str] = Field(default_factory=dict)


class ChannelPatch(Input):
    name: Name | None = None
    type: ChannelType | None = None
    base_url: BaseUrl | None = None
    api_keys: list[UpstreamKey] | None = Field(None, description="Replaces every key of the channel.")
    models: list[Name] | None = None
    model_map: dict[str, str] | None = None
    priority: int | None = None
    weight: Count | None = None
    timeout_s: Seconds | None = None
    connect_timeout_s: Seconds | None = None
    first_byte_timeout_s: Seconds | None = Field(None, description="null: back to timeout_s.")
    idle_timeout_s: Seconds | None = Field(None, description="null: back to timeout_s.")
    headers: dict[str, str] | None = None

    @field_validator("*")
    @classmethod
    def not_null(cls, value: object, info: ValidationInfo) -> object:
        return value if info.field_name in NULLABLE_CHANNEL_FIELDS else _reject_null(value)


NULLABLE_CHANNEL_FIELDS = frozenset({"first_byte_timeout_s", "idle_timeout_s"})


class DisableIn(Input):
    reason: Reason | None = None


class RedemptionIn(Input):
    count: int = Field(ge=1, le=1000)
    amount_usd: PositiveUsd
    batch: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")


# --- outputs --------------------------------------------------------------------------------------------------


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: int | None = Field(description="Pass as ?cursor= for the next page; null on the last one.")


class AccountOut(BaseModel):
    id: int
    name: str
    group: str
    unlimited: bool
    disabled: bool
    rpm: int | None
    tpm: int | None
    monthly_budget_usd: str | None
    monthly_budget_micros: int | None
    credits_usd: str
    credits_micros: int = Field(description="Sum of top-ups, redemptions, refunds and adjustments.")
    debits_usd: str
    debits_micros: int = Field(description="Sum of settled usage.")
    balance_usd: str
    balance_micros: int = Field(description="credits - debits: the sum of the ledger.")
    available_usd: str | None
    available_micros: int | None = Field(description="Balance less live reservations; null when unlimited.")
    month: str
    month_spend_usd: str
    month_spend_micros: int
    active_keys: int
    created_at: str | None

    @classmethod
    def from_row(cls, row: Account, *, active_keys: int, available: int | None) -> AccountOut:
        return cls(
            id=row.id,
            name=row.name,
            group=row.group_name,
            unlimited=row.unlimited,
            disabled=row.disabled,
            rpm=row.rpm,
            tpm=row.tpm,
            **micros("monthly_budget", row.monthly_budget_micros),
            **micros("credits", row.credits_micros),
            **micros("debits", row.debits_micros),
            **micros("balance", row.credits_micros - row.debits_micros),
            **micros("available", available),
            month=current_month(),
            **micros("month_spend", month_spend(row)),
            active_keys=active_keys,
            created_at=iso(row.created_at),
        )


class LedgerOut(BaseModel):
    """A ledger entry as its own account sees it (the System API); the admin view adds the account."""

    id: int
    kind: str
    amount_usd: str
    amount_micros: int
    reason: str | None
    ref: str | None
    key_id: int | None
    created_at: str | None

    @classmethod
    def from_row(cls, row: LedgerEntry) -> Self:
        # account_id is a field of the admin view only; the account's own view ignores it.
        return cls(
            id=row.id,
            account_id=row.account_id,
            kind=row.kind,
            **micros("amount", row.amount_micros),
            reason=row.reason,
            ref=row.ref,
            key_id=row.key_id,
            created_at=iso(row.created_at),
        )


class LedgerEntryOut(LedgerOut):
    account_id: int


class OwnTaskOut(BaseModel):
    """An async task as its own account sees it (the System API), the whole prompt included; the admin view
    (:class:`TaskOut`) adds the account and the channel and cuts the prompt, to keep a page of tasks small."""

    prompt_limit: ClassVar[int | None] = None
    """Characters of the prompt shown; None: all of it."""

    id: str = Field(description="The task's public id.")
    vendor: str
    action: str
    model: str
    key_id: int | None
    status: str
    progress: int
    prompt: str
    results: dict[str, Any] = Field(description="Unified results: images, videos, audio (each with url), text.")
    error: str | None
    cost_usd: str
    cost_micros: int
    billing: str = Field(description="charged, settled or refunded")
    submitted_at: str | None
    finished_at: str | None

    @classmethod
    def from_row(cls, row: Task) -> Self:
        # account_id and channel_id are fields of the admin view only; the account's own view ignores them.
        return cls(
            id=row.public_id,
            vendor=row.vendor,
            action=row.action,
            model=row.model,
            account_id=row.account_id,
            key_id=row.key_id,
            channel_id=row.channel_id,
            status=row.status,
            progress=row.progress,
            prompt=row.prompt[: cls.prompt_limit],
            results=dict(row.results or {}),
            error=row.error,
            **micros("cost", row.cost_micros),
            billing=row.billing,
            submitted_at=epoch_iso(row.submitted_at),
            finished_at=epoch_iso(row.finished_at),
        )


class TaskOut(OwnTaskOut):
    """An async task in the admin console: whose it is, which channel ran it, the prompt's first 500 characters."""

    prompt_limit: ClassVar[int | None] = 500

    account_id: int
    channel_id: int


class MoneyMovedOut(BaseModel):
    entry: LedgerEntryOut
    account: AccountOut


class GroupOut(BaseModel):
    name: str
    multiplier: str
    accounts: int


def key_status(row: ApiKey) -> str:
    """active, disabled (switched off by its owner through the System API), expired or revoked."""
    if row.revoked_at is not None:
        return "revoked"
    if row.disabled:
        return "disabled"
    if row.expires_at is not None and utc(row.expires_at) <= datetime.now(UTC):
        return "expired"
    return "active"


class KeyOut(BaseModel):
    id: int
    name: str
    prefix: str
    account_id: int
    label: str | None
    models: list[str] | None
    allowed_ips: list[str] | None
    expires_at: str | None
    spend_cap_usd: str | None
    spend_cap_micros: int | None
    spent_usd: str
    spent_micros: int
    rpm: int | None
    tpm: int | None
    max_concurrency: int | None
    status: str = Field(description="active, disabled (by its owner), expired or revoked")
    revoked_at: str | None
    created_at: str | None

    @classmethod
    def from_row(cls, row: ApiKey) -> KeyOut:
        status = key_status(row)
        return cls(
            id=row.id,
            name=row.name,
            prefix=row.key_prefix,
            account_id=row.account_id,
            label=row.label,
            models=row.models,
            allowed_ips=row.allowed_ips,
            expires_at=iso(row.expires_at),
            **micros("spend_cap", row.spend_cap_micros),
            **micros("spent", row.spent_micros),
            rpm=row.rpm,
            tpm=row.tpm,
            max_concurrency=row.max_concurrency,
            status=status,
            revoked_at=iso(row.revoked_at),
            created_at=iso(row.created_at),
        )


class NewKeyOut(KeyOut):
    key: str = Field(description="The full key: shown this once, stored only as a hash.")


class ChannelKeyOut(BaseModel):
    id: str = Field(description="A hash prefix naming the key in these routes; the key itself is never shown.")
    masked: str
    enabled: bool
    disabled_reason: str | None
    disabled_code: str | None = Field(description="The error that disabled it; null when an admin did.")
    disabled_at: str | None


class ChannelOut(BaseModel):
    id: int
    name: str
    type: str
    base_url: str
    models: list[str]
    model_map: dict[str, str]
    priority: int
    weight: int
    enabled: bool
    disabled_reason: str | None
    from_config: bool
    timeout_s: float
    connect_timeout_s: float
    first_byte_timeout_s: float | None
    idle_timeout_s: float | None
    header_names: list[str] = Field(description="Extra upstream headers (values hidden).")
    key_count: int | None = Field(description="null when the keys cannot be decrypted (master key changed).")
    keys_masked: list[str] | None
    keys: list[ChannelKeyOut] | None = Field(description="Each upstream key's state, in the channel's order.")
    active_key_count: int | None = Field(description="Keys routing may use; a channel with 0 of >0 serves nothing.")
    breaker: str = Field(description="This instance's breaker: closed, open, half_open, cooling or disabled.")
    created_at: str | None

    @classmethod
    def from_row(
        cls,
        row: Channel,
        keys: list[str] | None,
        disabled: dict[str, DisabledUpstreamKey] | None = None,
        breaker: str = "closed",
    ) -> ChannelOut:
        """``keys``: the decrypted upstream keys, only counted and masked here (None: undecryptable);
        ``disabled``: the channel's disabled keys by key id."""
        options = row.settings or {}
        headers = options.get("headers")
        states = None if keys is None else [_key_out(k, (disabled or {}).get(upstream_key_id(k))) for k in keys]
        return cls(
            id=row.id,
            name=row.name,
            type=row.type,
            base_url=row.base_url,
            models=list(row.models or []),
            model_map=dict(row.model_map or {}),
            priority=row.priority,
            weight=row.weight,
            enabled=row.enabled,
            disabled_reason=row.disabled_reason,
            from_config=row.from_config,
            timeout_s=_seconds(options.get("timeout_s"), 600.0),
            connect_timeout_s=_seconds(options.get("connect_timeout_s"), 10.0),
            first_byte_timeout_s=_optional_seconds(options.get("first_byte_timeout_s")),
            idle_timeout_s=_optional_seconds(options.get("idle_timeout_s")),
            header_names=sorted(headers) if isinstance(headers, dict) else [],
            key_count=None if keys is None else len(keys),
            keys_masked=None if keys is None else [mask_secret(k) for k in keys],
            keys=states,
            active_key_count=None if states is None else sum(1 for k in states if k.enabled),
            breaker=breaker,
            created_at=iso(row.created_at),
        )


def _key_out(key: str, disabled: DisabledUpstreamKey | None) -> ChannelKeyOut:
    return ChannelKeyOut(
        id=upstream_key_id(key),
        masked=mask_secret(key),
        enabled=disabled is None,
        disabled_reason=disabled.reason if disabled is not None else None,
        disabled_code=disabled.error_code if disabled is not None else None,
        disabled_at=iso(disabled.disabled_at) if disabled is not None else None,
    )


class ChannelCheckOut(BaseModel):
    channel_id: int
    model: str
    key_id: str | None
    ok: bool
    status_code: int | None = Field(description="The upstream's HTTP status; null when it never answered.")
    error_code: str | None
    message: str | None
    latency_ms: int
    checked_at: str | None

    @classmethod
    def from_row(cls, row: ChannelCheck | CheckResult) -> ChannelCheckOut:
        return cls(
            channel_id=row.channel_id,
            model=row.model,
            key_id=row.key_id,
            ok=row.ok,
            status_code=row.status_code,
            error_code=row.error_code,
            message=row.message,
            latency_ms=row.latency_ms,
            checked_at=iso(row.checked_at),
        )


class PriceOut(BaseModel):
    model: str
    resolved: str | None = Field(None, description="The table entry the name resolves to.")
    source: str = Field(description="shipped, config or override")
    price: dict[str, Any] = Field(description="USD as decimal strings, per million tokens for token rates.")


class PricesOut(BaseModel):
    data: list[PriceOut]
    aliases: dict[str, str]


class RedemptionBatchOut(BaseModel):
    batch: str
    count: int
    amount_usd: str
    amount_micros: int
    codes: list[str] = Field(description="Shown only in this answer: the table keeps hashes.")


class RedemptionCodeOut(BaseModel):
    id: int
    prefix: str
    batch: str
    amount_usd: str
    amount_micros: int
    created_at: str | None
    redeemed_at: str | None
    redeemed_by: int | None = Field(description="The account that redeemed it.")

    @classmethod
    def from_row(cls, row: RedemptionCode) -> RedemptionCodeOut:
        return cls(
            id=row.id,
            prefix=row.code_prefix,
            batch=row.batch,
            **micros("amount", row.amount_micros),
            created_at=iso(row.created_at),
            redeemed_at=iso(row.redeemed_at),
            redeemed_by=row.redeemed_by,
        )


class UsageRowOut(BaseModel):
    id: int
    request_id: str
    created_at: str | None
    key_id: int | None
    account_id: int | None
    endpoint: str
    model: str
    upstream_model: str | None
    channel_id: int | None
    stream: bool
    status_code: int
    error_code: str | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    usage_estimated: bool
    cost_usd: str
    cost_micros: int
    latency_ms: int
    ttft_ms: int | None
    overhead_ms: float
    client_ip: str | None

    @classmethod
    def from_row(cls, row: UsageLog) -> UsageRowOut:
        columns = {name: getattr(row, name) for name in cls.model_fields if hasattr(row, name)}
        return cls(**{**columns, "created_at": iso(row.created_at), "cost_usd": usd(row.cost_micros)})


class AggregateRowOut(BaseModel):
    bucket_start: str
    group: str | None = Field(description="The model name, or the key, channel or account id.")
    label: str | None = Field(description="The key, channel or account name (the model name for models).")
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: str
    cost_micros: int
    errors: int = Field(description="Calls that ended with status 400 or above.")
    p50_latency_ms: float | None
    p95_latency_ms: float | None

    @classmethod
    def from_row(cls, row: AggregateRow, label: str | None) -> AggregateRowOut:
        return cls(
            bucket_start=row.bucket_start.isoformat(),
            group=row.group,
            label=label,
            requests=row.requests,
            prompt_tokens=row.prompt_tokens,
            completion_tokens=row.completion_tokens,
            **micros("cost", row.cost_micros),
            errors=row.errors,
            p50_latency_ms=row.p50_latency_ms,
            p95_latency_ms=row.p95_latency_ms,
        )


class AggregateOut(BaseModel):
    bucket: str
    by: str
    start: str | None
    end: str | None
    data: list[AggregateRowOut]
