"""Signed-in browser sessions: one helper for the admin console's (``admin_sessions``) and the self-service
users' (``user_sessions``).

The two kinds differ only by data: their table, kept apart so that no user cookie can ever pass for an admin one,
and the column that says who signed in (``subject`` for the console, ``user_id`` for a user). Both keep only the
hash of the cookie's token, a CSRF token and epoch-second times; expired rows are swept whenever a session opens.
"""

from __future__ import annotations

import time
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute


class SessionRow(Protocol):
    token_hash: str
    csrf_token: str
    created_at: float
    expires_at: float


Row = TypeVar("Row", bound=SessionRow)


class SessionTable(Generic[Row]):
    def __init__(self, model: type[Row], owner: str) -> None:
        self.model = model
        self.owner = owner
        """The column naming who signed in."""
        self._token: InstrumentedAttribute[str] = model.token_hash  # type: ignore[assignment]
        self._expires: InstrumentedAttribute[float] = model.expires_at  # type: ignore[assignment]

    async def create(
        self, session: AsyncSession, *, token_hash: str, csrf_token: str, ttl_s: float, **owner: Any
    ) -> Row:
        """A new session for ``owner`` (passed by its column's name: ``subject=...`` or ``user_id=...``)."""
        if set(owner) != {self.owner}:
            raise TypeError(f"{self.model.__name__} sessions are owned by {self.owner}, got {sorted(owner)}")
        now = time.time()
        await session.execute(delete(self.model).where(self._expires < now))  # sweep as we go
        row = self.model(token_hash=token_hash, csrf_token=csrf_token, created_at=now, expires_at=now + ttl_s, **owner)
        session.add(row)
        await session.flush()
        return row

    async def live(self, session: AsyncSession, token_hash: str) -> Row | None:
        row = await session.get(self.model, token_hash)
        return None if row is None or row.expires_at <= time.time() else row

    async def end(self, session: AsyncSession, token_hash: str) -> None:
        await session.execute(delete(self.model).where(self._token == token_hash))

    async def end_others(self, session: AsyncSession, owner: object, keep: str | None) -> None:
        """Sign out every session of ``owner`` but ``keep`` (after a password change)."""
        query = delete(self.model).where(getattr(self.model, self.owner) == owner)
        if keep is not None:
            query = query.where(self._token != keep)
        await session.execute(query)
