"""The admin audit log: one row per admin write (``api/admin_audit.py`` records them)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Float, Index, Integer, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from omnirelay.store.models import Base

BigId = BigInteger().with_variant(Integer(), "sqlite")


class AuditEntry(Base):
    """Who changed what, when, and the target's admin view before and after (those views mask every secret)."""

    __tablename__ = "admin_audit"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[float] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(160))
    """``token:<name>`` (``token:admin`` for ``admin_token``) or ``session:<subject>`` (the console)."""
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(512))
    target: Mapped[str | None] = mapped_column(String(256), nullable=True)
    """The resource written, as its admin path (``/channels/3``), when there is one."""
    status: Mapped[int] = mapped_column(Integer)
    before: Mapped[Any] = mapped_column(JSON, nullable=True)
    after: Mapped[Any] = mapped_column(JSON, nullable=True)
    client_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (Index("ix_admin_audit_created", "created_at"),)


async def add_entry(session: AsyncSession, **values: Any) -> None:
    session.add(AuditEntry(**values))


async def list_entries(session: AsyncSession, limit: int, before_id: int | None) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    return list((await session.scalars(query)).all())
