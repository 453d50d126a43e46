"""Admin API routes for sign-up invitations (``accounts.signup: invite``): create a batch, list them.

Mounted into the admin FastAPI app, so the admin's auth and error shape apply.
"""

from __future__ import annotations

from fastapi import APIRouter

from omnirelay.api.account import iso
from omnirelay.api.admin import Cursor, Limit, Store, page_of
from omnirelay.api.admin_models import Page
from omnirelay.api.system_models import InvitationBatchOut, InvitationIn, InvitationOut
from omnirelay.store import user_repo


def invitations_router(store: Store) -> APIRouter:
    router = APIRouter(prefix="/invitations", tags=["invitations"])

    @router.post("", status_code=201, summary="Create invitation codes; they are shown only in this answer")
    async def create_invitations(body: InvitationIn) -> InvitationBatchOut:
        async with store.write() as session:
            codes = await user_repo.create_invitations(session, body.count, body.note)
        return InvitationBatchOut(codes=codes)

    @router.get("", summary="List invitations (prefixes only)")
    async def list_invitations(limit: Limit = 100, cursor: Cursor = None) -> Page[InvitationOut]:
        async with store.read() as session:
            rows = await user_repo.list_invitations(session, limit=limit, after=cursor)
        data = [
            InvitationOut(
                id=r.id,
                prefix=r.code_prefix,
                note=r.note,
                created_at=iso(r.created_at),
                used_at=iso(r.used_at),
                used_by=r.used_by,
            )
            for r in rows
        ]
        return page_of(data, [r.id for r in rows], limit)

    return router
