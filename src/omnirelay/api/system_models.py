"""Bodies and answers of the self-service API (``api/users.py``, ``api/system.py``), as pydantic models.

As in ``admin_models``: inputs forbid unknown fields, so a bad value is a 422 naming the field; money goes out as
decimal strings beside exact ``*_micros`` integers; in a ``*Patch`` body a field left out is unchanged and
``null`` clears a limit (``spend_cap_usd: null`` is unlimited).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator

from omnirelay.api.account import iso
from omnirelay.api.admin_models import Expiry, Input, KeyPatch, Name, key_status, micros
from omnirelay.store.admin_repo import utc
from omnirelay.store.models import ApiKey, LedgerEntry, UsageLog
from omnirelay.store.user_models import AccessToken, User

Username = Annotated[
    str, Field(min_length=3, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", examples=["alice"])
]
Password = Annotated[str, Field(min_length=8, max_length=256)]
Email = Annotated[str, Field(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
DisplayName = Annotated[str, Field(min_length=1, max_length=128)]


def _future(value: datetime | None) -> datetime | None:
    if value is not None and value <= datetime.now(UTC):
        raise ValueError("must be in the future")
    return value


# --- accounts and sessions ------------------------------------------------------------------------------------


class SignUpIn(Input):
    username: Username
    password: Password
    display_name: DisplayName | None = None
    email: Email | None = None
    invitation_code: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        None, description="Needed when the gateway's sign-up is by invitation."
    )


class SignInIn(Input):
    username: Annotated[str, Field(min_length=1, max_length=254, description="User name or email.")]
    password: Annotated[str, Field(min_length=1, max_length=256)]


class PasswordIn(Input):
    current_password: Annotated[str, Field(min_length=1, max_length=256)]
    new_password: Password


class ProfilePatch(Input):
    display_name: DisplayName


class UserOut(BaseModel):
    id: int
    username: str
    display_name: str
    email: str | None
    email_verified: bool
    account_id: int
    created_at: str | None

    @classmethod
    def from_row(cls, row: User) -> UserOut:
        return cls(
            id=row.id,
            username=row.username,
            display_name=row.display_name,
            email=row.email,
            email_verified=row.email_verified_at is not None,
            account_id=row.account_id,
            created_at=iso(row.created_at),
        )


class SessionOut(BaseModel):
    user: UserOut
    csrf_token: str = Field(description="Send as X-CSRF-Token with every change made with the session cookie.")
    expires_at: int


# --- access tokens --------------------------------------------------------------------------------------------


class TokenIn(Input):
    name: Name
    expires_at: Expiry | None = Field(None, description="Null: never expires (revoke it when done).")

    check_expiry = field_validator("expires_at")(_future)


class TokenOut(BaseModel):
    id: int
    name: str
    prefix: str
    status: str = Field(description="active, expired or revoked")
    expires_at: str | None
    revoked_at: str | None
    last_used_at: str | None
    created_at: str | None

    @classmethod
    def from_row(cls, row: AccessToken) -> TokenOut:
        status = "active"
        if row.revoked_at is not None:
            status = "revoked"
        elif row.expires_at is not None and utc(row.expires_at) <= datetime.now(UTC):
            status = "expired"
        return cls(
            id=row.id,
            name=row.name,
            prefix=row.token_prefix,
            status=status,
            expires_at=iso(row.expires_at),
            revoked_at=iso(row.revoked_at),
            last_used_at=iso(row.last_used_at),
            created_at=iso(row.created_at),
        )


class NewTokenOut(TokenOut):
    token: str = Field(description="The full token: shown this once, stored only as a hash.")


# --- account --------------------------------------------------------------------------------------------------


class AccountInfoOut(BaseModel):
    id: int
    username: str
    display_name: str
    group: str
    ratio: str = Field(description="The group's price multiplier: what this account pays is list price times ratio.")
    unlimited: bool
    balance_usd: str
    balance_micros: int
    available_usd: str | None
    available_micros: int | None = Field(description="Balance less what running calls hold; null when unlimited.")
    used_usd: str
    used_micros: int = Field(description="Everything ever charged for usage.")
    request_count: int
    disabled: bool
    created_at: str | None


# --- keys -----------------------------------------------------------------------------------------------------


class OwnKeyPatch(KeyPatch):
    """What an account may change of its own keys (``label`` included); account-level limits still apply."""


class OwnKeyIn(OwnKeyPatch):
    name: Name

    check_expiry = field_validator("expires_at")(_future)


class OwnKeyOut(BaseModel):
    id: int
    name: str
    masked: str = Field(description="The key's first characters: it is stored only as a hash.")
    status: str = Field(description="active, disabled, expired or revoked")
    label: str | None
    models: list[str] | None
    allowed_ips: list[str] | None
    expires_at: str | None
    spend_cap_usd: str | None = Field(description="Null: unlimited (the account's balance still applies).")
    spend_cap_micros: int | None
    spent_usd: str
    spent_micros: int
    remaining_usd: str | None
    remaining_micros: int | None
    rpm: int | None
    tpm: int | None
    max_concurrency: int | None
    created_at: str | None

    @classmethod
    def from_row(cls, row: ApiKey) -> OwnKeyOut:
        status = key_status(row)
        cap = row.spend_cap_micros
        return cls(
            id=row.id,
            name=row.name,
            masked=row.key_prefix + "…",
            status=status,
            label=row.label,
            models=row.models,
            allowed_ips=row.allowed_ips,
            expires_at=iso(row.expires_at),
            **micros("spend_cap", cap),
            **micros("spent", row.spent_micros),
            **micros("remaining", None if cap is None else cap - row.spent_micros),
            rpm=row.rpm,
            tpm=row.tpm,
            max_concurrency=row.max_concurrency,
            created_at=iso(row.created_at),
        )


class NewOwnKeyOut(OwnKeyOut):
    key: str = Field(description="The full key: shown this once, stored only as a hash.")


# --- logs, aggregates, ledger, tasks --------------------------------------------------------------------------

LogType = Literal["consumption", "topup", "refund", "adjustment"]
LEDGER_KINDS: dict[str, tuple[str, ...]] = {
    "topup": ("topup", "redemption"),
    "refund": ("refund",),
    "adjustment": ("adjustment",),
}
"""Which ledger entries each non-consumption log type lists (consumption rows are the usage log)."""


class LogRowOut(BaseModel):
    id: int = Field(description="The usage row's id (consumption) or the ledger entry's id (the other types).")
    type: LogType
    created_at: str | None
    key_id: int | None
    key_name: str | None
    model: str | None
    endpoint: str | None
    request_id: str | None
    status_code: int | None
    stream: bool | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost_usd: str | None = Field(description="Consumption: what the call cost.")
    cost_micros: int | None
    amount_usd: str = Field(description="Signed change of the balance: negative for a call, positive for a top-up.")
    amount_micros: int
    latency_ms: int | None
    reason: str | None

    @classmethod
    def from_usage(cls, row: UsageLog, key_name: str | None) -> LogRowOut:
        return cls(
            id=row.id,
            type="consumption",
            created_at=iso(row.created_at),
            key_id=row.key_id,
            key_name=key_name,
            model=row.model,
            endpoint=row.endpoint,
            request_id=row.request_id,
            status_code=row.status_code,
            stream=row.stream,
            prompt_tokens=row.prompt_tokens,
            completion_tokens=row.completion_tokens,
            cached_tokens=row.cached_tokens,
            **micros("cost", row.cost_micros),
            **micros("amount", -row.cost_micros),
            latency_ms=row.latency_ms,
            reason=None,
        )

    @classmethod
    def from_ledger(cls, row: LedgerEntry, kind: LogType, key_name: str | None) -> LogRowOut:
        return cls(
            id=row.id,
            type=kind,
            created_at=iso(row.created_at),
            key_id=row.key_id,
            key_name=key_name,
            model=None,
            endpoint=None,
            request_id=row.ref,
            status_code=None,
            stream=None,
            prompt_tokens=0,
            completion_tokens=0,
            cached_tokens=0,
            cost_usd=None,
            cost_micros=None,
            **micros("amount", row.amount_micros),
            latency_ms=None,
            reason=row.reason,
        )


class TotalsOut(BaseModel):
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: str
    cost_micros: int
    errors: int


class DayTotalsOut(TotalsOut):
    day: str = Field(description="YYYY-MM-DD (UTC)")


class ModelTotalsOut(TotalsOut):
    model: str


class UsageAggregateOut(BaseModel):
    start: str | None
    end: str | None
    total: TotalsOut
    by_day: list[DayTotalsOut]
    by_model: list[ModelTotalsOut]


class RedeemIn(Input):
    code: Annotated[str, Field(min_length=1, max_length=128)]


class RedeemOut(BaseModel):
    amount_usd: str
    amount_micros: int
    balance_usd: str
    balance_micros: int


class ModelPriceOut(BaseModel):
    model: str
    price: dict[str, Any] | None = Field(description="List price (USD); null when the model is not priced.")
    ratio: str = Field(description="The account group's multiplier on the list price.")


class InvitationIn(Input):
    count: int = Field(1, ge=1, le=1000)
    note: Annotated[str, Field(max_length=255)] | None = None


class InvitationBatchOut(BaseModel):
    codes: list[str] = Field(description="Shown only in this answer: the table keeps hashes.")


class InvitationOut(BaseModel):
    id: int
    prefix: str
    note: str | None
    created_at: str | None
    used_at: str | None
    used_by: int | None = Field(description="The user who signed up with it.")
