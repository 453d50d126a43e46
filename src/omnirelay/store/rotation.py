"""Master key rotation: every stored upstream key re-encrypted with the new key, in one transaction."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from omnirelay.crypto import SecretBox
from omnirelay.store import repo
from omnirelay.store.models import Channel


async def reencrypt_upstream_keys(session: AsyncSession, old: SecretBox, new: SecretBox) -> int:
    """Re-seal every channel's keys; the channels re-sealed. A row the old key cannot open raises ``ValueError``
    and, the caller's transaction rolling back, leaves every row as it was."""
    rows = (await session.scalars(select(Channel).order_by(Channel.id).with_for_update())).all()
    count = 0
    for row in rows:
        if row.api_keys_encrypted:
            try:
                keys = old.open(row.api_keys_encrypted)
            except ValueError as exc:
                raise ValueError(f"channel '{row.name}': {exc}") from None
            row.api_keys_encrypted = new.seal(keys)
            count += 1
    await repo.bump_config_version(session)
    return count
