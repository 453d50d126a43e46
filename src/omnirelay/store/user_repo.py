"""Queries and writes behind self-service accounts and the System API (``api/users.py``, ``api/system.py``).

Never on the relay path. Everything an account reads is filtered by its ``account_id`` here, in the query, so a
row of another account is simply not found (the API answers 404, never 403: it does not say the row exists).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from omnirelay.crypto import hash_key
from omnirelay.store.admin_repo import UsageFilter, utc
from omnirelay.store.models import Account, ApiKey, LedgerEntry, Task, UsageLog
from omnirelay.store.repo import bump_config_version, ensure_group
from omnirelay.store.sessions import SessionTable
from omnirelay.store.user_models import AccessToken, Invitation, User, UserSession

ACCESS_TOKEN_PREFIX = "ort-"
INVITE_PREFIX = "ORI"


def new_access_token() -> str:
    return ACCESS_TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_invitation_code() -> str:
    body = base64.b32encode(secrets.token_bytes(10)).decode()
    return "-".join([INVITE_PREFIX, *(body[i : i + 4] for i in range(0, len(body), 4))])


# --- users ----------------------------------------------------------------------------------------------------


async def user_named(session: AsyncSession, username: str) -> User | None:
    return await session.scalar(select(User).where(User.username == username))


async def email_taken(session: AsyncSession, email: str) -> bool:
    return await session.scalar(select(User.id).where(User.email == email)) is not None


async def create_user(
    session: AsyncSession,
    *,
    username: str,
    email: str | None,
    display_name: str,
    password_hash: str,
    group: str,
) -> User:
    """The user and its own account (named ``user:<username>``, which no admin-made account can clash with
    unless an admin chose that name on purpose: the unique index then refuses the sign-up)."""
    await ensure_group(session, group)
    account = Account(name=f"user:{username}", group_name=group, unlimited=False)
    session.add(account)
    await session.flush()
    user = User(
        account_id=account.id,
        username=username,
        email=email,
        display_name=display_name,
        password_hash=password_hash,
    )
    session.add(user)
    await session.flush()
    await bump_config_version(session)
    return user


# --- sessions -------------------------------------------------------------------------------------------------

user_sessions = SessionTable(UserSession, owner="user_id")
create_session = user_sessions.create
live_session = user_sessions.live
end_session = user_sessions.end
end_other_sessions = user_sessions.end_others


# --- access tokens --------------------------------------------------------------------------------------------


async def live_token(session: AsyncSession, token_hash: str) -> AccessToken | None:
    row = await session.scalar(select(AccessToken).where(AccessToken.token_hash == token_hash))
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and utc(row.expires_at) <= datetime.now(UTC):
        return None
    return row


TOUCH_EVERY = timedelta(minutes=1)


async def touch_token(session: AsyncSession, row: AccessToken) -> None:
    """Record use at most once a minute: a script polling the API does not write on every call."""
    now = datetime.now(UTC)
    if row.last_used_at is None or utc(row.last_used_at) < now - TOUCH_EVERY:
        await session.execute(update(AccessToken).where(AccessToken.id == row.id).values(last_used_at=now))


async def list_tokens(session: AsyncSession, user_id: int) -> list[AccessToken]:
    query = select(AccessToken).where(AccessToken.user_id == user_id).order_by(AccessToken.id)
    return list((await session.scalars(query)).all())


async def count_live_tokens(session: AsyncSession, user_id: int) -> int:
    query = select(func.count()).where(AccessToken.user_id == user_id, AccessToken.revoked_at.is_(None))
    return int(await session.scalar(query) or 0)


async def create_token(
    session: AsyncSession, user: User, name: str, expires_at: datetime | None
) -> tuple[AccessToken, str]:
    secret = new_access_token()
    row = AccessToken(
        user_id=user.id,
        account_id=user.account_id,
        name=name,
        token_hash=hash_key(secret),
        token_prefix=secret[:10],
        expires_at=expires_at,
    )
    session.add(row)
    await session.flush()
    return row, secret


async def own_token(session: AsyncSession, user_id: int, token_id: int) -> AccessToken | None:
    return await session.scalar(select(AccessToken).where(AccessToken.id == token_id, AccessToken.user_id == user_id))


# --- invitations ----------------------------------------------------------------------------------------------


async def create_invitations(session: AsyncSession, count: int, note: str | None) -> list[str]:
    codes = [new_invitation_code() for _ in range(count)]
    session.add_all(Invitation(code_hash=hash_key(c), code_prefix=c[:8], note=note) for c in codes)
    await session.flush()
    return codes


async def list_invitations(session: AsyncSession, *, limit: int, after: int | None) -> list[Invitation]:
    query = select(Invitation).order_by(Invitation.id).limit(limit)
    if after is not None:
        query = query.where(Invitation.id > after)
    return list((await session.scalars(query)).all())


async def use_invitation(session: AsyncSession, code: str) -> int | None:
    """Mark an unused invitation used (one winner among concurrent sign-ups); its id, or None."""
    won = await session.execute(
        update(Invitation)
        .where(Invitation.code_hash == hash_key(code.strip().upper()), Invitation.used_at.is_(None))
        .values(used_at=datetime.now(UTC))
        .returning(Invitation.id)
    )
    row = won.first()
    return None if row is None else int(row[0])


async def invitation_used_by(session: AsyncSession, invitation_id: int, user_id: int) -> None:
    await session.execute(update(Invitation).where(Invitation.id == invitation_id).values(used_by=user_id))


# --- the account's own rows -----------------------------------------------------------------------------------


async def own_keys(session: AsyncSession, account_id: int, *, limit: int, after: int | None) -> list[ApiKey]:
    query = (
        select(ApiKey)
        .where(ApiKey.account_id == account_id, ApiKey.deleted_at.is_(None))
        .order_by(ApiKey.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(ApiKey.id > after)
    return list((await session.scalars(query)).all())


async def count_live_keys(session: AsyncSession, account_id: int) -> int:
    query = select(func.count()).where(ApiKey.account_id == account_id, ApiKey.revoked_at.is_(None))
    return int(await session.scalar(query) or 0)


async def own_key(session: AsyncSession, account_id: int, key_id: int) -> ApiKey | None:
    return await session.scalar(
        select(ApiKey).where(ApiKey.id == key_id, ApiKey.account_id == account_id, ApiKey.deleted_at.is_(None))
    )


async def key_ids_named(session: AsyncSession, account_id: int, name: str) -> list[int]:
    """Deleted keys too: their usage rows still belong to the account."""
    rows = await session.scalars(select(ApiKey.id).where(ApiKey.account_id == account_id, ApiKey.name == name))
    return list(rows.all())


async def key_names(session: AsyncSession, account_id: int, ids: Sequence[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = await session.execute(
        select(ApiKey.id, ApiKey.name).where(ApiKey.account_id == account_id, ApiKey.id.in_(set(ids)))
    )
    return {key_id: name for key_id, name in rows}


async def delete_key(session: AsyncSession, row: ApiKey) -> None:
    now = datetime.now(UTC)
    row.deleted_at = now
    if row.revoked_at is None:
        row.revoked_at = now
    await session.flush()
    await bump_config_version(session)


async def request_count(session: AsyncSession, account_id: int) -> int:
    query = select(func.count()).select_from(UsageLog).where(UsageLog.account_id == account_id)
    return int(await session.scalar(query) or 0)


async def usage_rows(
    session: AsyncSession, filters: UsageFilter, key_ids: Sequence[int] | None, *, limit: int, cursor: int | None
) -> list[UsageLog]:
    """Newest first; ``filters`` must carry the account id (the caller's own rows only)."""
    assert filters.account_id is not None
    query = select(UsageLog).where(*filters.conditions()).order_by(UsageLog.id.desc()).limit(limit)
    if key_ids is not None:
        query = query.where(UsageLog.key_id.in_(key_ids))
    if cursor is not None:
        query = query.where(UsageLog.id < cursor)
    return list((await session.scalars(query)).all())


async def ledger_rows(
    session: AsyncSession,
    account_id: int,
    kinds: Sequence[str] | None,
    *,
    start: datetime | None,
    end: datetime | None,
    key_ids: Sequence[int] | None,
    limit: int,
    cursor: int | None,
) -> list[LedgerEntry]:
    query = select(LedgerEntry).where(LedgerEntry.account_id == account_id).order_by(LedgerEntry.id.desc())
    if kinds is not None:
        query = query.where(LedgerEntry.kind.in_(kinds))
    if start is not None:
        query = query.where(LedgerEntry.created_at >= utc(start))
    if end is not None:
        query = query.where(LedgerEntry.created_at < utc(end))
    if key_ids is not None:
        query = query.where(LedgerEntry.key_id.in_(key_ids))
    if cursor is not None:
        query = query.where(LedgerEntry.id < cursor)
    return list((await session.scalars(query.limit(limit))).all())


async def own_tasks(
    session: AsyncSession,
    account_id: int,
    *,
    start: float | None,
    end: float | None,
    status: str | None,
    limit: int,
    cursor: int | None,
) -> list[Task]:
    query = select(Task).where(Task.account_id == account_id).order_by(Task.id.desc()).limit(limit)
    if start is not None:
        query = query.where(Task.submitted_at >= start)
    if end is not None:
        query = query.where(Task.submitted_at < end)
    if status is not None:
        query = query.where(Task.status == status)
    if cursor is not None:
        query = query.where(Task.id < cursor)
    return list((await session.scalars(query)).all())


async def own_task(session: AsyncSession, account_id: int, public_id: str) -> Task | None:
    return await session.scalar(select(Task).where(Task.public_id == public_id, Task.account_id == account_id))


def select_user_by_email(email: str) -> Select[tuple[User]]:
    return select(User).where(User.email == email)


def now() -> datetime:
    return datetime.now(UTC)
